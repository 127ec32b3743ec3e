"""Rand-k with independent coordinates per worker, whose indices never travel.

Worker w draws its k = round(density * d) coordinates at round t from the stream
`derive(seed, "randk", w, t)`: the run's seed is shared by every party before training and w
and t are known to all, so the server (and every other worker) regenerates the indices and only
the k fp32 values go on the wire (as GRACE's rand-k regenerates its indices from a seed instead
of sending them). The round number rides in `meta`, which is not sent.

Averaged over W workers the k-sparse vectors fill the union of the W masks, so the way back is
priced by `downlink_nbytes`: the cheaper of forwarding the other workers' value payloads
(all-gather) and sending the mean's values on the union, which every party can also regenerate
(so no indices there either; the union has at most d coordinates, so this never exceeds the
dense fp32 mean).
"""

from __future__ import annotations

import torch

from sparsebench.comm.compressors import RandK
from sparsebench.comm.payload import Payload
from sparsebench.seeds import derive


class WorkerRandK(RandK):
    """One worker's rand-k: fp32 values at its own seeded coordinates; `scaled` multiplies
    them by d/k on decoding (the unbiased estimator), otherwise they decode as they are (the
    contractive form error feedback needs)."""

    def __init__(self, density: float, seed: int, worker: int, scaled: bool) -> None:
        super().__init__(density, seed)
        self.worker = worker
        self.scaled = scaled
        self.biased = not scaled

    def stream(self, round_: int) -> int:
        """This worker's own stream for round `round_`, regenerable by every party."""
        return derive(self.seed, "randk", self.worker, round_)


def union(codecs: list[WorkerRandK], payloads: list[Payload]) -> torch.Tensor:
    """The sorted coordinates some worker sent this round, regenerated from the seeds."""
    d = payloads[0].shape.numel()
    masks = [c.indices(d, int(p.meta["round"])) for c, p in zip(codecs, payloads, strict=True)]
    return torch.unique(torch.cat(masks))


def downlink_nbytes(
    mean: torch.Tensor, codecs: list[WorkerRandK], payloads: list[Payload]
) -> list[int]:
    """Bytes each worker receives to rebuild `mean`: the other workers' payloads, or the
    mean's fp32 values on the union of the masks (in sorted order, no indices), if smaller."""
    on_union = Payload({"values": mean.flatten()[union(codecs, payloads)]}, mean.shape).nbytes
    total = sum(p.nbytes for p in payloads)
    return [min(total - p.nbytes, on_union) for p in payloads]
