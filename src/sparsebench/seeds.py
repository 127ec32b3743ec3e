"""Per-axis seeds derived from one root seed.

Each axis (data order, partition, init, method) gets its own stream, derived by hashing the root
seed with the axis name, so changing how one axis draws never shifts another's randomness
(benchopt's `get_seed` idea).
"""

from __future__ import annotations

import hashlib

AXES = ("data", "partition", "init", "method")


def derive(root: int, axis: str, *index: int) -> int:
    """A 31-bit seed for `axis` (and, for one stream per round, client or node, its `index`),
    a pure function of (root, axis, index)."""
    key = ":".join(str(part) for part in (root, axis, *index))
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def all_seeds(root: int) -> dict[str, int]:
    return {"root": root, **{axis: derive(root, axis) for axis in AXES}}
