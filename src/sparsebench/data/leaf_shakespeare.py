"""Shakespeare partitioned by speaking role, LEAF-style (Caldas et al., "LEAF: A Benchmark for
Federated Settings", arXiv 1812.01097): one client per (play, role) with enough lines, and the
task is next-character prediction from the previous `seq_len` characters.

Parsing the Gutenberg texts of `sparsebench.data.shakespeare.play_texts()`: a speech starts with
a speaker line (after a blank line, short, ending in "." or all capitals, no comma, not
ACT/SCENE/Enter/Exit/a roman numeral) followed by its lines up to the next blank line; bracketed
stage directions are dropped. Roles are upper-cased, without the final ".", within a play
("Ber." and "BER." are one role). Each role's speeches are joined by newlines into its text;
every `stride`-th position gives a sample (x = seq_len character ids, y = the next character
id; LEAF uses stride 1, which over all plays gives 3.5M samples, so the default here is 16).
Roles with fewer than `min_samples` samples are dropped (LEAF's -k); each kept role's first
`train_fraction` of samples train, the rest test (LEAF's -t sample).
This is our own parse, so its client count differs from LEAF's 1,129 / 660 roles, FedProx's 143
and TFF's 715 (all 37 plays give 1,403 roles; 1,088 clients at stride 1, 602 at stride 16, with
min_samples 64): the kept roles and a hash of their text are recorded in the dataset's meta.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import torch

from sparsebench.data.base import Dataset
from sparsebench.registry import register

NOT_SPEAKERS = re.compile(
    r"^((ACT|SCENE|Scene|Act|Enter|Exit|Exeunt|Epilogue|Prologue|EPILOGUE|PROLOGUE)\b|[IVXLC]+\.?$)"
)
DIRECTION = re.compile(r"\[[^\]]*\]")
MAX_SPEAKER_WORDS = 4


@dataclass(frozen=True)
class LeafShakespeareParams:
    seq_len: int = 80
    stride: int = 16
    min_samples: int = 64
    train_fraction: float = 0.9
    plays: list[str] | None = None

    def __post_init__(self) -> None:
        if self.seq_len < 1 or self.stride < 1 or self.min_samples < 2:
            raise ValueError("seq_len and stride must be >= 1, min_samples >= 2")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction}")


def is_speaker(line: str) -> bool:
    text = line.strip()
    return (
        (text.endswith(".") or (text.isupper() and text[-1].isalpha()))
        and "," not in text
        and not text.startswith("[")
        and len(text.split()) <= MAX_SPEAKER_WORDS
        and NOT_SPEAKERS.match(text) is None
    )


def parse_roles(text: str) -> dict[str, list[str]]:
    """Role -> its speeches (stage directions removed), in order of appearance."""
    roles: dict[str, list[str]] = {}
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = block.strip("\n").split("\n")
        if len(lines) < 2 or not is_speaker(lines[0]):
            continue
        speech = "\n".join(
            DIRECTION.sub("", line).strip() for line in lines[1:] if DIRECTION.sub("", line).strip()
        )
        if speech:
            roles.setdefault(lines[0].strip().rstrip(".").upper(), []).append(speech)
    return roles


def role_texts(plays: dict[str, str]) -> dict[str, str]:
    """ "Title::ROLE" -> the role's speeches joined by newlines, for every play."""
    return {
        f"{title}::{role}": "\n".join(speeches)
        for title, text in plays.items()
        for role, speeches in parse_roles(text).items()
    }


def _samples(ids: torch.Tensor, seq_len: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.arange(0, max(len(ids) - seq_len, 0), stride)
    x = ids[starts[:, None] + torch.arange(seq_len)]
    return x, ids[starts + seq_len]


def from_roles(roles: dict[str, str], params: LeafShakespeareParams) -> Dataset:
    """The federated dataset: per-role samples, split per role, client ids in meta."""
    vocab = "".join(sorted(set("".join(roles.values()))))
    lookup = {ch: i for i, ch in enumerate(vocab)}
    parts: dict[str, list[torch.Tensor]] = {"xtr": [], "ytr": [], "xte": [], "yte": [], "c": []}
    kept = []
    for name in sorted(roles):
        ids = torch.tensor([lookup[ch] for ch in roles[name]], dtype=torch.int64)
        x, y = _samples(ids, params.seq_len, params.stride)
        if len(y) < params.min_samples:
            continue
        cut = int(params.train_fraction * len(y))
        parts["xtr"].append(x[:cut])
        parts["ytr"].append(y[:cut])
        parts["xte"].append(x[cut:])
        parts["yte"].append(y[cut:])
        parts["c"].append(torch.full((cut,), len(kept), dtype=torch.int64))
        kept.append(name)
    if not kept:
        raise ValueError(f"no role has >= {params.min_samples} samples; lower min_samples")
    digest = hashlib.sha256("\x00".join(roles[n] for n in kept).encode()).hexdigest()
    return Dataset(
        x_train=torch.cat(parts["xtr"]),
        y_train=torch.cat(parts["ytr"]),
        x_test=torch.cat(parts["xte"]),
        y_test=torch.cat(parts["yte"]),
        num_classes=len(vocab),
        meta={
            "layout": "tokens",
            "vocab": vocab,
            "clients": kept,
            "train_client": torch.cat(parts["c"]),
            "corpus_sha256": digest,
        },
    )


@register("dataset", "shakespeare-leaf", params=LeafShakespeareParams, produces="next-token")
def build(params: LeafShakespeareParams) -> Dataset:
    """Next-character prediction, one federated client per (play, speaking role)."""
    from sparsebench.data.shakespeare import play_texts, select

    return from_roles(role_texts(select(play_texts(), params.plays)), params)
