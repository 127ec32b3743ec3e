"""Hugging Face causal language models (OPT, LLaMA and other nn.Linear families) as a model.

Only usable where `transformers` is installed (it is not a dependency of sparsebench); the
import happens when the model is built, so the registry loads without it. The wrapper returns
logits shaped (B, V, T), like the `gpt` model, so the trainer, `evaluate` and the pruning engine
work unchanged, and the post-training methods see the attention and MLP projections (nn.Linear)
through `prunable_weights`.

The output layer is kept out of pruning the same way as in `gpt`: the model's output embedding
(`lm_head`, usually tied to the token embedding) is replaced by a head that computes
F.linear(x, weight) on the very same Parameter, so it is no nn.Linear and stays dense; the
token and position embeddings are nn.Embedding and are never pruned. Families whose projections
are not nn.Linear (GPT-2's Conv1D) would expose nothing to prune and are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsebench.registry import register
from sparsebench.sparsity.masked import prunable_weights


@dataclass(frozen=True)
class HfParams:
    name: str = "facebook/opt-125m"
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class OutputHead(nn.Module):
    """x -> x W^T (+ b) on the wrapped model's own output weight; not an nn.Linear."""

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None) -> None:
        super().__init__()
        self.weight = weight
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class HfCausalLm(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        head = model.get_output_embeddings()
        model.set_output_embeddings(OutputHead(head.weight, getattr(head, "bias", None)))
        self.hf = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=idx).logits.transpose(1, 2)


def wrap(model: nn.Module) -> HfCausalLm:
    """Wrap a transformers causal LM; refuse one with no nn.Linear projection to prune."""
    wrapped = HfCausalLm(model)
    if not prunable_weights(wrapped):
        raise ValueError(f"{type(model).__name__} has no nn.Linear layers for sparsebench to prune")
    return wrapped


@register("model", "hf-causal-lm", params=HfParams, accepts=("lm",))
def build(params: HfParams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A pretrained Hugging Face causal LM (needs `transformers`), logits (B, V, T)."""
    try:
        from transformers import AutoModelForCausalLM
    except ImportError as err:
        raise ImportError("the hf-causal-lm model needs `pip install transformers`") from err
    model = AutoModelForCausalLM.from_pretrained(
        params.name, revision=params.revision, torch_dtype=getattr(torch, params.dtype)
    )
    if model.config.vocab_size < num_classes:
        raise ValueError(
            f"{params.name} has a vocabulary of {model.config.vocab_size} tokens, the dataset "
            f"needs {num_classes}"
        )
    return wrap(model)
