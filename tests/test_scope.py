from ratchet.knobs.scope import IN, OUTSIDE, classify

BASE = "import math\n\nLR = 0.01  # learning rate\nDEPTH = 4\nWINDOW = 128\n\n" \
       "def f(x):\n    return math.sqrt(x) * LR\n"
SPACE = ["LR", "DEPTH"]


def test_only_space_knob_values_changed_is_in() -> None:
    new = BASE.replace("LR = 0.01  # learning rate", "LR   =   0.02   # tuned").replace(
        "DEPTH = 4", "DEPTH = 6")
    assert classify({"t.py": BASE}, {"t.py": new}, SPACE) == IN


def test_formatting_and_comments_alone_are_in() -> None:
    new = BASE.replace("return math.sqrt(x) * LR", "return (math.sqrt(x) * LR)  # same")
    assert classify({"t.py": BASE}, {"t.py": new}, SPACE) == IN


def test_a_constant_outside_the_space_is_outside() -> None:
    new = BASE.replace("WINDOW = 128", "WINDOW = 64")
    assert classify({"t.py": BASE}, {"t.py": new}, SPACE) == OUTSIDE


def test_new_code_new_knobs_and_new_files_are_outside() -> None:
    assert classify({"t.py": BASE}, {"t.py": BASE.replace("math.sqrt(x)", "math.log(x)")},
                    SPACE) == OUTSIDE
    assert classify({"t.py": BASE}, {"t.py": BASE + "CLIP = 1.0\n"}, SPACE) == OUTSIDE
    assert classify({}, {"extra.py": "X = 1\n"}, SPACE) == OUTSIDE
    assert classify({"t.py": BASE}, {"t.py": "def broken(:\n"}, SPACE) == OUTSIDE
    assert classify({"notes.txt": "a"}, {"notes.txt": "b"}, SPACE) == OUTSIDE


def test_a_space_knob_turned_into_an_expression_is_still_in() -> None:
    # the value changed, the structure around it did not
    new = BASE.replace("DEPTH = 4", "DEPTH = 2 * 3")
    assert classify({"t.py": BASE}, {"t.py": new}, SPACE) == IN
