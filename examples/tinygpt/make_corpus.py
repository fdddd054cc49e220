"""How data/corpus.jsonl.xz was made (run once by the maintainers; never at evaluation time).

Every top-level module of CPython 3.11.7's standard library (Lib/*.py), sorted by name, one
JSON line {"name", "text"} each, compressed with xz. Run it only under that exact Python.
"""

import json
import lzma
import sys
import sysconfig
from pathlib import Path

assert sys.version_info[:3] == (3, 11, 7), "the corpus is pinned to CPython 3.11.7"
lib = Path(sysconfig.get_paths()["stdlib"])
with lzma.open(Path(__file__).parent / "data" / "corpus.jsonl.xz", "wt", preset=9) as out:
    for path in sorted(lib.glob("*.py")):
        out.write(json.dumps({"name": path.name, "text": path.read_text("utf-8")}) + "\n")
