"""`ratchet init` on a repository shaped like nanoGPT (issue 23): a configurator that execs
config files and `--key=value` overrides, module-level settings with loop state after them, a
fixed seed, data under `data/` that git ignores, the metric printed mid-line as `val loss`, a
`bench.py` printing `time:`, config files for training and for evaluation. Init follows the
command, observes it in the real sandbox, and writes a task file a TPE study runs as written.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import commit_all, git

from ratchet.cli import main
from ratchet.study import open_study

CONFIGURATOR = """\
import sys
from ast import literal_eval

for arg in sys.argv[1:]:
    if '=' not in arg:
        config_file = arg
        print(f"Overriding config with {config_file}:")
        exec(open(config_file).read())
    else:
        key, val = arg.split('=')
        key = key[2:]
        attempt = literal_eval(val)
        print(f"Overriding: {key} = {attempt}")
        globals()[key] = attempt
"""

TRAIN = """\
import math
import os
import random

from model import Model

# I/O
out_dir = 'out'
eval_interval = 20
log_interval = 1
eval_iters = 20
eval_only = False
always_save_checkpoint = True
init_from = 'scratch'
wandb_log = False
wandb_project = 'owt'
# data
dataset = 'tiny'
gradient_accumulation_steps = 4
batch_size = 12
block_size = 64
# model
n_layer = 4
n_embd = 32
dropout = 0.0
# optimizer
learning_rate = 6e-4
max_iters = 40
weight_decay = 1e-1
beta2 = 0.95
warmup_iters = 10
# system
device = 'cpu'
compile = True
exec(open('configurator.py').read())

seed_offset = 0
random.seed(1337 + seed_offset)
data_dir = os.path.join('data', dataset)
with open(os.path.join(data_dir, 'train.bin'), 'rb') as f:
    data = f.read()

model = Model(n_layer, n_embd)
iter_num = 0
best_val_loss = 1e9
local_iter_num = 0
running_mfu = -1.0
while True:
    if iter_num % eval_interval == 0:
        base = (math.log10(learning_rate) + 2.5) ** 2 + weight_decay + abs(beta2 - 0.97) * 10
        val = base + dropout + model.size() / 1e4 + random.gauss(0.0, 0.01) + len(data) / 1e6
        print(f"step {iter_num}: train loss {val - 0.1:.4f}, val loss {val:.4f}")
        if val < best_val_loss:
            best_val_loss = val
    running_mfu = 0.5 if running_mfu < 0 else 0.9 * running_mfu + 0.05
    print(f"iter {iter_num}: loss {2.0:.4f}, time {1.5:.2f}ms, mfu {running_mfu * 100:.2f}%")
    iter_num += 1
    local_iter_num += 1
    if iter_num > max_iters:
        break
"""

MODEL = """\
class Model:
    def __init__(self, n_layer, n_embd):
        self.n_layer, self.n_embd = n_layer, n_embd

    def size(self):
        return self.n_layer * self.n_embd
"""

BENCH = """\
import time

from model import Model

t0 = time.time()
Model(2, 8).size()
print(f"time: {time.time() - t0:.4f}")
"""

FILES = {
    "configurator.py": CONFIGURATOR,
    "train.py": TRAIN,
    "model.py": MODEL,
    "bench.py": BENCH,
    "config/train_x.py": ("# a small run\nout_dir = 'out-x'\neval_interval = 10\n"
                          "dataset = 'tiny'\nbatch_size = 8\nlearning_rate = 1e-3\n"
                          "max_iters = 20\nbeta2 = 0.99\ndropout = 0.1\n"),
    "config/eval_x.py": ("# evaluate a pretrained model\nbatch_size = 8\neval_iters = 500\n"
                         "eval_only = True\ninit_from = 'gpt2'\nlearning_rate = 3e-5\n"),
    "data/tiny/prepare.py": ("import os\nhere = os.path.dirname(__file__)\n"
                             "open(os.path.join(here, 'train.bin'), 'wb').write(b'x' * 1000)\n"),
    ".gitignore": "*.bin\n__pycache__/\n",
}


def make_nanogpt(tmp_path: Path) -> Path:
    repo = tmp_path / "nano"
    for path, text in FILES.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "init", "-q")
    commit_all(repo, "nanoGPT-shaped")
    subprocess.run([sys.executable, "data/tiny/prepare.py"], cwd=repo, check=True)
    assert git(repo, "status", "--porcelain") == ""  # the data is ignored, the commit lacks it
    return repo


def init(repo: Path, *args: str) -> tuple[dict, str, str]:
    result = subprocess.run([sys.executable, "-m", "ratchet.cli", "init", *args], cwd=repo,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = (repo / "ratchet.toml").read_text()
    return tomllib.loads(text), text, result.stdout


def comment_for(text: str, name: str) -> str:
    """The comment line init wrote for a held-back knob."""
    (line,) = [ln for ln in text.splitlines() if ln.startswith(f"# {name}: left out")]
    return line


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_nanogpt(tmp_path)


def test_init_without_running_guesses_and_says_so(repo: Path) -> None:
    data, text, out = init(repo, "--no-run")
    assert data["task"]["command"] == "python train.py"
    metric = data["metric"]
    assert (metric["name"], metric["goal"]) == ("val_loss", "minimize")
    assert re.search(metric["pattern"], "step 0: train loss 2.0, val loss 2.1").group("value") \
        == "2.1"
    assert not re.search(metric["pattern"], "step 0: train loss 2.0")
    # protected: the data preparation and the config that sets up an evaluation
    assert {"data/tiny/prepare.py", "config/eval_x.py"} <= set(data["task"]["protected"])
    assert data["sandbox"]["read_only"] == ["data"]
    assert data["seeds"]["files"] == ["train.py"]
    line = TRAIN.splitlines().index("random.seed(1337 + seed_offset)") + 1
    assert f"#   train.py:{line} random.seed(1337 + seed_offset)" in text
    # nothing was observed: each guess says so, in the file and in the summary
    guessed = "guessed from the code, not observed"
    assert f"printed by train.py; {guessed}" in text
    assert "# data: train.py reads 'data', which holds files the commit lacks" in text
    assert text.count(guessed) >= 4 and out.count(guessed) >= 3
    assert "command: python train.py (guessed" in out
    assert "config/train_x.py" in out  # the config files it could be given are named
    # without a config file on the command line, the script owns every knob
    assert {p for p in re.findall(r"# (\S+?):\d+, now", text)} == {"train.py"}


def test_init_follows_the_command_and_observes_it(repo: Path) -> None:
    data, text, out = init(repo, "--command", "python train.py config/train_x.py",
                           "--observe-timeout", "30s")
    assert data["task"]["command"] == "python train.py config/train_x.py"
    metric = data["metric"]
    assert (metric["name"], metric["goal"]) == ("val_loss", "minimize")
    assert "seen in the observed runs' output" in text
    # the runs failed on the ignored data, then ran with it mounted
    assert data["sandbox"]["read_only"] == ["data"]
    assert "# data: the observed run could not open data/tiny/train.bin" in text
    assert "printed identical" in text and "val loss" in text.split("printed identical")[1]
    assert "guessed from the code, not observed" not in text
    # each knob is rewritten where the run takes its value
    space = data["space"]
    owners = dict(re.findall(r"^(\w+) = \{.*# (\S+?):\d+, now", text, re.MULTILINE))
    assert owners["learning_rate"] == "config/train_x.py" and owners["dropout"] == \
        "config/train_x.py"
    assert owners["beta2"] == "config/train_x.py" and owners["weight_decay"] == "train.py"
    assert set(space) == {"learning_rate", "dropout", "beta2", "weight_decay", "warmup_iters"}
    # held back, each with its reason
    for name in ("iter_num", "best_val_loss", "local_iter_num", "running_mfu"):
        assert "loop state" in comment_for(text, name), name
    for name in ("out_dir", "log_interval", "always_save_checkpoint", "wandb_log",
                 "wandb_project", "init_from", "dataset"):
        assert "I/O" in comment_for(text, name), name
    for name in ("eval_interval", "eval_iters", "eval_only"):
        assert "evaluation" in comment_for(text, name), name
    for name in ("device", "compile"):
        assert "compile" in comment_for(text, name), name
    assert "step count" in comment_for(text, "max_iters")
    for name in ("batch_size", "block_size", "gradient_accumulation_steps"):
        assert "data per step" in comment_for(text, name), name
    for name in ("n_layer", "n_embd"):
        assert "model size" in comment_for(text, name), name
    assert "config/train_x.py:5" in comment_for(text, "batch_size")  # its owner, not eval_x
    assert "config/eval_x.py" not in "".join(ln for ln in text.splitlines()
                                             if "left out" in ln or "now" in ln)


def test_a_value_on_the_command_line_is_no_knob(repo: Path) -> None:
    data, text, _ = init(repo, "--no-run", "--command",
                         "python train.py config/train_x.py --learning_rate=0.002")
    assert "learning_rate" not in data["space"]
    assert "set on the command line (--learning_rate=0.002)" in comment_for(text,
                                                                            "learning_rate")


def test_space_discover_gives_inits_answer(repo: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    data, _, _ = init(repo, "--no-run", "--command", "python train.py config/train_x.py")
    assert main(["space", "--discover", "--repo", str(repo)]) == 0
    discovered = capsys.readouterr().out
    assert tomllib.loads(discovered)["space"] == data["space"]
    assert "# eval_iters: left out" in discovered and "# iter_num: left out" in discovered


def test_a_tpe_study_on_inits_own_file_voids_nothing(repo: Path) -> None:
    data, text, _ = init(repo, "--command", "python train.py config/train_x.py",
                         "--observe-timeout", "30s")
    (repo / "ratchet.toml").write_text(text.replace('baseline_runs = 4', 'baseline_runs = 2')
                                       .replace('max_runs = 8', 'max_runs = 3'))
    commit_all(repo, "ratchet task")
    study = open_study(repo, "tpe", proposer="tpe", seed=0)
    study.run(max_experiments=4)
    runs = study.experiments()
    assert len(runs) >= 4
    # init's [seeds] files give each baseline run its own seed: the fixed seed hides no noise
    assert len(set(runs[0].values)) == len(runs[0].values) == 2
    assert [e.status for e in runs if e.status in ("void", "crash")] == [], \
        [(e.status, e.reason) for e in runs]
    for e in runs[1:]:
        changed = {ln.split(" b/")[-1] for ln in e.diff.splitlines()
                   if ln.startswith("diff --git")}
        assert changed <= {"config/train_x.py", "train.py"}, changed
        assert "config/eval_x.py" not in changed


def test_run_refuses_a_knob_only_a_protected_file_holds(repo: Path) -> None:
    data, text, _ = init(repo, "--no-run", "--command", "python train.py config/train_x.py")
    text = text.replace("[space]\n", "[space]\neval_special = { int = [1, 4] }\n", 1)
    (repo / "config/eval_x.py").write_text(FILES["config/eval_x.py"] + "eval_special = 2\n")
    (repo / "ratchet.toml").write_text(text)
    commit_all(repo, "task")
    result = subprocess.run([sys.executable, "-m", "ratchet.cli", "run", "--max-experiments",
                             "1"], cwd=repo, capture_output=True, text=True, timeout=120)
    err = result.stderr.strip()
    assert result.returncode == 2 and len(err.splitlines()) == 1, err
    assert "[space].eval_special: only in config/eval_x.py, which is protected" in err


def test_a_baseline_that_cannot_open_untracked_data_names_the_fix(repo: Path) -> None:
    """Without `[sandbox] read_only`, the ignored data/ is absent from the sandbox: the failed
    baseline's message names the file and the setting, not only the log."""
    data, text, _ = init(repo, "--no-run", "--command", "python train.py config/train_x.py")
    (repo / "ratchet.toml").write_text(text.replace('read_only = ["data"]', "read_only = []"))
    commit_all(repo, "task without the data")
    result = subprocess.run([sys.executable, "-m", "ratchet.cli", "run", "--plain",
                             "--max-experiments", "1"], cwd=repo, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"could not open data/\S+\.bin, which is not in the commit .*"
                     r'add \[sandbox\] read_only = \["data"\]', result.stderr), result.stderr
