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
    aggregator: Literal["mean", "median", "trimmed-mean", "krum"] = "mean"
    trim_fraction: float = 0.1
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

    def client_message(
        self, client: int, global_vec: torch.Tensor, local: torch.Tensor, steps: int, lr: float
    ) -> Message:
        """What client `client` uploads after `steps` local steps of rate `lr` ended at `local`."""
        return {"delta": local - global_vec}

    def weights(self, sizes: list[int]) -> torch.Tensor:
        """Aggregation weights for the mean: proportional to the clients' sample counts."""
        w = torch.tensor(sizes, dtype=torch.float32)
        return w / w.sum()

    def combine_deltas(self, messages: list[Message], sizes: list[int]) -> torch.Tensor:
        """The server's estimate of the mean update, through the configured (robust) rule."""
        deltas = torch.stack([m["delta"] for m in messages])
        return combine(
            deltas, self.weights(sizes), self.params.aggregator, self._robust_options(len(sizes))
        )

    def _robust_options(self, n: int) -> dict[str, float | int]:
        byzantine = int(self.params.byzantine_fraction * n)
        return {"trim_fraction": self.params.trim_fraction, "byzantine": byzantine}

    def aggregate(
        self, global_vec: torch.Tensor, messages: list[Message], sizes: list[int]
    ) -> torch.Tensor:
        """The next global parameter vector from the sampled clients' messages."""
        return global_vec + self.combine_deltas(messages, sizes)


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

    def _control(self, global_vec: torch.Tensor) -> torch.Tensor:
        if self.c is None:
            self.c = torch.zeros_like(global_vec)
        return self.c

    def _client_control(self, client: int, global_vec: torch.Tensor) -> torch.Tensor:
        return self.client_c.get(client, torch.zeros_like(global_vec))

    def broadcast(self, global_vec: torch.Tensor) -> Message:
        return {"model": global_vec, "control": self._control(global_vec)}

    def gradient_correction(
        self, clients: list[int], local: torch.Tensor, global_vec: torch.Tensor
    ) -> torch.Tensor:
        c = self._control(global_vec)
        return torch.stack([c - self._client_control(i, global_vec) for i in clients])

    def client_message(
        self, client: int, global_vec: torch.Tensor, local: torch.Tensor, steps: int, lr: float
    ) -> Message:
        c, c_i = self._control(global_vec), self._client_control(client, global_vec)
        c_new = c_i - c + (global_vec - local) / (steps * lr)
        self.client_c[client] = c_new
        return {"delta": local - global_vec, "control": c_new - c_i}

    def weights(self, sizes: list[int]) -> torch.Tensor:
        return torch.full((len(sizes),), 1.0 / len(sizes))

    def aggregate(
        self, global_vec: torch.Tensor, messages: list[Message], sizes: list[int]
    ) -> torch.Tensor:
        dc = torch.stack([m["control"] for m in messages]).mean(0)
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
        self.local_scale = 1.0

    def innovation(
        self, client: int, global_vec: torch.Tensor, local: torch.Tensor, steps: int, lr: float
    ) -> torch.Tensor:
        """The vector the client compresses and uploads."""
        raise NotImplementedError

    def client_message(
        self, client: int, global_vec: torch.Tensor, local: torch.Tensor, steps: int, lr: float
    ) -> Message:
        payload = self.codec.compress(self.innovation(client, global_vec, local, steps, lr))
        self.local_scale = steps * lr
        self.pending.append(Payload({}, payload.shape, payload.meta))
        c_i = self._client_control(client, global_vec)
        self.client_c[client] = c_i + self.codec.decompress(payload)
        return dict(payload.tensors)

    def decode(self, messages: list[Message]) -> torch.Tensor:
        """The server's copies of the clients' innovations [C, d], from the wire tensors."""
        shells, self.pending = self.pending[: len(messages)], self.pending[len(messages) :]
        return torch.stack(
            [
                self.codec.decompress(Payload(dict(m), shell.shape, shell.meta))
                for m, shell in zip(messages, shells, strict=True)
            ]
        )

    def aggregate(
        self, global_vec: torch.Tensor, messages: list[Message], sizes: list[int]
    ) -> torch.Tensor:
        d = self.decode(messages)
        c = self._control(global_vec)
        step = self.params.server_lr * self.local_scale * (c + d.mean(0))
        self.c = c + d.sum(0) / self.params.clients
        return global_vec - step
