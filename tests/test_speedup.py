"""examples/speedup: the timing is taken outside the edited code, and a wrong answer voids."""

from collections.abc import Callable
from pathlib import Path

import pytest
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
