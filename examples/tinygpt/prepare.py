"""tinygpt data (protected): splits of the pinned corpus, a byte-level BPE tokenizer, tokens.

The corpus ships in data/corpus.jsonl.xz (see make_corpus.py). Documents go to a split by the
hash of their name; the tokenizer is trained on the training split only. Every file this
writes, and the corpus itself, has its sha256 pinned in data/manifest.json: data that does not
match is refused, never scored. The holdout split is written only when asked for by name.

    python prepare.py                    # train + validation tokens into prepared/
    python prepare.py --split holdout    # the holdout tokens too
"""

import hashlib
import json
import lzma
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "data" / "corpus.jsonl.xz"
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


def split_docs() -> dict[str, list[str]]:
    raw = CORPUS.read_bytes()
    if sha256(raw) != pinned()["corpus"]:
        raise DataMismatch("corpus.jsonl.xz does not match its pinned sha256: refusing it")
    texts: dict[str, list[str]] = {s: [] for s in SPLITS}
    for line in lzma.decompress(raw).decode("utf-8").splitlines():
        doc = json.loads(line)
        texts[split_of(doc["name"])].append(doc["text"])
    return texts


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


def build(splits: tuple[str, ...] = ("train", "validation")) -> dict[str, str]:
    """Write tokenizer and token files for `splits`; returns their sha256 by name."""
    texts = split_docs()
    tokenizer = train_tokenizer(texts["train"])
    OUT.mkdir(exist_ok=True)
    (OUT / "tokenizer.json").write_text(tokenizer.to_str())
    hashes = {"tokenizer": sha256((OUT / "tokenizer.json").read_bytes())}
    for split in splits:
        path = OUT / f"{split}.bin"
        path.write_bytes(encode(tokenizer, texts[split]).tobytes())
        hashes[split] = sha256(path.read_bytes())
    return hashes


def _verified(path: Path, key: str) -> bytes:
    data = path.read_bytes()
    if sha256(data) != pinned()[key]:
        raise DataMismatch(f"{path.name} does not match its pinned sha256: refusing to use it")
    return data


def load_tokens(split: str) -> np.ndarray:
    """The tokens of a split, checked against the pinned hash (built first if missing)."""
    path = OUT / f"{split}.bin"
    if not path.exists():
        build((split,))
    return np.frombuffer(_verified(path, split), dtype=np.uint16)


def load_tokenizer() -> Tokenizer:
    path = OUT / "tokenizer.json"
    if not path.exists():
        build(())
    return Tokenizer.from_str(_verified(path, "tokenizer").decode("utf-8"))


def main() -> None:
    splits = ("train", "validation")
    if "--split" in sys.argv:
        splits = (sys.argv[sys.argv.index("--split") + 1],)
    if "--write-manifest" in sys.argv:  # maintainers only, after changing the data pipeline
        MANIFEST.write_text(json.dumps({"corpus": sha256(CORPUS.read_bytes())}) + "\n")
        hashes = build(SPLITS)
        MANIFEST.write_text(json.dumps({"corpus": sha256(CORPUS.read_bytes()), **hashes},
                                       indent=2) + "\n")
        return
    hashes = build(splits)
    expected = pinned()
    for key, value in hashes.items():
        if value != expected[key]:
            raise DataMismatch(f"prepared {key} differs from the pinned data: refusing it")
    counts = {s: (OUT / f"{s}.bin").stat().st_size // 2 for s in splits}
    print("prepared: " + ", ".join(f"{s} {n} tokens" for s, n in counts.items()))


if __name__ == "__main__":
    main()
