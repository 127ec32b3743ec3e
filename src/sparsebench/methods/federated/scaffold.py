"""SCAFFOLD (Karimireddy, Kale, Mohri, Reddi, Stich, Suresh, "SCAFFOLD: Stochastic Controlled
Averaging for Federated Learning", ICML 2020, arXiv 1910.06378), option II control variates.

Update rule: the server holds x and a control variate c; client i holds c_i (zero at start, kept
in memory by the simulator). A sampled client downloads (x, c), starts from y = x and takes K
local steps y <- y - lr (g_i(y) - c_i + c). It then sets c_i+ = c_i - c + (x - y) / (K lr) and
uploads (dy, dc) = (y - x, c_i+ - c_i). The server sets x <- x + lr_g * mean(dy) and
c <- c + (|S| / N) * mean(dc), both plain means over the sampled set S of the N clients (the
paper's rule; Flower's niid_bench weights by sample counts instead). Twice FedAvg's bytes each
way. Option II assumes plain SGD local steps (optimizer: sgd, momentum 0): with momentum or Adam
the (x - y)/(K lr) estimate of the mean gradient is off.
"""

from __future__ import annotations

from sparsebench.methods.federated.base import ControlVariateStrategy, ScaffoldParams
from sparsebench.registry import register


@register("federated", "scaffold", params=ScaffoldParams)
class Scaffold(ControlVariateStrategy):
    """Local steps corrected by c - c_i; server and client control variates, option II."""
