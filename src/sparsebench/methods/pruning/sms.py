"""Sparse Model Soups: Zimmer, Spiegel & Pokutta, "Sparse Model Soups: A Recipe for Improved
Pruning via Model Averaging", ICLR 2024, arXiv 2306.16788 (reference code: ZIB-IOL/SMS
`strategies/strategies.py`, `strategies/ensembleStrategies.py`).

Update rule: IMP in `rounds` phases, but each phase retrains `ingredients` copies of the same
pruned model instead of one. Phase t: prune the current model by |w| to density^(t / rounds)
(the same share p of the remaining weights each phase, per layer or global), then retrain m
copies from that same start under the same mask; they differ only in the batch order (a seed per
copy, `ensemble_by=seed`) or in the weight decay (`ensemble_by=weight_decay`, one value per copy
from `weight_decays`). The soup is the uniform average of the copies' parameters (the paper's
`UniformEnsembling`); because the copies share the mask, the soup has exactly that mask. The
next phase prunes the soup. No rewinding (weights are kept between phases, as in the paper's
retraining schedules). BatchNorm statistics, if any, are recomputed on training batches after
averaging (the paper's recalibration).

Reported beside the usual metrics: the soup's test accuracy (and perplexity for language
models) against the best and the mean ingredient of the last phase. Each phase costs m
retrainings: the retraining budget (finetune_fraction of the steps) is split over the phases,
and every ingredient gets the full phase length, so SMS uses m times IMP's retraining steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn

from sparsebench.checks import check_range
from sparsebench.data.base import Dataset
from sparsebench.methods.pruning.base import (
    PruningMethod,
    PruningParams,
    Retrain,
    dense_masks,
    prune_survivors,
    round_densities,
    split_steps,
)
from sparsebench.metrics import evaluate
from sparsebench.registry import register

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class SmsParams(PruningParams):
    rounds: int = 3
    ingredients: int = 3
    ensemble_by: Literal["seed", "weight_decay"] = "seed"
    weight_decays: list[float] | None = None
    scope: Literal["layer", "global"] = "layer"
    finetune_fraction: float = 0.6
    recalibration_batches: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("rounds", self.rounds, 1)
        check_range("ingredients", self.ingredients, 1)
        if self.ensemble_by == "weight_decay" and (
            self.weight_decays is None or len(self.weight_decays) != self.ingredients
        ):
            raise ValueError(
                "weight_decays must list one value per ingredient when ensemble_by=weight_decay"
            )


def uniform_soup(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of floating-point entries; integer buffers (counters) are taken from the first."""
    soup = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            soup[key] = torch.stack([s[key] for s in states]).mean(0)
        else:
            soup[key] = first.clone()
    return soup


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batches: int, size: int) -> None:
    """Recompute BatchNorm running statistics of an averaged model on training inputs."""
    norms = [m for m in model.modules() if isinstance(m, BN_TYPES)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    was_training = model.training
    model.train()
    for start in range(0, min(len(x), batches * size), size):
        model(x[start : start + size])
    model.train(was_training)


@register("pruning", "sms", params=SmsParams)
class Sms(PruningMethod):
    """IMP whose every phase retrains several copies under one mask and averages them."""

    iterative = True

    params: SmsParams

    def __init__(self, params: SmsParams, seed: int) -> None:
        super().__init__(params, seed)

    def _ingredient_kwargs(self, phase: int, i: int) -> dict[str, Any]:
        p = self.params
        if p.ensemble_by == "weight_decay":
            return {"seed_offset": phase * p.ingredients, "weight_decay": p.weight_decays[i]}
        return {"seed_offset": phase * p.ingredients + i}

    def prune_iteratively(
        self, model: nn.Module, data: Dataset, retrain: Retrain, steps: int
    ) -> dict[str, torch.Tensor]:
        p = self.params
        masks = dense_masks(model)
        for phase, (density, n) in enumerate(
            zip(round_densities(p.density, p.rounds), split_steps(steps, p.rounds), strict=True)
        ):
            masks = prune_survivors(model, masks, density, p.scope)
            start = copy.deepcopy(model.state_dict())
            states, scores = [], []
            for i in range(p.ingredients):
                model.load_state_dict(start)
                retrain(model, masks, n, **self._ingredient_kwargs(phase, i))
                states.append(copy.deepcopy(model.state_dict()))
                scores.append(evaluate(model, data.x_test, data.y_test))
            model.load_state_dict(uniform_soup(states))
            recalibrate_batchnorm(model, data.x_train, p.recalibration_batches, 100)
        self.report = {"metrics": self._soup_metrics(model, data, scores)}
        return masks

    @staticmethod
    def _soup_metrics(model: nn.Module, data: Dataset, scores: list[dict]) -> dict[str, float]:
        soup = evaluate(model, data.x_test, data.y_test)
        out = {
            "soup_acc": soup["acc"],
            "best_ingredient_acc": max(s["acc"] for s in scores),
            "mean_ingredient_acc": sum(s["acc"] for s in scores) / len(scores),
        }
        if data.language_model:
            out["soup_ppl"] = soup["ppl"]
            out["best_ingredient_ppl"] = min(s["ppl"] for s in scores)
        return out
