"""examples/speedup: the timing is taken outside the edited code, nothing of the edited code
runs while the reference is timed, and a wrong answer voids."""

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXAMPLES
from test_integrity import edit, patch_from

from ratchet.study import open_study

GREEDY = ('rule = "noise-aware"\nbaseline_runs = 3', 'rule = "greedy"\nbaseline_runs = 1')


@pytest.fixture
def study(make_repo: Callable[..., Path]):  # type: ignore[no-untyped-def]
    repo = make_repo("speedup", replace={"ratchet.toml": GREEDY})
    return repo, open_study(repo, "speed", proposer="random", seed=0)


def test_a_wrong_answer_voids_the_run(study) -> None:  # type: ignore[no-untyped-def]
    repo, s = study
    wrong = s.try_patch(patch_from(repo, edit(
        "solution.py", "    return [distance(a, b) for a, b in pairs]",
        "    return [len(a) for a, b in pairs]  # fast, and wrong")), "skip the work")
    assert wrong.status == "void" and "wrong answer" in wrong.reason
    baseline = s.experiments()[0]
    assert baseline.status == "keep" and baseline.value > 0


def test_the_edited_code_cannot_touch_the_clock_or_print_the_metric(  # type: ignore[no-untyped-def]
        study) -> None:
    repo, s = study
    cheat = s.try_patch(patch_from(repo, edit(
        "solution.py", "TWO_ROWS = False",
        "import time\ntime.perf_counter = lambda: 0.0\nprint('ms: 0.001')\nTWO_ROWS = False")),
        "stop the clock")
    baseline = s.experiments()[0]
    assert cheat.status in ("keep", "discard")
    assert cheat.value > 0.2 * baseline.value  # timed in the benchmark's own process
    assert "ms: 0.001" in Path(cheat.log_path).with_suffix(".predict.log").read_text()
    assert "ms: 0.001" not in Path(cheat.log_path).read_text().split("==> ratchet: evaluate")[1]


# Edited code that leaves something running beside the benchmark, to slow its reference down:
# a loop writing a heartbeat (wall-clock time) to the model's log every 2 ms, run ...
SPIN = '''
import os, time
beat = 0.0
while True:
    now = time.time()
    if now - beat > 0.002:
        os.write(2, f"heartbeat {now!r}\\n".encode())
        beat = now
'''
# ... in a thread of the model process
SPINNER_THREAD = f'''
import threading as _threading
_threading.Thread(target=exec, args=({SPIN!r}, {{}}), daemon=DAEMON).start()
'''
# ... a process in a session of its own, which outlives the model process unless its sandbox
# takes it down (the command phase imports solution.py too: it spins there as well)
SPINNER_PROCESS = f'''
import subprocess as _subprocess
import sys as _sys
_subprocess.Popen([_sys.executable, "-c", {SPIN!r}], start_new_session=True,
                  stdin=_subprocess.DEVNULL, stdout=_subprocess.DEVNULL)
'''

# ... a forked child that keeps every descriptor of the model process, its reply pipe included
HOLD_THE_PIPE = '''
import os as _os
import time as _time

if _os.fork() == 0:
    for _fd in (0, 1, 2):
        _os.close(_fd)
    _time.sleep(4)
    _os._exit(0)
'''
# benchmark.py run by hand, saying when it starts timing its reference (and with a shorter wait
# for the model to exit)
BY_HAND = '''
import sys
import time

import benchmark

benchmark.EXIT_TIMEOUT_S = float(sys.argv[1])
_reference = benchmark.reference


def reference(a, b):
    if not reference.started:
        reference.started = True
        print(f"reference-start {time.time()!r}", file=sys.stderr, flush=True)
    return _reference(a, b)


reference.started = False
benchmark.reference = reference
benchmark.main()
'''
REFERENCE_START = ("        time.sleep(TEARDOWN_S)\n",
                   "        time.sleep(TEARDOWN_S)\n"
                   "        print(f'reference-start {time.time()!r}', file=sys.stderr)\n")


def heartbeats_and_start(output: str) -> tuple[list[float], float]:
    beats = [float(m) for m in re.findall(r"^heartbeat (\d+\.\d+)$", output, re.MULTILINE)]
    (start,) = re.findall(r"^reference-start (\d+\.\d+)$", output, re.MULTILINE)
    return beats, float(start)


def run_by_hand(tmp_path: Path, prelude: str, exit_timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    root = tmp_path / "speedup"
    shutil.copytree(EXAMPLES / "speedup", root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "solution.py").write_text(prelude + (root / "solution.py").read_text())
    (root / "by_hand.py").write_text(BY_HAND)
    env = {k: v for k, v in os.environ.items() if k != "RATCHET_PREDICT_FDS"}
    return subprocess.run([sys.executable, "by_hand.py", str(exit_timeout_s)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("daemon", [True, False])
def test_a_thread_the_edited_code_starts_is_gone_before_the_reference_is_timed(
        tmp_path: Path, daemon: bool) -> None:
    result = run_by_hand(tmp_path, SPINNER_THREAD.replace("DAEMON", str(daemon)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "time_ratio: " in result.stdout
    beats, start = heartbeats_and_start(result.stderr)
    assert len(beats) > 10  # it ran while the edited code was timed ...
    assert max(beats) < start  # ... and never while the reference was


def test_a_model_that_does_not_exit_when_its_input_closes_is_voided(tmp_path: Path) -> None:
    result = run_by_hand(tmp_path, HOLD_THE_PIPE, exit_timeout_s=1.0)
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stdout == ("ratchet-void: the model process did not exit when its input "
                             "closed\n")
    assert "reference-start" not in result.stderr


def test_a_process_the_edited_code_starts_dies_with_the_model_in_its_sandbox(
        make_repo: Callable[..., Path]) -> None:
    repo = make_repo("speedup", replace={"ratchet.toml": GREEDY, "benchmark.py": REFERENCE_START})
    s = open_study(repo, "spin", proposer="random", seed=0)
    spin = s.try_patch(patch_from(repo, edit("solution.py", '"""\n\nTWO_ROWS',
                                             '"""\n' + SPINNER_PROCESS + '\nTWO_ROWS')),
                       "spin beside the reference")
    assert spin.status in ("keep", "discard"), spin.reason
    model_log = Path(spin.log_path).with_suffix(".predict.log").read_text()
    beats, _ = heartbeats_and_start("reference-start 0.0\n" + model_log)
    _, start = heartbeats_and_start(Path(spin.log_path).read_text().split(
        "==> ratchet: evaluate")[1])
    assert len(beats) > 10  # it ran while the edited code was timed ...
    assert max(beats) < start  # ... and was gone, with the model's sandbox, before the reference
