"""Federated simulation: all clients in one process, sequentially on one reused model or as one
vmap-batched computation (`batched`).

One loop per execution model, chosen by the strategy's declared `execution`:
- `synchronous`: server rounds; sample clients, train locally, attack (Byzantine clients),
  aggregate, evaluate (`synchronous.py`);
- `buffered`: FedBuff-style asynchronous rounds on a simulated clock (`asynchronous.py`);
- `fixed-interval`: FedFix-style merges at fixed simulated times (`asynchronous.py`);
- `gossip`: no server, every node trains and then gossips (`decentralized.py`);
- `sampled-gossip`: no server, MoDeST-style sampled rounds (`decentralized.py`).
Client training, uploads and byte counting (`clients.py`, with the run's training setup in
`local.py`, minibatch streams in `plans.py`, the two simulators in `batched.py` and
`sequential.py`) and the per-round record and result (`record.py`: an evaluation every
`budget.eval_every_rounds` rounds and after the last) are shared by all of them.
`throughput.py` times whole rounds against bare torch loops (`sparsebench throughput`).

Checkpoints (`resume.py`, also shared): with a path in `ctx.extra["checkpoint"]` and
budget.checkpoint_every > 0, every loop saves its whole state every that many budget *rounds*
(server rounds, server steps of the buffered loop, intervals of the fixed-interval one, gossip
or sampled rounds), resumes a killed run from a verified checkpoint of the same run, and
removes it when the run ends; a resumed run ends with the same result as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable

from sparsebench.engines.context import RunContext
from sparsebench.engines.federated.asynchronous import run_buffered, run_fixed_interval
from sparsebench.engines.federated.decentralized import run_gossip, run_sampled
from sparsebench.engines.federated.synchronous import run_synchronous
from sparsebench.spec import RunResult

LOOPS: dict[str, Callable[[RunContext], RunResult]] = {
    "synchronous": run_synchronous,
    "buffered": run_buffered,
    "fixed-interval": run_fixed_interval,
    "gossip": run_gossip,
    "sampled-gossip": run_sampled,
}


def run(ctx: RunContext) -> RunResult:
    """Run the strategy's execution model."""
    return LOOPS[ctx.method.execution](ctx)
