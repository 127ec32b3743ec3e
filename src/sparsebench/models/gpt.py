"""A small character-level GPT in the shape of nanoGPT (karpathy/nanoGPT `model.py`).

Pre-LayerNorm decoder blocks: x + attn(ln_1(x)), then x + mlp(ln_2(x)); causal self-attention
through F.scaled_dot_product_attention; a 4x GELU MLP; learned token and position embeddings.

Why the pruning code never touches the embeddings or the output layer: the shared sparsity code
prunes every nn.Linear / nn.Conv weight (`prunable_weights`). The output projection is tied to
the token embedding (as in nanoGPT and GPT-2) and computed with F.linear on `wte.weight`, so
neither is a Linear module; only the attention (c_attn, c_proj) and MLP (c_fc, c_proj)
projections are prunable, the usual exclusion of LLM pruners (embeddings and lm_head dense).

Logits come out as (B, V, T), class dimension 1, so F.cross_entropy(model(x), y) with targets
(B, T) is the next-token loss without any reshaping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsebench.registry import register


@dataclass(frozen=True)
class GptParams:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    predict: Literal["sequence", "last"] = "sequence"
    """`sequence`: logits for every position (language modelling); `last`: only the next
    character after the window, LEAF's Shakespeare task."""

    def __post_init__(self) -> None:
        if self.n_layer < 1 or self.n_head < 1 or self.n_embd < 1:
            raise ValueError("n_layer, n_head and n_embd must be >= 1")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd must be divisible by n_head, got n_embd={self.n_embd}, "
                f"n_head={self.n_head}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(b, t, c)))


class Mlp(nn.Module):
    def __init__(self, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = Mlp(n_embd, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, params: GptParams) -> None:
        super().__init__()
        self.block_size = block_size
        self.predict = params.predict
        self.wte = nn.Embedding(vocab_size, params.n_embd)
        self.wpe = nn.Embedding(block_size, params.n_embd)
        self.drop = nn.Dropout(params.dropout)
        self.blocks = nn.ModuleList(
            Block(params.n_embd, params.n_head, params.dropout) for _ in range(params.n_layer)
        )
        self.ln_f = nn.LayerNorm(params.n_embd)
        self._init_weights(params.n_layer)

    def _init_weights(self, n_layer: int) -> None:
        """nanoGPT's init: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer)."""
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))
            elif p.dim() >= 2:
                nn.init.normal_(p, 0.0, 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {self.block_size}")
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        if self.predict == "last":
            return F.linear(self.ln_f(x[:, -1]), self.wte.weight)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return logits.transpose(1, 2)


def accepted_inputs(params: GptParams) -> tuple[str, ...]:
    """`sequence` logits need a target at every position (language modelling), `last` logits
    one target per window (LEAF's next character); either mismatch fails in the loss."""
    return ("lm",) if params.predict == "sequence" else ("next-token",)


@register("model", "gpt", params=GptParams, accepts=accepted_inputs)
def build(params: GptParams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """nanoGPT-style decoder: input_shape=(block_size,), num_classes = vocabulary size."""
    if len(input_shape) != 1:
        raise ValueError(f"gpt needs token windows shaped (T,), got input shape {input_shape}")
    return GPT(num_classes, input_shape[0], params)
