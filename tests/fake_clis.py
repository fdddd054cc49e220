"""Fake `claude`, `codex` and `aider` executables: each edits objective.py the way the real CLI
would leave it, and prints its output in that CLI's own format (JSON, JSONL, text).

FAKE_MODE picks the behaviour: ok (move X), login (fail as a CLI that is not logged in),
protected (edit the protected evaluate.py). The prompt received is appended to FAKE_PROMPTS.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

SCRIPT = r'''
import json, os, re, sys
from pathlib import Path

NAME = {name!r}
args = sys.argv[1:]
if NAME == "claude":
    prompt = args[args.index("-p") + 1]
elif NAME == "codex":
    prompt = args[-1]
else:
    prompt = args[args.index("--message") + 1]
with open(os.environ["FAKE_PROMPTS"], "a") as f:
    f.write(json.dumps({{"cli": NAME, "cwd": os.getcwd(), "args": args[:-1] if NAME == "codex"
                        else [a for a in args if a != prompt], "prompt": prompt}}) + "\n")
mode = os.environ.get("FAKE_MODE", "ok")
if mode == "login":
    if NAME == "claude":
        print(json.dumps({{"type": "result", "is_error": True,
                          "result": "Invalid API key · Please run /login"}}))
    else:
        print("Error: not logged in; run `login` first", file=sys.stderr)
    sys.exit(1)
runs = len(Path(os.environ["FAKE_PROMPTS"]).read_text().splitlines())
target = "evaluate.py" if mode == "protected" else "objective.py"
text = Path(target).read_text()
x = 1.5 - 1.0 / (runs + 1)
if target == "objective.py":
    text = re.sub(r"^X = .*$", f"X = {{x}}", text, count=1, flags=re.MULTILINE)
else:
    text = "print('loss: 0.0')\n"
Path(target).write_text(text)
Path("__pycache__").mkdir(exist_ok=True)
Path("__pycache__/junk.pyc").write_bytes(b"junk")
answer = f"I moved X to {{x}}.\nDESCRIPTION: move X to {{x:.3f}}"
if NAME == "claude":
    print(json.dumps({{"type": "result", "subtype": "success", "is_error": False,
                      "result": answer, "total_cost_usd": 0.0123,
                      "usage": {{"input_tokens": 300, "cache_creation_input_tokens": 200,
                                "cache_read_input_tokens": 5000, "output_tokens": 400}}}}))
elif NAME == "codex":
    print(json.dumps({{"type": "thread.started", "thread_id": "t1"}}))
    print(json.dumps({{"type": "item.completed", "item": {{"id": "i1", "type": "agent_message",
                                                          "text": answer}}}}))
    print(json.dumps({{"type": "turn.completed", "usage": {{"input_tokens": 7000,
                      "cached_input_tokens": 4000, "output_tokens": 900}}}}))
else:
    print("Aider v0.86.1")
    print(answer)
    print("Tokens: 4.2k sent, 312 received. Cost: $0.02 message, $0.02 session.")
'''


def install(bin_dir: Path) -> None:
    """Write the three fake executables into `bin_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("claude", "codex", "aider"):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n" + SCRIPT.format(name=name))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def prompts(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
