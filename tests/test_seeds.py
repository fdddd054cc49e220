"""Hard-coded seeds: found on the parsed code, rewritten in place, and a seed-only change told
apart from any other (ratchet.knobs.seeds)."""

from __future__ import annotations

import ast

from ratchet.knobs.seeds import SeedSite, find_seeds, only_seeds_differ, rewrite_seeds

NANOGPT = """\
import torch
seed_offset = 0
torch.manual_seed(1337 + seed_offset)
"""


def _codes(text: str) -> list[tuple[int, str, str]]:
    return [(s.line, s.code, s.kind) for s in find_seeds(text, "train.py")]


def test_finds_calls_with_an_int_in_their_first_argument() -> None:
    text = NANOGPT + "import random\nrandom.seed(0)\nimport numpy as np\nnp.random.seed(42)\n"
    sites = find_seeds(text, "train.py")
    assert [(s.line, s.code, s.kind) for s in sites] == [
        (2, "seed_offset = 0", "assignment"),
        (3, "torch.manual_seed(1337 + seed_offset)", "call"),
        (5, "random.seed(0)", "call"),
        (7, "np.random.seed(42)", "call"),
    ]
    assert str(sites[1]) == "train.py:3 torch.manual_seed(1337 + seed_offset)"
    assert sites[1] == SeedSite("train.py", 3, "torch.manual_seed(1337 + seed_offset)", "call")


def test_every_seeding_function_by_its_last_attribute() -> None:
    calls = ["torch.cuda.manual_seed_all(3)", "transformers.set_seed(4)",
             "lightning.seed_everything(5)", "mmcv.runner.set_random_seed(6)",
             "jax.random.PRNGKey(7)", "jax.random.key(8)", "np.random.default_rng(9)",
             "np.random.RandomState(10)", "torch.Generator().manual_seed(11)",
             "random.Random(12)", "set_seed(13)"]
    text = "\n".join(calls) + "\n"
    assert [s.code for s in find_seeds(text, "a.py")] == calls


def test_keyword_seeds_in_any_call() -> None:
    text = ("rng = make(seed=3)\nsplit(x, y, random_state=0)\nenv.reset(seed=-1)\n"
            "TrainingArguments(data_seed=7, seed=8)\nfit(x, random_state=None)\n")
    assert _codes(text) == [(1, "rng = make(seed=3)", "keyword"),
                            (2, "split(x, y, random_state=0)", "keyword"),
                            (3, "env.reset(seed=-1)", "keyword"),
                            (4, "TrainingArguments(data_seed=7, seed=8)", "keyword")]


def test_seed_settings_of_any_case_and_option_defaults() -> None:
    text = ("SEED = 42\nseed = 1337\nrandom_seed: int = 7\nname = 'seed'\nSEED_LIST = [1]\n"
            "parser.add_argument('--seed', type=int, default=1234)\n"
            "parser.add_argument('--steps', type=int, default=100)\n"
            "def main():\n    seed = 5\n")
    assert _codes(text) == [(1, "SEED = 42", "assignment"), (2, "seed = 1337", "assignment"),
                            (3, "random_seed: int = 7", "assignment"),
                            (6, "parser.add_argument('--seed', type=int, default=1234)",
                             "option default"),
                            (9, "seed = 5", "assignment")]


def test_what_is_not_found_is_said() -> None:
    """Seeds computed in a call, taken from a list, or read from RATCHET_SEED are not sites;
    nor are keys of mappings, booleans, or anything in code that does not parse."""
    text = ("random.seed(int('137'))\nnp.random.seed(seeds[0])\nd.key(0)\n"
            "random.seed(int(os.environ.get('RATCHET_SEED', 0)) + 1)\n"
            "SEED = int(os.environ['RATCHET_SEED'])\nshuffle(x, seed=True)\n"
            "torch.manual_seed(seed)\nrandom.seed(f'{42}')\n")
    assert find_seeds(text, "a.py") == []
    assert find_seeds("random.seed(0\n", "a.py") == []
    assert find_seeds("x = 1\0\n", "a.py") == []


def test_rewrite_replaces_only_the_literals() -> None:
    text = ("import torch  # seed: 1337 stays in comments\nSEED = 42  # the seed\n"
            "torch.manual_seed(1337 + seed_offset)\nx = 1337\nsplit(x, random_state=2 ** 31 - 1)\n"
            "np.random.seed(-1)\nrandom.seed(0 if fixed else 1)\n")
    assert rewrite_seeds(text, "a.py", 987) == (
        "import torch  # seed: 1337 stays in comments\nSEED = 987  # the seed\n"
        "torch.manual_seed(987 + seed_offset)\nx = 1337\nsplit(x, random_state=987)\n"
        "np.random.seed(987)\nrandom.seed(987 if fixed else 987)\n")


def test_rewrite_keeps_other_text_byte_for_byte() -> None:
    """Multi-byte characters before a literal (ast counts columns in UTF-8 bytes), CRLF line
    endings, a byte-order mark and form feeds all survive."""
    text = "\ufeffname = 'é✓'; SEED = 3\r\nx = 1\r\n\x0cy = 2\r\nrandom.seed(\n    5,\n)\r\n"
    assert rewrite_seeds(text, "a.py", 11) == \
        "\ufeffname = 'é✓'; SEED = 11\r\nx = 1\r\n\x0cy = 2\r\nrandom.seed(\n    11,\n)\r\n"
    assert rewrite_seeds("random.seed(0\n", "a.py", 1) == "random.seed(0\n"


def test_rewritten_code_parses_and_has_the_seed_everywhere() -> None:
    rewritten = rewrite_seeds(NANOGPT + "SEED = 1\nrandom.seed(SEED)\n", "a.py", 4242)
    ast.parse(rewritten)
    assert [s.code for s in find_seeds(rewritten, "a.py")] == [
        "seed_offset = 4242", "torch.manual_seed(4242 + seed_offset)", "SEED = 4242"]


def test_only_seeds_differ() -> None:
    old = "SEED = 42\nLR = 0.1\ntorch.manual_seed(1337 + seed_offset)\n"
    assert only_seeds_differ(old, old.replace("42", "137"), "a.py")
    assert only_seeds_differ(old, old.replace("1337", "7") + "# lucky\n", "a.py")
    assert only_seeds_differ(old, old.replace("SEED = 42", "SEED = (\n    137\n)"), "a.py")
    assert not only_seeds_differ(old, old, "a.py")
    assert not only_seeds_differ(old, old + "# a comment only\n", "a.py")
    assert not only_seeds_differ(old, old.replace("0.1", "0.2").replace("42", "1"), "a.py")
    assert not only_seeds_differ(old, old.replace("seed_offset", "offset"), "a.py")
    # a seed moved out of sight is a real change of code, judged by its runs
    assert not only_seeds_differ(old, old.replace("1337 + seed_offset", "int('7')"), "a.py")
    assert not only_seeds_differ(old, "SEED = (\n", "a.py")
