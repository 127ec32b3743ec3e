"""Sparse Model Soups: Zimmer, Spiegel & Pokutta, "Sparse Model Soups: A Recipe for Improved
Pruning via Model Averaging", ICLR 2024, arXiv 2306.16788 (reference code: ZIB-IOL/SMS
`strategies/strategies.py`, `strategies/ensembleStrategies.py`, `runners/baseRunner.py`,
`main.py`).

Update rule: IMP in `rounds` phases, but each phase retrains `ingredients` copies of the same
pruned model instead of one. Phase t: prune the current model by |w| to density^(t / rounds)
(the same share p of the remaining weights each phase), then retrain m copies from that same
start under the same mask; they differ only in the batch order (a seed per copy,
`ensemble_by=seed`) or in the weight decay (`ensemble_by=weight_decay`, one value per copy from
`weight_decays`). The soup is the uniform average of the copies' parameters (the paper's
`UniformEnsembling`); because the copies share the mask, the soup has exactly that mask. The
next phase prunes the soup. No rewinding (weights are kept between phases). BatchNorm
statistics, if any, are recomputed on training batches after averaging (the paper's
recalibration).

Defaults follow the reference:
- `scope=global`: one |w| threshold over all layers (`main.py` `pruning_selector='global'`;
  `strategies/strategies.py` `Dense.pruning_step`, `prune.global_unstructured` unless
  'uniform'); `scope=layer` prunes every layer to the same density.
- `retrain_schedule=llr`: every retraining (each ingredient of each phase) restarts the learning
  rate: from 0 up to the run's peak lr (budget.lr; the reference's largest pretraining lr) along
  a half cosine over the first `retrain_warmup` = 10% of its steps, then linearly down to 0 at
  the end of the phase (`main.py` `retrain_schedule='LLR'`; `runners/baseRunner.py`
  `define_retrain_schedule`: 10% warmup by `CosineAnnealingLR` from 0, then `LinearLR` with
  end_factor 0). `retrain_schedule=budget` keeps the run's own schedule.
- `validation_fraction=0.1`: a seeded 10% of the training samples is held out as a validation
  set, and the ingredients are retrained on the other 90% only (`runners/baseRunner.py`
  `get_dataloaders`, a 90/10 `random_split` of the training data). The best ingredient is the
  one of highest validation accuracy (as `GreedySoup` in `strategies/ensembleStrategies.py`
  ranks candidates by validation accuracy); test data is never used for a choice.

Reported beside the usual metrics, for the last phase: the soup's validation and test accuracy
(and perplexity for language models) against the best ingredient's (chosen on validation) and
the mean ingredient's test accuracy. Each phase costs m retrainings: the retraining budget
(finetune_fraction of the steps) is split over the phases, and every ingredient gets the full
phase length, so SMS uses m times IMP's retraining steps.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
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
from sparsebench.seeds import derive

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)

Split = tuple[torch.Tensor, torch.Tensor]
"""Inputs and targets of a held-out split."""


@dataclass(frozen=True)
class SmsParams(PruningParams):
    rounds: int = 3
    ingredients: int = 3
    ensemble_by: Literal["seed", "weight_decay"] = "seed"
    weight_decays: list[float] | None = None
    scope: Literal["layer", "global"] = "global"
    retrain_schedule: Literal["llr", "budget"] = "llr"
    retrain_warmup: float = 0.1
    validation_fraction: float = 0.1
    finetune_fraction: float = 0.6
    recalibration_batches: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("rounds", self.rounds, 1)
        check_range("ingredients", self.ingredients, 1)
        check_range("retrain_warmup", self.retrain_warmup, 0.0, 1.0, high_open=True)
        check_range(
            "validation_fraction", self.validation_fraction, 0.0, 1.0, low_open=True, high_open=True
        )
        check_range("recalibration_batches", self.recalibration_batches, 0)
        if self.ensemble_by == "weight_decay" and (
            self.weight_decays is None or len(self.weight_decays) != self.ingredients
        ):
            raise ValueError(
                "weight_decays must list one value per ingredient when ensemble_by=weight_decay"
            )


def llr_factor(step: int, total: int, warmup: float) -> float:
    """The reference's LLR retraining schedule, as a factor of the peak lr, at 1-based `step` of
    `total`: a half-cosine ramp from 0 to 1 over the first int(warmup * total) steps, then a
    straight line that reaches 0 at the end of the phase. The reference steps its scheduler
    after each optimizer step, so step k uses the value after k - 1 scheduler steps."""
    done = step - 1
    ramp = int(warmup * total)
    if done < ramp:
        return 0.5 * (1.0 - math.cos(math.pi * done / ramp))
    return (total - done) / (total - ramp)


def split_validation(data: Dataset, fraction: float, seed: int) -> tuple[Dataset, Split]:
    """`data` without a seeded random `fraction` of its training samples, and those samples:
    the reference's 90/10 `random_split` of the training set. The kept samples stay in order."""
    n = len(data.y_train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int((1.0 - fraction) * n)
    if not 0 < cut < n:
        raise ValueError(f"validation_fraction={fraction} leaves no training or validation data")
    keep, held = order[:cut].sort().values, order[cut:]
    fit = dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])
    return fit, (data.x_train[held], data.y_train[held])


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
    seed_batchable = False
    """Its own rounds call the retrainer one at a time, which the engine cannot batch."""

    params: SmsParams

    def _ingredient_kwargs(self, phase: int, i: int) -> dict[str, Any]:
        """What tells ingredient i of `phase` apart: its batch order or its weight decay."""
        p = self.params
        if p.ensemble_by == "weight_decay":
            return {"seed_offset": phase * p.ingredients, "weight_decay": p.weight_decays[i]}
        return {"seed_offset": phase * p.ingredients + i}

    def _lr_factor(self) -> Callable[[int, int], float] | None:
        """The retraining lr schedule handed to `retrain` (None: the run's own schedule)."""
        if self.params.retrain_schedule == "budget":
            return None
        return partial(llr_factor, warmup=self.params.retrain_warmup)

    def prune_iteratively(
        self, model: nn.Module, data: Dataset, retrain: Retrain, steps: int
    ) -> dict[str, torch.Tensor]:
        p = self.params
        fit, val = split_validation(data, p.validation_fraction, derive(self.seed, "validation"))
        masks = dense_masks(model)
        for phase, (density, n) in enumerate(
            zip(round_densities(p.density, p.rounds), split_steps(steps, p.rounds), strict=True)
        ):
            masks = prune_survivors(model, masks, density, p.scope)
            states = self._ingredients(model, masks, fit, retrain, phase, n)
            model.load_state_dict(uniform_soup(states))
            recalibrate_batchnorm(model, fit.x_train, p.recalibration_batches, 100)
        self.report = {"metrics": soup_metrics(model, states, val, data)}
        return masks

    def _ingredients(
        self,
        model: nn.Module,
        masks: dict[str, torch.Tensor],
        fit: Dataset,
        retrain: Retrain,
        phase: int,
        steps: int,
    ) -> list[dict[str, torch.Tensor]]:
        """The states of the phase's copies, each retrained on `fit` from the model's state."""
        start = copy.deepcopy(model.state_dict())
        states = []
        for i in range(self.params.ingredients):
            model.load_state_dict(start)
            kwargs = self._ingredient_kwargs(phase, i)
            retrain(model, masks, steps, data=fit, lr_factor=self._lr_factor(), **kwargs)
            states.append(copy.deepcopy(model.state_dict()))
        return states


@torch.no_grad()
def soup_metrics(
    soup: nn.Module, states: list[dict[str, torch.Tensor]], val: Split, data: Dataset
) -> dict[str, float]:
    """The soup against the ingredients `states`. The best ingredient is the one of highest
    validation accuracy (the first on ties); test results are only reported, never chosen on."""
    probe = copy.deepcopy(soup)
    ingredients = []
    for state in states:
        probe.load_state_dict(state)
        ingredients.append((evaluate(probe, *val), evaluate(probe, data.x_test, data.y_test)))
    best_val, best_test = max(ingredients, key=lambda pair: pair[0]["acc"])
    soup_val, soup_test = evaluate(soup, *val), evaluate(soup, data.x_test, data.y_test)
    out = {
        "soup_acc": soup_test["acc"],
        "soup_val_acc": soup_val["acc"],
        "best_ingredient_acc": best_test["acc"],
        "best_ingredient_val_acc": best_val["acc"],
        "mean_ingredient_acc": sum(test["acc"] for _, test in ingredients) / len(ingredients),
    }
    if data.language_model:
        out["soup_ppl"] = soup_test["ppl"]
        out["best_ingredient_ppl"] = best_test["ppl"]
    return out
