"""`ratchet init` reads the repository: what it protects, which metric it picks, which knobs it
offers an optimizer and which it holds back; on repositories shaped like autoresearch, nanoGPT
and a small classifier with its own evaluate.py."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import commit_all, git

from ratchet.knobs import printnames
from ratchet.knobs.command import read_command
from ratchet.knobs.method import method_space, reassigned
from ratchet.knobs.source import Knob, suggest_param
from ratchet.knobs.survey import survey
from ratchet.study import open_study

AUTORESEARCH = {
    "prepare.py": (
        "MAX_SEQ_LEN = 2048\nTIME_BUDGET = 300\nEVAL_TOKENS = 40 * 524288\n"
        "def evaluate_bpb(model, tokenizer, batch_size):\n    return 1.0\n"
        "def make_dataloader(tokenizer, B, T, split):\n    return []\n"),
    "train.py": (
        "from prepare import MAX_SEQ_LEN, TIME_BUDGET, evaluate_bpb, make_dataloader\n"
        "DEPTH = 8\nMATRIX_LR = 0.04\nWARMUP_RATIO = 0.0\nH100_BF16_PEAK_FLOPS = 989.5e12\n"
        "TOTAL_BATCH_SIZE = 2**19\n"
        "val_bpb = evaluate_bpb(None, None, 1)\n"
        'print(f"val_bpb:          {val_bpb:.6f}")\n'
        'print(f"training_seconds: {1.0:.1f}")\n'),
    "program.md": "# autoresearch\nKeep val_bpb low.\n",
}

CLASSIFIER = {
    "model.py": "LEARNING_RATE = 0.3\nMIN_SAMPLES_LEAF = 20\nN_ESTIMATORS = 100\n"
                "def build():\n    return (LEARNING_RATE, MIN_SAMPLES_LEAF)\n",
    "evaluate.py": "import model\nfrom data import load\n"
                   "acc = 0.9\nprint(f'accuracy: {acc:.4f}')\n",
    "data.py": "def load():\n    return []\n",
    "tests/test_model.py": "LIMIT = 3\n",
}

NANOGPT = {
    "train.py": "import os\nbatch_size = 12\nlearning_rate = 6e-4\nn_layer = 12\n"
                "eval_iters = 200\ndropout = 0.0\nmax_iters = 5000\n"
                "exec(open('configurator.py').read())\n"
                "print(f\"step {1}: train loss {2.0:.4f}, val loss {2.1:.4f}\")\n",
    "configurator.py": "import sys\nfor arg in sys.argv[1:]:\n    exec(open(arg).read())\n",
    "config/train_shakespeare_char.py": "batch_size = 64\nlearning_rate = 1e-3\n",
    "model.py": "class GPT:\n    pass\n",
}


def python_files(files: dict[str, str]) -> dict[str, str]:
    return {p: t for p, t in files.items() if p.endswith(".py")}


def others(files: dict[str, str]) -> frozenset[str]:
    return frozenset(p for p in files if not p.endswith(".py"))


def test_autoresearch_prepare_is_protected_and_its_budgets_are_not_knobs() -> None:
    found = survey(python_files(AUTORESEARCH), others(AUTORESEARCH))
    assert found.protected == ["prepare.py"] and found.editable == ["train.py"]
    assert found.main == "train.py" and found.evaluate is None
    assert (found.metric.name, found.metric.goal) == ("val_bpb", "minimize")
    names = [k.name for k in found.knobs]
    assert names == ["DEPTH", "MATRIX_LR", "WARMUP_RATIO", "TOTAL_BATCH_SIZE"]
    assert {h.knob.name for h in found.held_back} == {"H100_BF16_PEAK_FLOPS"}
    assert found.program == "program.md"


def test_a_classifier_with_its_own_evaluate_script() -> None:
    found = survey(python_files(CLASSIFIER))
    assert found.protected == ["data.py", "evaluate.py"]
    assert found.evaluate == "evaluate.py" and found.editable == ["model.py"]
    assert (found.metric.name, found.metric.goal) == ("accuracy", "maximize")
    assert found.command is None  # evaluate.py imports the model and does all the work
    # ... so proposed code runs inside the protected phase: init must say so
    assert found.edited_in_evaluate == ["model.py"]
    assert survey(python_files(AUTORESEARCH)).edited_in_evaluate == []


def test_nanogpt_lowercase_settings_become_knob_files() -> None:
    found = survey(python_files(NANOGPT))
    assert found.knob_files == ["config/*.py", "train.py"]
    names = {k.name: k.path for k in found.knobs}
    # the guessed command passes no config file: the run uses train.py's values
    assert names["learning_rate"] == "train.py" and "eval_iters" not in names
    assert "n_layer" not in names  # model size, with training stopped after a step count
    assert (found.metric.name, found.metric.goal) == ("val_loss", "minimize")
    assert re.search(found.metric.pattern, "step 5: train loss 2.0, val loss 2.1")["value"] \
        == "2.1"
    assert found.command == "python train.py" and not found.command_given
    assert found.config_choices == ["config/train_shakespeare_char.py"]


def test_the_config_file_on_the_command_line_owns_its_knobs() -> None:
    found = survey(python_files(NANOGPT), command="python train.py "
                   "config/train_shakespeare_char.py --dropout=0.1")
    names = {k.name: k.path for k in found.knobs}
    assert names["learning_rate"] == "config/train_shakespeare_char.py"
    assert "dropout" not in names
    (held,) = [h for h in found.held_back if h.knob.name == "dropout"]
    assert held.reason.startswith("set on the command line (--dropout=0.1)")
    assert found.run_files == ["train.py", "config/train_shakespeare_char.py", "configurator.py"]


def test_a_protected_config_on_the_command_line_leaves_its_names_to_nobody() -> None:
    files = {**python_files(NANOGPT),
             "config/eval_gpt2.py": "batch_size = 8\neval_only = True\nlearning_rate = 1.0\n"}
    found = survey(files, command="python train.py config/eval_gpt2.py")
    assert "config/eval_gpt2.py" in found.protected
    names = {k.name for k in found.knobs}
    assert "learning_rate" not in names and "dropout" in names
    reasons = {h.knob.name: h.reason for h in found.held_back}
    assert reasons["learning_rate"] == "its value comes from config/eval_gpt2.py, which is " \
        "protected"


def test_names_printed_mid_line_with_or_without_spaces() -> None:
    text = 'print(f"epoch {e}: train_loss={a:.3f} val_acc={b:.3f}")\n'
    found = printnames.printed_in("train.py", text)
    assert [p.name for p in found] == ["train_loss", "val_acc"]
    chosen = printnames.choose(found)
    assert chosen.name == "val_acc" and chosen.goal == "maximize"
    assert re.search(chosen.pattern, "epoch 3: train_loss=0.5 val_acc=0.912")["value"] == "0.912"


@pytest.mark.parametrize("name,goal", [
    ("val_loss", "minimize"), ("val loss", "minimize"), ("accuracy", "maximize"),
    ("top1_acc", "maximize"), ("valAcc", "maximize"), ("f1", "maximize"), ("mse", "minimize"),
    ("Overriding", None), ("window", None), ("bitmap", None), ("access", None),
    ("errand", None), ("scoreboard", None)])
def test_direction_words_match_whole_words_only(name: str, goal: str | None) -> None:
    assert printnames.goal(name) == goal


def test_the_metric_is_what_the_command_runs_prints() -> None:
    files = {
        "train.py": "exec(open('configurator.py').read())\nprint(f'iter {1}: loss {2.0:.4f}')\n",
        "configurator.py": "import sys\nfor a in sys.argv[1:]:\n"
                           "    print(f'Overriding config with {a}:')\n",
        "bench.py": "print(f'time: {0.1}')\n",
    }
    found = survey(files)
    assert (found.metric.name, found.metric.where) == ("loss", "train.py")
    del files["train.py"]
    files["train.py"] = "exec(open('configurator.py').read())\n"
    assert survey(files).metric is None  # not bench.py's time, not configurator's Overriding


def test_loop_state_and_derived_values_are_held_back_with_their_line() -> None:
    source = ("lr = 0.1\nsteps = 0\nbest = 1e9\nwidth = 8\nscale = 2\nmode = 'a'\n"
              "if resume:\n    mode = 'b'\n    scale //= 2\n"
              "def bump():\n    global width\n    width = 4\n"
              "while True:\n    steps += 1\n    best = min(best, 1.0)\n    break\n")
    changed = reassigned({"train.py": source})
    assert set(changed) == {"steps", "best", "width", "mode"}  # scale //= 2 keeps its knob
    assert changed["steps"] == "loop state: updated as training runs (train.py:14)"
    assert changed["mode"].startswith("reassigned as the script runs")
    assert "in a function" in changed["width"]


def test_a_time_budget_makes_batch_and_model_sizes_fair() -> None:
    knobs = [Knob(n, 8, "train.py", i) for i, n in enumerate(
        ["batch_size", "n_layer", "max_iters", "learning_rate", "eval_iters", "seed"])]
    space, held = method_space(knobs, {"train.py": ""})
    assert [k.name for k in space] == ["learning_rate"]
    assert {h.knob.name for h in held} == {"batch_size", "n_layer", "max_iters", "eval_iters",
                                           "seed"}
    space, held = method_space(knobs, {"train.py": ""}, budgeted=True)
    assert [k.name for k in space] == ["batch_size", "n_layer", "max_iters", "learning_rate"]
    space, _ = method_space(knobs[:2] + knobs[3:4], {"train.py": ""})  # no step count at all
    assert [k.name for k in space] == ["batch_size", "n_layer", "learning_rate"]


@pytest.mark.parametrize("command,script,configs,overrides", [
    ("python train.py config/a.py config/b.py --lr=0.1 --lr=0.2",
     "train.py", ("config/a.py", "config/b.py"), {"lr": "0.2"}),
    ("CUDA_VISIBLE_DEVICES=0 python -u ./train.py", "train.py", (), {}),
    ("torchrun --standalone --nproc_per_node=4 train.py config/x.py", "train.py",
     ("config/x.py",), {}),
    ("python prepare.py && python -m pkg.train --lr={lr}", "pkg/train.py", (), {}),
    ("make all", None, (), {}),
    ("python -m torch.distributed.run --nproc_per_node=2 train.py --compile=False", "train.py",
     (), {"compile": "False"})])
def test_reading_a_command(command: str, script: str | None, configs: tuple[str, ...],
                           overrides: dict[str, str]) -> None:
    line = read_command(command, ["train.py", "config/a.py", "config/b.py", "config/x.py",
                                  "pkg/train.py"])
    assert (line.script, line.config_files, line.overrides) == (script, configs, overrides)


@pytest.mark.parametrize("name,value,low,high", [
    ("LEARNING_RATE", 0.3, 0.075, 1.2), ("learning_rate", 6e-4, 1.5e-4, 2.4e-3),
    ("MIN_SAMPLES_LEAF", 20, 10, 40), ("DROPOUT", 0.1, 0.0, 0.3), ("BETA2", 0.95, 0.9, 0.975),
    ("N_LAYERS", 1, 1, 4)])
def test_ranges_stay_near_the_current_value(name: str, value: float, low: float,
                                            high: float) -> None:
    param = suggest_param(Knob(name, value, "x.py", 1))
    assert param is not None and (param.low, param.high) == pytest.approx((low, high))


def test_init_writes_a_task_file_that_runs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for path, text in CLASSIFIER.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "init", "-q")
    commit_all(repo)
    result = subprocess.run([sys.executable, "-m", "ratchet.cli", "init", "--no-run"], cwd=repo,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = (repo / "ratchet.toml").read_text()
    data = tomllib.loads(text)
    assert "command" not in data["task"] and data["task"]["evaluate"] == "python evaluate.py"
    assert data["task"]["protected"] == ["data.py", "evaluate.py"]
    assert data["metric"] == {"name": "accuracy", "goal": "maximize"}
    assert data["space"]["LEARNING_RATE"] == {"float": [0.075, 1.2], "log": True}
    assert "# WARNING: evaluate.py imports model.py, which proposers edit" in text
    assert "WARNING: evaluate.py imports model.py" in result.stdout
    # its accuracy depends on nothing random: the user says so where init's comment offers it
    assert "\n# deterministic = true " in text
    (repo / "ratchet.toml").write_text(text.replace("\n# deterministic = true ",
                                                    "\ndeterministic = true ", 1))
    commit_all(repo, "task")
    run = subprocess.run([sys.executable, "-m", "ratchet.cli", "run", "--proposer", "random",
                          "--max-experiments", "3", "--plain"], cwd=repo, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    study = open_study(repo, create=False)
    assert [e.value for e in study.experiments()] == [0.9] * 3  # evaluate.py's line, each run


def test_init_mounts_only_folders_inside_the_repository_and_offers_the_rest() -> None:
    from types import SimpleNamespace

    from ratchet.knobs.datadirs import ReadOnly
    from ratchet.knobs.initfile import _sandbox_section, mounts_by_itself

    assert [mounts_by_itself(p) for p in ("data", "data/raw", "/root/secret", "~/.netrc",
                                          "../shared", ".env", "cache/.hidden")] == \
        [True, True, False, False, False, False, False]
    found = SimpleNamespace(read_only=[
        ReadOnly("data", "could not open data/x.bin", observed=True),
        ReadOnly("/root/notes", "could not open /root/notes/key", observed=True)])
    section = tomllib.loads(_sandbox_section(found))  # type: ignore[arg-type]
    assert section["sandbox"]["read_only"] == ["data"]  # HOME is offered in a comment only
    assert '# read_only = ["data", "/root/notes"]' in _sandbox_section(found)  # type: ignore


def test_the_written_task_file_is_toml_whatever_the_command_and_folder_names(
        tmp_path: Path) -> None:
    from ratchet.knobs.initfile import _toml_literal, _toml_string

    for text in ['python train.py\nprint("x")', 'a"b\\c', "tab\there\x7f\x01", "it's"]:
        assert tomllib.loads(f"k = {_toml_string(text)}")["k"] == text
        assert tomllib.loads(f"k = {_toml_literal(text)}")["k"] == text


def test_a_metric_printed_as_a_dict_key_is_read_by_its_pattern() -> None:
    from ratchet.knobs.printnames import mid_line_pattern

    line = "{'eval_loss': 0.6046, 'eval_runtime': 1.2, 'epoch': 1.0}"
    assert re.search(mid_line_pattern("eval_loss"), line)["value"] == "0.6046"  # type: ignore
