"""How data/<split>.jsonl.xz were made (run once by the maintainers; never at evaluation time).

Every top-level module of CPython 3.11.7's standard library (Lib/*.py), sorted by name, one
JSON line {"name", "text"} each, sent to a split by the hash of its name (prepare.split_of) and
compressed with xz, one file per split. Run it only under that exact Python, then
`python prepare.py --write-manifest`.
"""

import json
import lzma
import sys
import sysconfig
from contextlib import ExitStack
from pathlib import Path

from prepare import DATA, SPLITS, split_of

assert sys.version_info[:3] == (3, 11, 7), "the corpus is pinned to CPython 3.11.7"
lib = Path(sysconfig.get_paths()["stdlib"])
with ExitStack() as stack:
    files = {split: stack.enter_context(lzma.open(DATA / f"{split}.jsonl.xz", "wt", preset=9))
             for split in SPLITS}
    for path in sorted(lib.glob("*.py")):
        files[split_of(path.name)].write(
            json.dumps({"name": path.name, "text": path.read_text("utf-8")}) + "\n")
