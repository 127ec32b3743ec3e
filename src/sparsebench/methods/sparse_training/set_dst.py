"""SET: Sparse Evolutionary Training (Mocanu et al., "Scalable training of artificial neural
networks with adaptive sparse connectivity inspired by network science", Nature Communications
2018, arXiv 1707.04780).

Update rule: start from a random mask at the layer densities of the allocation (ER/ERK or
uniform). Every `update_interval` steps until `end_step`, in every sparse layer drop the
k = floor(f * active) active weights of smallest magnitude and regrow k positions drawn uniformly
among those not kept; newly active weights start at zero (the grow_init of google-research/rigl's
SET) and a regrown just-dropped weight keeps its value, so each layer's active count never
changes. f is `drop_fraction`, by default cosine-decayed with the same flag as RigL (the
reference's `drop_fraction_anneal`, so that RigL against SET compares only the growth rule;
`drop_schedule: constant` is the paper's). The optimizer step is kept on update steps, as in the
reference's `SparseSETOptimizerBase.apply_gradients`. The first layer stays dense by default.

`end_step` is absolute; when left unset it is `end_fraction` of the `total_steps` the engine
sets on the method. The Sparse Architecture Divergence between the initial and final masks is
reported in the metrics.
"""

from __future__ import annotations

from sparsebench.methods.sparse_training.base import DstParams, DynamicSparse
from sparsebench.registry import register
from sparsebench.spec import Regime


@register(
    "sparse_training",
    "set",
    params=DstParams,
    regime=Regime("sgd", (), "Mocanu et al. 2018: SGD with momentum 0.9"),
)
class Set(DynamicSparse):
    """SET: magnitude drop, random regrow, constant per-layer density."""
