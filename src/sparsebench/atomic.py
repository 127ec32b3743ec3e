"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every writer goes through a temporary file in the target's folder, fsync, then `os.replace`,
so a job killed mid-write leaves the previous version (or nothing) behind. `write_with_digest`
adds a SHA-256 sidecar (`<name>.sha256`) that a reader checks to catch a truncated file.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def abandoned(path: Path) -> list[Path]:
    """Temp files of writes to `path` that a killed process never renamed into place."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def write_json(path: Path, document: Any) -> None:
    """Write `document` as indented, key-sorted JSON; NaN and infinity become null."""
    text = json.dumps(finite(document), indent=1, sort_keys=True, allow_nan=False)
    write_bytes(path, text.encode())


def sidecar(path: Path) -> Path:
    """Where the SHA-256 digest of `path` is kept."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write_with_digest(path: Path, data: bytes) -> None:
    """Write `data` and then its SHA-256 sidecar, each atomically. A crash between the two
    leaves a file and a digest that disagree, which `digest_ok` detects."""
    write_bytes(path, data)
    write_bytes(sidecar(path), hashlib.sha256(data).hexdigest().encode() + b"\n")


def digest_ok(path: Path, data: bytes | None = None) -> bool:
    """True when `path` exists, has a sidecar, and its bytes (or `data`) match the digest."""
    path, digest = Path(path), sidecar(path)
    if not path.exists() or not digest.exists():
        return False
    content = path.read_bytes() if data is None else data
    return hashlib.sha256(content).hexdigest() == digest.read_text().strip()


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: replace them by None, recursively."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
