"""The contract of a federated strategy: what a client downloads, how its local gradient is
corrected, what it uploads, and how the server merges the uploads.

The engine owns rounds, client sampling, local minibatch steps, Byzantine attacks and byte
counting; a strategy only maps vectors to vectors, so the same strategy runs in the sequential
and the batched (vmap) simulator and can be checked on toy objectives without a model.
Messages are dicts of flat fp32 tensors; the uplink "delta" entry is the client's model change
y_i - x, the quantity robust aggregators and Byzantine attacks act on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from sparsebench import checkpoint
from sparsebench.checks import check_density, check_range
from sparsebench.comm.aggregation import combine
from sparsebench.comm.compressors import QSGD, Compressor, Identity, RandK, ScaledSign, TopK
from sparsebench.comm.payload import Payload

if TYPE_CHECKING:
    import networkx as nx

Message = dict[str, torch.Tensor]
LocalCorrection = Callable[[torch.Tensor, slice], torch.Tensor | None]
"""A round's gradient correction: (w of the clients `clients[rows]` [n, d], rows) -> [n, d]."""
StepCorrection = Callable[[torch.Tensor], torch.Tensor | None]
"""The same for a fixed set of clients: w [n, d] -> [n, d] (None: no correction)."""


@dataclass(frozen=True)
class Uploads:
    """Clients uploading together after one round of local training: their ids, the start of
    each, what each trained to (a list, or one [C, d] tensor that then belongs to the call: its
    storage may hold the messages), and the local steps and rate they trained with."""

    clients: list[int]
    starts: list[torch.Tensor]
    trained: Sequence[torch.Tensor]
    steps: int
    lr: float

    def shared_start(self) -> torch.Tensor | None:
        """The start every client shares when `trained` is one [C, d] tensor (the batched
        uploads that strategies compute at once), else None."""
        first = self.starts[0]
        if isinstance(self.trained, torch.Tensor) and all(s is first for s in self.starts):
            return first
        return None


@dataclass(frozen=True)
class FederatedParams:
    """Shared by federated strategies: population, sample per round, partition, aggregation rule,
    the simulated Byzantine clients, and how clients are simulated (`vmap` batches a round's
    clients when the model allows it, else falls back to `sequential`; both give the same client
    models up to float rounding)."""

    clients: int = 100
    clients_per_round: int = 10
    partition: Literal["iid", "dirichlet", "shards", "natural"] = "dirichlet"
    alpha: float = 0.5
    classes_per_client: int = 2
    aggregator: Literal["mean", "median", "trimmed-mean", "krum", "flag"] = "mean"
    trim_fraction: float = 0.1
    flag_subspace_dim: int = 1
    flag_lambda: float = 0.0
    """The Flag Aggregator's subspace dimension and pairwise weight (comm/flag.py)."""
    byzantine_fraction: float = 0.0
    attack: Literal["sign-flip", "gaussian", "scaled", "alie", "ipm"] = "sign-flip"
    attack_scale: float = 10.0
    """Strength of sign-flip, gaussian and scaled."""
    ipm_epsilon: float = 0.1
    alie_z: float | None = None
    """None: ALIE's z_max for the round's clients and Byzantine count (the paper's)."""
    simulation: Literal["vmap", "sequential"] = "vmap"

    def __post_init__(self) -> None:
        check_range("clients_per_round", self.clients_per_round, 1, self.clients)
        check_range("alpha", self.alpha, 0.0, low_open=True)
        check_range("classes_per_client", self.classes_per_client, 1)
        check_range("trim_fraction", self.trim_fraction, 0.0, 0.5, high_open=True)
        check_range("flag_subspace_dim", self.flag_subspace_dim, 1, self.clients_per_round)
        check_range("flag_lambda", self.flag_lambda, 0.0)
        check_range("byzantine_fraction", self.byzantine_fraction, 0.0, 1.0, high_open=True)
        check_range("attack_scale", self.attack_scale, 0.0)
        check_range("ipm_epsilon", self.ipm_epsilon, 0.0, low_open=True)


class Strategy:
    """FedAvg-shaped defaults: download x, no gradient correction, upload y_i - x, and set
    x <- x + aggregate(deltas) with sample-size weights (exactly the weighted model average)."""

    execution: Literal["synchronous", "buffered", "fixed-interval", "gossip", "sampled-gossip"] = (
        "synchronous"
    )
    """Which engine loop runs the strategy (see sparsebench.engines.federated)."""
    merges_at_end = False
    """Gossip strategies only: replace the last round's gossip by one global `merge`."""
    sam_rho = 0.0
    corrects_gradient = False  # True where gradient_correction returns a tensor
    # Budget fields the update rule depends on (checked when a grid is loaded), and why.
    budget_requirements: dict[str, Any] = {}
    budget_reason = ""

    def __init__(self, params: FederatedParams, seed: int) -> None:
        self.params = params
        self.seed = seed

    def state_dict(self) -> dict[str, Any]:
        """Everything the strategy's future depends on (server moments, control variates,
        client states, generators), walked from its attributes by `checkpoint.capture`, so a
        resumed run continues exactly; override only for state the walker cannot take."""
        return checkpoint.capture(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        checkpoint.restore(self, state)

    def broadcast(self, global_vec: torch.Tensor) -> Message:
        """What every sampled client downloads this round."""
        return {"model": global_vec}

    def gradient_correction(
        self, clients: list[int], local: torch.Tensor, global_vec: torch.Tensor
    ) -> torch.Tensor | None:
        """A term added to the clients' minibatch gradients ([C, d] for `local` of [C, d]).
        None means plain local SGD; a strategy that returns a tensor sets `corrects_gradient`."""
        return None

    def local_correction(self, clients: list[int], start: torch.Tensor) -> LocalCorrection | None:
        """The correction of a round's local steps from `start` ([d], or [C, d] per client),
        called at every step with the current parameters of the clients `clients[rows]`: by
        default `gradient_correction` each time; None when the strategy does not correct."""
        if not self.corrects_gradient:
            return None

        def correction(w: torch.Tensor, rows: slice) -> torch.Tensor | None:
            starts = start if start.dim() == 1 else start[rows]
            return self.gradient_correction(clients[rows], w, starts)

        return correction

    def client_message(
        self, client: int, global_vec: torch.Tensor, local: torch.Tensor, steps: int, lr: float
    ) -> Message:
        """What client `client` uploads after `steps` local steps of rate `lr` ended at `local`."""
        return {"delta": local - global_vec}

    def client_messages(self, up: Uploads) -> list[Message]:
        """The messages of clients uploading together, in order: exactly `client_message` for
        each. Where `client_message` is this class's y_i - x and the clients share one start,
        it is one in-place subtraction over `up.trained`, whose rows the messages hold (and
        `combine_deltas` takes without stacking them)."""
        start = up.shared_start()
        if type(self).client_message is Strategy.client_message and start is not None:
            return [{"delta": d} for d in up.trained.sub_(start).unbind()]
        return [
            self.client_message(c, s, y, up.steps, up.lr)
            for c, s, y in zip(up.clients, up.starts, up.trained, strict=True)
        ]

    def weights(self, sizes: list[int]) -> torch.Tensor:
        """Aggregation weights for the mean: proportional to the clients' sample counts."""
        w = torch.tensor(sizes, dtype=torch.float32)
        return w / w.sum()

    def combine_deltas(self, messages: list[Message], sizes: list[int]) -> torch.Tensor:
        """The server's estimate of the mean update, through the configured (robust) rule."""
        deltas = stack_rows([m["delta"] for m in messages])
        return combine(
            deltas, self.weights(sizes), self.params.aggregator, self._robust_options(len(sizes))
        )

    def _robust_options(self, n: int) -> dict[str, float | int]:
        byzantine = int(self.params.byzantine_fraction * n)
        return {
            "trim_fraction": self.params.trim_fraction,
            "byzantine": byzantine,
            "subspace_dim": self.params.flag_subspace_dim,
            "lam": self.params.flag_lambda,
        }

    def aggregate(
        self, global_vec: torch.Tensor, messages: list[Message], sizes: list[int]
    ) -> torch.Tensor:
        """The next global parameter vector from the sampled clients' messages."""
        return global_vec + self.combine_deltas(messages, sizes)


@dataclass
class _RoundControls:
    """What `ControlVariateStrategy.local_correction` stacked for a round: its clients, the
    control objects they held then, c_i [C, d] and c - c_i [C, d]."""

    clients: list[int]
    held: list[torch.Tensor | None]
    controls: torch.Tensor
    fixed: torch.Tensor


def stacked(table: dict[int, torch.Tensor], keys: list[int], like: torch.Tensor) -> torch.Tensor:
    """`table`'s vectors for `keys`, stacked [n, d]; zero for a key it does not hold."""
    zero = torch.zeros_like(like)
    return torch.stack([table.get(k, zero) for k in keys])


def keep(table: dict[int, torch.Tensor], keys: list[int], rows: torch.Tensor) -> None:
    """Store each row of `rows` under its key, as its own copy (a view would keep the whole
    [n, d] tensor alive for as long as any one of its rows stays in the table)."""
    for key, row in zip(keys, rows, strict=True):
        table[key] = row.clone()


def stack_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack(rows); when they already are the rows of one contiguous [n, d] tensor, in
    order (batched uploads), that tensor itself, without copying it. Read-only use only."""
    base = rows[0]._base
    if base is not None and base.dim() == 2 and len(rows) == base.shape[0] and base.is_contiguous():
        start, step = base.storage_offset(), base.stride(0)
        if all(
            r._base is base and r.shape == base.shape[1:] and r.storage_offset() == start + i * step
            for i, r in enumerate(rows)
        ):
            return base
    return torch.stack(rows)


@dataclass(frozen=True)
class GossipParams(FederatedParams):
    """Shared by gossip strategies: the graph, its mixing weights, gossip steps per round and
    how the nodes start."""

    topology: Literal["ring", "torus", "random-regular"] = "ring"
    degree: int = 4
    weights: Literal["metropolis", "uniform"] = "metropolis"
    gossip_steps: int = 1
    init: Literal["shared", "independent"] = "shared"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("gossip_steps", self.gossip_steps, 1)
        if not 1 <= self.degree < self.clients or (self.clients * self.degree) % 2:
            raise ValueError(
                f"degree must be in [1, clients) with clients * degree even, got {self.degree}"
            )


def topology_graph(kind: str, nodes: int, degree: int, seed: int) -> nx.Graph:
    """The communication graph: a cycle, a wrap-around grid as square as `nodes` allows, or a
    seeded random `degree`-regular graph. (networkx is imported here, not at module level, so
    loading the registry stays fast.)"""
    import networkx as nx

    if kind == "ring":
        return nx.cycle_graph(nodes)
    if kind == "torus":
        rows = max(r for r in range(1, math.isqrt(nodes) + 1) if nodes % r == 0)
        grid = nx.grid_2d_graph(rows, nodes // rows, periodic=True)
        return nx.convert_node_labels_to_integers(nx.Graph(grid), ordering="sorted")
    return nx.random_regular_graph(degree, nodes, seed=seed)


def mixing_matrix(graph: nx.Graph, weights: str) -> torch.Tensor:
    """Symmetric doubly stochastic W on `graph` (Metropolis-Hastings or uniform)."""
    n = graph.number_of_nodes()
    deg = dict(graph.degree())
    if weights == "uniform" and len(set(deg.values())) != 1:
        raise ValueError("uniform gossip weights need a regular graph; use metropolis")
    w = torch.zeros(n, n, dtype=torch.float64)
    for i, j in graph.edges():
        if i == j:
            continue
        value = 1.0 / (1 + (deg[i] if weights == "uniform" else max(deg[i], deg[j])))
        w[i, j] = w[j, i] = value
    w += torch.diag(1.0 - w.sum(1))
    return w


class GossipStrategy(Strategy):
    """Decentralized local SGD with gossip averaging on a fixed graph (all nodes every round):
    D-PSGD's rule (methods/federated/dpsgd.py), which its variants refine through `mix`."""

    execution = "gossip"

    def __init__(self, params: GossipParams, seed: int) -> None:
        super().__init__(params, seed)
        self.graph = topology_graph(params.topology, params.clients, params.degree, seed)
        self.w = mixing_matrix(self.graph, params.weights)

    def state_dict(self) -> dict[str, Any]:
        """The state without the graph, which the constructor rebuilds from the params and
        seed (and the walker cannot take)."""
        return checkpoint.capture(self, skip=frozenset({"graph"}))

    def gossip(self, models: torch.Tensor, layout: list[int]) -> torch.Tensor:
        """`gossip_steps` rounds of neighbour averaging, X <- W X (in float64, then back).
        `layout` (the layers' sizes in the flat vector) is for strategies that work per layer."""
        x = models.double()
        for _ in range(self.params.gossip_steps):
            x = self.mix(x, layout)
        return x.to(models.dtype)

    def mix(self, models: torch.Tensor, layout: list[int]) -> torch.Tensor:
        """One gossip step."""
        return self.w @ models

    def messages_per_node(self) -> list[int]:
        """Model copies each node sends (= receives) per round: degree times gossip steps."""
        return [d * self.params.gossip_steps for _, d in sorted(self.graph.degree())]


@dataclass(frozen=True)
class ScaffoldParams(FederatedParams):
    server_lr: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("server_lr", self.server_lr, 0.0, low_open=True)


@dataclass(frozen=True)
class CompressedControlParams(FederatedParams):
    """Shared by SCALLION and SCAFCOM: server step size, compressor and its settings."""

    server_lr: float = 1.0
    compressor: str = "identity"
    density: float = 0.1
    qsgd_levels: int = 4
    qsgd_bucket: int = 512

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("server_lr", self.server_lr, 0.0, low_open=True)
        check_density(self.density)
        check_range("qsgd_levels", self.qsgd_levels, 1)
        check_range("qsgd_bucket", self.qsgd_bucket, 1)
        if self.aggregator != "mean":
            raise ValueError(
                f"aggregator must be 'mean' (compressed controls), got {self.aggregator}"
            )
        if self.byzantine_fraction != 0.0:
            raise ValueError(f"byzantine_fraction must be 0, got {self.byzantine_fraction}")


def make_compressor(p: CompressedControlParams, seed: int) -> Compressor:
    """The uplink compressor named by the params (rand-k and QSGD draw from `seed`)."""
    if p.compressor == "randk":
        return RandK(p.density, seed)
    if p.compressor == "qsgd":
        return QSGD(p.qsgd_levels, p.qsgd_bucket, seed)
    if p.compressor == "topk":
        return TopK(p.density)
    if p.compressor == "sign":
        return ScaledSign()
    return Identity()


class ControlVariateStrategy(Strategy):
    """SCAFFOLD's rule (methods/federated/scaffold.py): local steps corrected by c - c_i; server
    and client control variates, option II. The compressed variants refine its messages."""

    corrects_gradient = True
    budget_requirements = {"optimizer": "sgd", "momentum": 0.0}
    budget_reason = "option II reads the mean local gradient as (x - y) / (K lr)"

    def __init__(self, params: ScaffoldParams | CompressedControlParams, seed: int) -> None:
        super().__init__(params, seed)
        self.c: torch.Tensor | None = None
        self.client_c: dict[int, torch.Tensor] = {}
        self._round: _RoundControls | None = None

    def state_dict(self) -> dict[str, Any]:
        """The state without the round's stacked controls (scratch of one round)."""
        return checkpoint.capture(self, skip=frozenset({"_round"}))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        checkpoint.restore(self, state)
        self._round = None

    def _control(self, global_vec: torch.Tensor) -> torch.Tensor:
        if self.c is None:
            self.c = torch.zeros_like(global_vec)
        return self.c

    def _client_control(self, client: int, global_vec: torch.Tensor) -> torch.Tensor:
        return self.client_c.get(client, torch.zeros_like(global_vec))

    def _client_controls(self, clients: list[int], global_vec: torch.Tensor) -> torch.Tensor:
        """The clients' controls c_i stacked [C, d] (zero for a client not seen yet)."""
        return stacked(self.client_c, clients, global_vec)

    def broadcast(self, global_vec: torch.Tensor) -> Message:
        return {"model": global_vec, "control": self._control(global_vec)}

    def gradient_correction(
        self, clients: list[int], local: torch.Tensor, global_vec: torch.Tensor
    ) -> torch.Tensor:
        controls = self._client_controls(clients, global_vec)
        return torch.sub(self._control(global_vec), controls, out=controls)

    def local_correction(self, clients: list[int], start: torch.Tensor) -> LocalCorrection:
        """c - c_i does not change during local training: computed once for the round, and
        kept with the stacked c_i for the round's uploads."""
        controls = self._client_controls(clients, start)
        fixed = self._control(start) - controls
        held = [self.client_c.get(i) for i in clients]
        self._round = _RoundControls(list(clients), held, controls, fixed)
        return lambda w, rows: fixed[rows]

    def _round_controls(
        self, clients: list[int], global_vec: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The clients' stacked c_i and c - c_i from this round's `local_correction` when it
        stacked them for these very clients and none of their controls has changed since
        (taken: they are the caller's to reuse); else c_i stacked now, and None."""
        kept, self._round = self._round, None
        if kept is not None and kept.clients == clients:
            held = zip(clients, kept.held, strict=True)
            if all(self.client_c.get(i) is t for i, t in held):
                return kept.controls, kept.fixed
        return self._client_controls(clients, global_vec), None

    def client_message(
        self, client: int, global_vec: torch.Tensor, local: torch.Tensor, steps: int, lr: float
    ) -> Message:
        c, c_i = self._control(global_vec), self._client_control(client, global_vec)
        c_new = c_i - c + (global_vec - local) / (steps * lr)
        self.client_c[client] = c_new
        return {"delta": local - global_vec, "control": c_new - c_i}

    def client_messages(self, up: Uploads) -> list[Message]:
        """`client_message` for every client at once (the same values, computed on [C, d])
        where this class's rule applies and the clients share one start."""
        global_vec = up.shared_start()
        if type(self).client_message is not ControlVariateStrategy.client_message:
            global_vec = None
        if global_vec is None:
            return super().client_messages(up)
        clients, steps, lr = up.clients, up.steps, up.lr
        c_old, fixed = self._round_controls(clients, global_vec)
        deltas = up.trained.sub_(global_vec)
        # IEEE rounding is symmetric in sign: c_i - c is exactly -(c - c_i), and (x - y) / (K lr)
        # exactly (y - x) / -(K lr); addcdiv with value 1 adds that quotient as `+` would.
        c_new = fixed.neg_() if fixed is not None else c_old - self._control(global_vec)
        c_new.addcdiv_(deltas, torch.tensor(-(steps * lr), dtype=deltas.dtype))
        keep(self.client_c, clients, c_new)
        controls = torch.sub(c_new, c_old, out=c_old)
        return [
            {"delta": d, "control": dc}
            for d, dc in zip(deltas.unbind(), controls.unbind(), strict=True)
        ]

    def weights(self, sizes: list[int]) -> torch.Tensor:
        return torch.full((len(sizes),), 1.0 / len(sizes))

    def aggregate(
        self, global_vec: torch.Tensor, messages: list[Message], sizes: list[int]
    ) -> torch.Tensor:
        dc = stack_rows([m["control"] for m in messages]).mean(0)
        self.c = self._control(global_vec) + len(messages) / self.params.clients * dc
        return global_vec + self.params.server_lr * self.combine_deltas(messages, sizes)


class SingleUplinkScaffold(ControlVariateStrategy):
    """SCAFFOLD local steps; each client uploads one compressed innovation d_i, adds it to its
    control c_i; the server steps x by -server_lr K lr (c + mean d) and c by sum(d) / N."""

    def __init__(self, params: CompressedControlParams, seed: int) -> None:
        super().__init__(params, seed)
        # One codec for all clients: rand-k's call counter advances per client, so every client
        # draws its own mask (independent compressors, as the analysis assumes).
        self.codec = make_compressor(params, seed)
        self.pending: list[Payload] = []  # metadata every party knows (e.g. rand-k's round)
        self.decoded: list[tuple[dict[str, torch.Tensor], torch.Tensor]] = []
        self.local_scale = 1.0

    def innovation(
        self, client: int, global_vec: torch.Tensor, local: torch.Tensor, steps: int, lr: float
    ) -> torch.Tensor:
        """The vector the client compresses and uploads."""
        raise NotImplementedError

    def innovations(self, up: Uploads, global_vec: torch.Tensor) -> torch.Tensor:
        """`innovation` of every client [C, d], in order, from their shared start `global_vec`
        (subclasses compute it at once, and may use `up.trained`'s storage)."""
        pairs = zip(up.clients, up.trained, strict=True)
        return torch.stack([self.innovation(c, global_vec, y, up.steps, up.lr) for c, y in pairs])

    def client_message(
        self, client: int, global_vec: torch.Tensor, local: torch.Tensor, steps: int, lr: float
    ) -> Message:
        innovation = self.innovation(client, global_vec, local, steps, lr)
        c_i = self._client_control(client, global_vec)
        return self._send(client, innovation, c_i, steps * lr)

    def client_messages(self, up: Uploads) -> list[Message]:
        """`client_message` for every client: the innovations computed at once, then each
        compressed in turn (the codec's draws advance per client, in the same order)."""
        global_vec = up.shared_start()
        if global_vec is None:
            return super().client_messages(up)
        innovations = self.innovations(up, global_vec)
        self._round = None
        return [
            self._send(client, row, self._client_control(client, global_vec), up.steps * up.lr)
            for client, row in zip(up.clients, innovations, strict=True)
        ]

    def _send(self, client: int, innovation: torch.Tensor, c_i: torch.Tensor, scale: float):
        """Compress the client's innovation, move its control by what it decodes to, and keep
        that decoding for the server (the same function of the same wire tensors)."""
        payload = self.codec.compress(innovation)
        self.local_scale = scale
        decoded = self.codec.decompress(payload)
        self.pending.append(Payload({}, payload.shape, payload.meta))
        self.decoded.append((payload.tensors, decoded))
        self.client_c[client] = c_i + decoded
        return dict(payload.tensors)

    def decode(self, messages: list[Message]) -> torch.Tensor:
        """The server's copies of the clients' innovations [C, d], from the wire tensors: a
        message carrying the very tensors a client sent decodes to what the client decoded
        them to (decompression is a function of the payload); any other is decompressed."""
        n = len(messages)
        shells, self.pending = self.pending[:n], self.pending[n:]
        sent, self.decoded = self.decoded[:n], self.decoded[n:]
        rows = []
        for m, shell, (tensors, decoded) in zip(messages, shells, sent, strict=True):
            if m.keys() == tensors.keys() and all(m[k] is t for k, t in tensors.items()):
                rows.append(decoded)
            else:
                rows.append(self.codec.decompress(Payload(dict(m), shell.shape, shell.meta)))
        return torch.stack(rows)

    def aggregate(
        self, global_vec: torch.Tensor, messages: list[Message], sizes: list[int]
    ) -> torch.Tensor:
        d = self.decode(messages)
        c = self._control(global_vec)
        step = self.params.server_lr * self.local_scale * (c + d.mean(0))
        self.c = c + d.sum(0) / self.params.clients
        return global_vec - step
