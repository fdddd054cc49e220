"""tinygpt data (protected): the pinned corpus splits, a byte-level BPE tokenizer, tokens.

The corpus ships as one file per split, data/<split>.jsonl.xz (see make_corpus.py): documents
go to a split by the hash of their name. The validation and holdout files are *hidden*: the
training command never sees them; only the protected evaluator reads them, and keeps their
tokens in memory (never on disk, where the model process beside it could read them). The
tokenizer is trained on the training split only. Every split, token stream and the tokenizer
have their sha256 pinned in data/manifest.json: data that does not match is refused.

    python prepare.py                    # tokenizer + training tokens into prepared/
"""

import hashlib
import json
import lzma
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
MANIFEST = HERE / "data" / "manifest.json"
OUT = HERE / "prepared"
VOCAB_SIZE = 1024
SPLITS = ("train", "validation", "holdout")


class DataMismatch(SystemExit):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pinned() -> dict:
    return json.loads(MANIFEST.read_text())


def split_of(name: str) -> str:
    bucket = int(sha256(name.encode())[:8], 16) % 20
    return "validation" if bucket == 0 else "holdout" if bucket == 1 else "train"


def split_docs(split: str) -> list[str]:
    """The documents of one split, from its pinned file."""
    path = DATA / f"{split}.jsonl.xz"
    raw = path.read_bytes()
    if sha256(raw) != pinned()[f"{split}.jsonl.xz"]:
        raise DataMismatch(f"{path.name} does not match its pinned sha256: refusing it")
    return [json.loads(line)["text"] for line in lzma.decompress(raw).decode().splitlines()]


def train_tokenizer(docs: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(docs, trainer=trainer)
    return tokenizer


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: one printable character per byte value."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def token_bytes(tokenizer: Tokenizer) -> list[bytes]:
    """The exact bytes each token id stands for (a token may be part of a UTF-8 character)."""
    decoder = _byte_decoder()
    table = [b""] * tokenizer.get_vocab_size()
    for piece, index in tokenizer.get_vocab().items():
        table[index] = bytes(decoder[c] for c in piece)
    return table


def encode(tokenizer: Tokenizer, docs: list[str]) -> np.ndarray:
    """One token stream for a split: its documents in order, each ending with a newline."""
    docs = [doc + "\n" for doc in docs]
    ids = np.concatenate([np.array(e.ids, dtype=np.uint16)
                          for e in tokenizer.encode_batch(docs)])
    lengths = np.array([len(b) for b in token_bytes(tokenizer)])
    if int(lengths[ids].sum()) != sum(len(doc.encode("utf-8")) for doc in docs):
        raise DataMismatch("tokenization does not round-trip to the text's bytes")
    return ids


def build_tokenizer() -> Tokenizer:
    """Train the tokenizer on the training split and write it; checked against its pin."""
    tokenizer = train_tokenizer(split_docs("train"))
    OUT.mkdir(exist_ok=True)
    (OUT / "tokenizer.json").write_text(tokenizer.to_str())
    _verified(OUT / "tokenizer.json", "tokenizer")
    return tokenizer


def tokens_of(split: str, tokenizer: Tokenizer) -> np.ndarray:
    """A split's tokens, made in memory and checked against the pinned hash."""
    ids = encode(tokenizer, split_docs(split))
    if sha256(ids.tobytes()) != pinned()[split]:
        raise DataMismatch(f"{split} tokens differ from the pinned data: refusing them")
    return ids


def _verified(path: Path, key: str) -> bytes:
    data = path.read_bytes()
    if sha256(data) != pinned()[key]:
        raise DataMismatch(f"{path.name} does not match its pinned sha256: refusing to use it")
    return data


def load_tokens(split: str) -> np.ndarray:
    """The training tokens from prepared/ (built first if missing), checked against the pin.
    The hidden splits are never written to disk: see `tokens_of`."""
    if split != "train":
        return tokens_of(split, load_tokenizer())
    path = OUT / "train.bin"
    if not path.exists():
        path.write_bytes(tokens_of("train", load_tokenizer()).tobytes())
    return np.frombuffer(_verified(path, "train"), dtype=np.uint16)


def load_tokenizer() -> Tokenizer:
    path = OUT / "tokenizer.json"
    if not path.exists():
        return build_tokenizer()
    return Tokenizer.from_str(_verified(path, "tokenizer").decode("utf-8"))


def write_manifest() -> None:
    """Maintainers only, after changing the data pipeline: pin every split, token stream and
    the tokenizer as they are now."""
    pins = {f"{s}.jsonl.xz": sha256((DATA / f"{s}.jsonl.xz").read_bytes()) for s in SPLITS}
    MANIFEST.write_text(json.dumps(pins) + "\n")
    tokenizer = train_tokenizer(split_docs("train"))
    pins["tokenizer"] = sha256(tokenizer.to_str().encode("utf-8"))
    pins.update({s: sha256(encode(tokenizer, split_docs(s)).tobytes()) for s in SPLITS})
    MANIFEST.write_text(json.dumps(pins, indent=2) + "\n")


def main() -> None:
    if "--write-manifest" in sys.argv:
        write_manifest()
        return
    load_tokenizer()
    tokens = load_tokens("train")
    print(f"prepared: train {len(tokens)} tokens")


if __name__ == "__main__":
    main()
