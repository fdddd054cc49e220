import ast

from hypothesis import given
from hypothesis import strategies as st

from ratchet.knobs.source import find_knobs, rewrite_knobs, space_toml, suggest_param

SOURCE = '''"""A training script."""
import os

DEPTH = 8  # layers
LR: float = 3e-4
BATCH = 2**19
NAME = "SSSL"
USE_BIAS = False
BETAS = (0.9, 0.95)
NEG = -0.5
lower_case = 3
COMPUTED = os.cpu_count()


def f():
    DEPTH = 99
    return DEPTH
'''


def test_finds_module_level_literal_constants_only() -> None:
    knobs = {k.name: k.value for k in find_knobs(SOURCE, "train.py")}
    assert knobs == {"DEPTH": 8, "LR": 3e-4, "BATCH": 524288, "NAME": "SSSL",
                     "USE_BIAS": False, "BETAS": (0.9, 0.95), "NEG": -0.5}


def test_rewrite_keeps_everything_else_byte_for_byte() -> None:
    out = rewrite_knobs(SOURCE, {"DEPTH": 12, "LR": 0.001, "NAME": "SSLL", "BETAS": (0.8, 0.99)})
    assert "DEPTH = 12  # layers\n" in out
    assert "LR: float = 0.001\n" in out
    assert 'NAME = "SSLL"\n' in out
    assert "BETAS = (0.8, 0.99)\n" in out
    assert "    DEPTH = 99\n" in out  # the function's local is not a knob
    changed = [a for a, b in zip(SOURCE.splitlines(), out.splitlines(), strict=True) if a != b]
    assert len(changed) == 4


def test_rewrite_of_unknown_knob_is_an_error() -> None:
    try:
        rewrite_knobs(SOURCE, {"MISSING": 1})
    except KeyError as exc:
        assert "MISSING" in str(exc)
    else:
        raise AssertionError("expected KeyError")


values = st.one_of(
    st.integers(-10**9, 10**9),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=20),
)


@given(values)
def test_rewritten_value_reads_back_identically(value: object) -> None:
    out = rewrite_knobs(SOURCE, {"DEPTH": value})
    ast.parse(out)
    found = {k.name: k.value for k in find_knobs(out)}
    assert found["DEPTH"] == value and type(found["DEPTH"]) is type(value)


def test_suggested_ranges_contain_the_current_value() -> None:
    for knob in find_knobs(SOURCE):
        param = suggest_param(knob)
        if param is None:
            assert knob.name in ("NAME", "BETAS")
            continue
        if param.kind == "choice":
            assert knob.value in param.choices
        else:
            assert param.low <= knob.value <= param.high
    assert "# NAME = ?" in space_toml(find_knobs(SOURCE, "train.py"))
    assert "LR = { float = [7.5e-05, 0.0012], log = true }" in space_toml(find_knobs(SOURCE))


def test_seed_knobs_are_not_searched() -> None:
    (knob,) = find_knobs("SEED = 42\n")
    assert suggest_param(knob) is None
