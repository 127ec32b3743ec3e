"""How fast the federated simulator runs whole rounds, next to the bare loops it must match and an
actor-per-client design, all measured in one process on one workload.

The default workload is the usual in-process FL simulation benchmark: FedAvg on 1000 IID clients
of 32 MNIST-1D samples each, the MLP 40-100-100-10, one local SGD step of batch 32 at lr 0.05,
one torch thread, 10 and 100 clients per round. Every mode runs FedAvg rounds from the same seeds
(the same sampled clients and minibatches, so the same trained models), each round starting from
the model the previous one made:
- `bare-vmap`: `bare_vmap_round`, the forty-line torch.func loop (functional_call and vmap of
  grad over stacked parameters, plain SGD, the mean of the clients' models);
- `bare-sequential`: `bare_sequential_round`, one reused module, in-place SGD, the mean;
- `vmap` and `sequential`: the engine's whole round, `synchronous.server_round` (sampling,
  local training, uploads and any compression, bytes, aggregation), with either simulation;
- `actor`: the design of Flower's simulation engine on Ray: long-lived worker processes (one per
  thread given), and per client a task that ships the global parameters to a worker, builds the
  client's model there (Flower's `client_fn`), trains the same local steps with the same seed and
  ships the parameters back; the server averages them. The workers hold the dataset; they start
  before the clock does.
Evaluation is not part of a round (a run evaluates every `eval_every_rounds`). The modes take
turns, in a shuffled order each turn, of `warmup` untimed and then `BLOCK` timed consecutive
rounds (a run trains round after round), so a slow moment of the machine hits all of them, and
each reports its median wall-clock round (and, in-process, the median CPU time of this
thread). `strategies` times every variant of `Workload.variants` (by default `all`: every
synchronous family, compressed or not, and the robust rules) on the engine's vmap round the
same way, as a ratio to FedAvg's round.
"""

from __future__ import annotations

import math
import multiprocessing
import random
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from sparsebench import provenance, registry
from sparsebench.data.base import Dataset, build_dataset
from sparsebench.engines.context import RunContext
from sparsebench.engines.federated.clients import model_vector, partition_clients, train_one
from sparsebench.engines.federated.plans import client_seed, draws
from sparsebench.engines.federated.synchronous import new_server, population, server_round
from sparsebench.models import build_model
from sparsebench.seeds import all_seeds
from sparsebench.spec import Budget, Component, RunSpec

MODES = ("bare-vmap", "bare-sequential", "vmap", "sequential", "actor")
MODELS = ("mlp",)
FEDAVG = Component("fedavg")
VARIANTS: tuple[Component, ...] = (
    FEDAVG,
    Component("fedprox", {"mu": 0.01}),
    Component("fedadam"),
    Component("scaffold"),
    Component("scallion", {"compressor": "identity"}),
    Component("scallion", {"compressor": "randk"}),
    Component("scallion", {"compressor": "qsgd"}),
    Component("scafcom", {"compressor": "identity"}),
    Component("scafcom", {"compressor": "topk"}),
    Component("scafcom", {"compressor": "sign"}),
    Component("fedavg", {"aggregator": "median", "byzantine_fraction": 0.1}),
    Component("fedavg", {"aggregator": "trimmed-mean", "byzantine_fraction": 0.1}),
    Component("fedavg", {"aggregator": "krum", "byzantine_fraction": 0.1}),
)
"""What `strategy: all` times: every synchronous family, with and without compression, and the
robust rules under 10% sign-flipping Byzantine clients."""


@dataclass(frozen=True)
class Workload:
    """What one benchmark run measures (the defaults: the common FL simulation workload)."""

    model: str = "mlp"
    widths: tuple[int, ...] = (100, 100)
    clients: int = 1000
    samples_per_client: int = 32
    local_steps: int = 1
    batch: int = 32
    lr: float = 0.05
    strategy: str = "all"
    """The strategies compared with FedAvg's round: one synchronous strategy, or all."""
    per_round: tuple[int, ...] = (10, 100)
    rounds: int = 30
    warmup: int = 3
    """Untimed rounds before every block of timed ones."""
    threads: int = 1

    def check(self) -> None:
        """Raise ValueError naming the first bad option and what it accepts."""
        registry.load_all()
        strategies = synchronous_strategies()
        if self.model not in MODELS:
            raise ValueError(f"--model must be one of {', '.join(MODELS)}; got {self.model!r}")
        if not self.widths or len(set(self.widths)) != 1 or self.widths[0] < 1:
            raise ValueError(f"--widths: the mlp takes equal positive widths; got {self.widths}")
        if self.strategy != "all" and self.strategy not in strategies:
            choices = ", ".join([*strategies, "all"])
            raise ValueError(f"--strategy must be one of {choices}; got {self.strategy!r}")
        for name in ("clients", "samples_per_client", "local_steps", "batch", "rounds", "threads"):
            if getattr(self, name) < 1:
                option = name.replace("_", "-")
                raise ValueError(f"--{option} must be >= 1; got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0; got {self.warmup}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0; got {self.lr}")
        if not self.per_round or not all(1 <= k <= self.clients for k in self.per_round):
            raise ValueError(f"--per-round must be in [1, --clients]; got {self.per_round}")

    def component(self) -> Component:
        return Component(self.model, {"hidden": self.widths[0], "depth": len(self.widths)})

    def budget(self) -> Budget:
        steps, batch, lr = self.local_steps, self.batch, self.lr
        return Budget(local_steps=steps, batch_size=batch, optimizer="sgd", lr=lr, momentum=0.0)

    def variants(self) -> tuple[Component, ...]:
        if self.strategy == "all":
            return VARIANTS
        return (FEDAVG,) if self.strategy == FEDAVG.name else (FEDAVG, Component(self.strategy))


def synchronous_strategies() -> list[str]:
    """The registered federated strategies that run in server rounds."""
    names = registry.names("federated")
    return [n for n in names if registry.get("federated", n).obj.execution == "synchronous"]


def workload_data(work: Workload) -> Dataset:
    """MNIST-1D with exactly `clients * samples_per_client` training samples."""
    need = work.clients * work.samples_per_client
    total = math.ceil(need / 0.8 / 10) * 10 + 10  # mnist1d: 10 classes, an 80% train split
    data = build_dataset(Component("mnist1d", {"num_samples": total}))
    return replace(data, x_train=data.x_train[:need], y_train=data.y_train[:need])


def context(
    data: Dataset, work: Workload, per_round: int, strategy: Component, simulation: str
) -> RunContext:
    """A run's context for the workload: seed 0, IID clients, a freshly built model."""
    opts = {"clients": work.clients, "clients_per_round": per_round, "partition": "iid"}
    opts = {**opts, **strategy.params, "simulation": simulation}
    params = registry.make_params("federated", strategy.name, opts)
    method = registry.get("federated", strategy.name).obj(params, 0)
    spec = RunSpec(
        "federated", Component(strategy.name, opts), Component("mnist1d"), work.component()
    )
    torch.manual_seed(0)
    model = build_model(work.component(), data.input_shape, data.num_classes)
    return RunContext(spec, data, model, method, work.budget(), all_seeds(0))


class RoundSampler:
    """The engine's client sampling and minibatch streams, for the bare loops and the actors."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.generator = torch.Generator().manual_seed(ctx.seeds["method"])
        self.rnd = 0

    def next_round(self) -> list[int]:
        p = self.ctx.method.params
        self.rnd += 1
        return torch.randperm(p.clients, generator=self.generator)[: p.clients_per_round].tolist()

    def minibatches(self, client: int, n: int) -> torch.Tensor:
        """Client `client`'s minibatches this round [steps, B], indices into its n samples."""
        gen = torch.Generator().manual_seed(client_seed(self.ctx.seeds["root"], self.rnd, client))
        return draws(n, min(self.ctx.budget.batch_size, n), self.ctx.budget.local_steps, gen)


def bare_vmap_gradient(model: torch.nn.Module) -> Callable:
    """vmap(grad) of the model's loss through `functional_call`: the bare loop's one transform."""

    def loss(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, p, (xb,)), yb)

    return vmap(grad(loss))


def bare_vmap_round(
    gradient: Callable,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    sampler: RoundSampler,
    lr: float,
) -> dict[str, torch.Tensor]:
    """One FedAvg round the torch.func way: the sampled clients' data [C, n, ...] from the
    stacked shards x [N, n, ...], y [N, n], their parameters stacked from `params`, the
    per-client gradients from `gradient` (`bare_vmap_gradient`), SGD, and the mean model."""
    sampled = sampler.next_round()
    xs, ys = x[sampled], y[sampled]
    plans = torch.stack([sampler.minibatches(c, x.shape[1]) for c in sampled])  # [C, steps, B]
    w = {k: v.expand(len(sampled), *v.shape).clone() for k, v in params.items()}
    rows = torch.arange(len(sampled))[:, None]
    for step in range(plans.shape[1]):
        idx = plans[:, step]
        g = gradient(w, xs[rows, idx], ys[rows, idx])
        w = {k: w[k] - lr * g[k] for k in w}
    return {k: v.mean(0) for k, v in w.items()}


def bare_sequential_round(
    model: torch.nn.Module,
    params: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    sampler: RoundSampler,
    lr: float,
) -> list[torch.Tensor]:
    """One FedAvg round on one reused module: per sampled client, copy the global parameters
    in, take the local SGD steps in place (autograd.grad, p -= lr g), add the result to the
    sum; return the mean of the models."""
    sampled = sampler.next_round()
    weights = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for client in sampled:
        xc, yc = x[client], y[client]
        with torch.no_grad():
            for w, p in zip(weights, params, strict=True):
                w.copy_(p)
        for idx in sampler.minibatches(client, len(yc)):
            loss = F.cross_entropy(model(xc[idx]), yc[idx])
            grads = torch.autograd.grad(loss, weights)
            with torch.no_grad():
                for w, g in zip(weights, grads, strict=True):
                    w.sub_(lr * g)
        with torch.no_grad():
            for t, w in zip(total, weights, strict=True):
                t.add_(w)
    return [t / len(sampled) for t in total]


_actor: dict[str, Any] = {}


def _actor_start(threads: int, data: Dataset, work: Workload, per_round: int) -> None:
    """A worker's one-time setup: its thread count, the registry, the data and the strategy."""
    torch.set_num_threads(threads)
    registry.load_all()
    _actor["data"], _actor["work"] = data, work
    _actor["strategy"] = context(data, work, per_round, FEDAVG, "sequential").method


def _actor_train(client: int, global_vec: torch.Tensor, idx: torch.Tensor, seed: int):
    """One client task: a fresh model from the shipped parameters, local steps, parameters back."""
    data, work = _actor["data"], _actor["work"]
    model = build_model(work.component(), data.input_shape, data.num_classes)
    x, y, gen = data.x_train[idx], data.y_train[idx], torch.Generator().manual_seed(seed)
    train_one(model, _actor["strategy"], client, global_vec, x, y, work.budget(), gen)
    return model_vector(model)


def actor_pool(data: Dataset, work: Workload, per_round: int) -> ProcessPoolExecutor:
    """`work.threads` spawned workers, each holding the data (as Ray actors would)."""
    return ProcessPoolExecutor(
        work.threads,
        multiprocessing.get_context("spawn"),
        initializer=_actor_start,
        initargs=(1, data, work, per_round),
    )


def actor_round(
    pool: ProcessPoolExecutor,
    ctx: RunContext,
    parts: list[torch.Tensor],
    sampled: list[int],
    rnd: int,
    start: torch.Tensor,
) -> torch.Tensor:
    """The sampled clients' trained vectors [C, d], one task per client."""
    root = ctx.seeds["root"]
    jobs = [
        pool.submit(_actor_train, c, start, parts[c], client_seed(root, rnd, c)) for c in sampled
    ]
    return torch.stack([job.result() for job in jobs])


class Repeat:
    """A round function called round after round, each round starting from the state the
    previous one returned (its global model), as a training loop would."""

    def __init__(self, step: Callable[[Any], Any], state: Any) -> None:
        self.step, self.state = step, state

    def __call__(self) -> None:
        self.state = self.step(self.state)


def engine_rounds(ctx: RunContext) -> Repeat:
    """The engine's whole round (`server_round`) on `ctx`, round after round."""
    pop, server = population(ctx), new_server(ctx)

    def step(rnd: int) -> int:
        server_round(ctx, pop, server, rnd + 1)
        return rnd + 1

    return Repeat(step, 0)


def mode_rounds(data: Dataset, work: Workload, k: int, pool) -> dict[str, Repeat]:
    """Every mode's FedAvg rounds at `k` clients per round, each on its own context."""
    bare = context(data, work, k, FEDAVG, "vmap")
    parts = torch.stack(partition_clients(bare))
    x, y = data.x_train[parts], data.y_train[parts]
    gradient, vmap_sampler = bare_vmap_gradient(bare.model), RoundSampler(bare)
    seq = context(data, work, k, FEDAVG, "sequential")
    seq_sampler = RoundSampler(seq)
    actor_ctx = context(data, work, k, FEDAVG, "sequential")
    actor_sampler, actor_parts = RoundSampler(actor_ctx), partition_clients(actor_ctx)

    def bare_vmap(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return bare_vmap_round(gradient, p, x, y, vmap_sampler, work.lr)

    def bare_sequential(p: list[torch.Tensor]) -> list[torch.Tensor]:
        return bare_sequential_round(seq.model, p, x, y, seq_sampler, work.lr)

    def actor(global_vec: torch.Tensor) -> torch.Tensor:
        sampled = actor_sampler.next_round()
        trained = actor_round(pool, actor_ctx, actor_parts, sampled, actor_sampler.rnd, global_vec)
        return trained.mean(0)

    return {
        "bare-vmap": Repeat(
            bare_vmap, {n: p.detach().clone() for n, p in bare.model.named_parameters()}
        ),
        "bare-sequential": Repeat(
            bare_sequential, [p.detach().clone() for p in seq.model.parameters()]
        ),
        "vmap": engine_rounds(context(data, work, k, FEDAVG, "vmap")),
        "sequential": engine_rounds(context(data, work, k, FEDAVG, "sequential")),
        "actor": Repeat(actor, model_vector(actor_ctx.model)),
    }


BLOCK = 15
"""Timed rounds a callable runs back to back in one turn, after `warmup` untimed ones: a run
trains round after round, and so must the measurement (the first rounds after another
workload find the memory allocator and the caches as that one left them)."""


def median_rounds(calls: dict[str, Repeat], work: Workload) -> dict[str, dict[str, float]]:
    """Each callable's median (and fastest) wall-clock and median thread CPU seconds per call,
    over `rounds` timed calls: turns in which every callable, in a shuffled order, runs
    `warmup` untimed calls and then up to `BLOCK` timed ones back to back (so a slow moment of
    the machine hits all of them, and each is timed in its own steady state)."""
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    order, shuffle = list(calls), random.Random(0).shuffle
    for turn in range(0, work.rounds, BLOCK):
        shuffle(order)
        for name in order:
            for _ in range(work.warmup):
                calls[name]()
            for _ in range(min(BLOCK, work.rounds - turn)):
                started, cpu_started = time.perf_counter(), time.thread_time()
                calls[name]()
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.thread_time() - cpu_started)
    return {
        name: {
            "round_s": statistics.median(wall[name]),
            "best_round_s": min(wall[name]),
            "cpu_s": statistics.median(cpu[name]),
        }
        for name in calls
    }


def measure(
    work: Workload = Workload(),
    data: Dataset | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every mode and strategy variant at every clients-per-round: the benchmark's document."""
    work.check()
    torch.set_num_threads(work.threads)
    if data is None:
        progress(f"building MNIST-1D: {work.clients} clients x {work.samples_per_client} samples")
        data = workload_data(work)
    rows, ratios, strategies = [], [], []
    for k in work.per_round:
        progress(f"{k} clients per round: {', '.join(MODES)}")
        with actor_pool(data, work, k) as pool:
            timed = median_rounds(mode_rounds(data, work, k, pool), work)
        timed["actor"]["cpu_s"] = None  # its work runs in the worker processes
        for mode, t in timed.items():
            rows.append(
                {"clients_per_round": k, "mode": mode, **t, "clients_per_s": k / t["round_s"]}
            )
        ratios.append(_ratios(k, timed))
        progress("  " + ", ".join(f"{m} {k / t['round_s']:.0f}/s" for m, t in timed.items()))
        strategies += _strategy_rows(data, work, k, progress)
    return _document(work, rows, ratios, strategies)


def _strategy_rows(data: Dataset, work: Workload, k: int, progress) -> list[dict[str, Any]]:
    """Every variant's vmap round at `k` clients per round and its ratio to FedAvg's; a
    variant whose rule cannot run at `k` (Krum needs n - f - 2 >= 1) is listed as skipped."""
    variants = work.variants()
    progress(f"{k} clients per round: {len(variants)} strategies on the vmap round")
    calls, out = {}, []
    for variant in variants:
        rounds = engine_rounds(context(data, work, k, variant, "vmap"))
        try:
            rounds()
        except ValueError as err:
            out.append({"clients_per_round": k, "strategy": variant.label(), "skipped": str(err)})
            progress(f"  {variant.label()} skipped: {err}")
            continue
        calls[variant.label()] = rounds
    times = median_rounds(calls, work)
    fedavg = times[FEDAVG.label()]
    for label, t in times.items():
        ratio = t["round_s"] / fedavg["round_s"]
        row = {"clients_per_round": k, "strategy": label, **t, "ratio_to_fedavg": ratio}
        out.append({**row, "cpu_ratio_to_fedavg": t["cpu_s"] / fedavg["cpu_s"]})
        progress(f"  {label} {1e3 * t['round_s']:.1f} ms (x{ratio:.2f} FedAvg)")
    return out


def _ratios(k: int, t: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Speed ratios at `k` clients per round: the engine's rounds per second over a reference's
    (>= 1: at least as fast), from the wall-clock medians and from the CPU-time medians."""
    pairs = {
        "vmap_over_bare_vmap": ("vmap", "bare-vmap"),
        "sequential_over_bare_sequential": ("sequential", "bare-sequential"),
    }
    out: dict[str, Any] = {"clients_per_round": k}
    for name, (mine, ref) in pairs.items():
        out[name] = t[ref]["round_s"] / t[mine]["round_s"]
        out[f"cpu_{name}"] = t[ref]["cpu_s"] / t[mine]["cpu_s"]
    out["vmap_over_actor"] = t["actor"]["round_s"] / t["vmap"]["round_s"]
    return out


def _document(work: Workload, rows, ratios, strategies) -> dict[str, Any]:
    return {
        "benchmark": "federated_throughput",
        "work": {
            **asdict(work),
            "rounds_timed": work.rounds,
            "dataset": "mnist1d",
            "model": work.component().label(),
            "budget": asdict(work.budget()),
        },
        "threads": work.threads,
        "rows": rows,
        "ratios": ratios,
        "strategies": strategies,
        "environment": {"cpu": provenance.cpu_model(), "versions": provenance.versions()},
    }


def summary(doc: dict[str, Any]) -> str:
    """The document as text: clients/s per mode, the engine/bare ratios, strategy ratios."""
    lines = [
        f"{r['clients_per_round']:4d} per round  {r['mode']:<16}{r['clients_per_s']:9.1f} clients/s"
        for r in doc["rows"]
    ]
    for r in doc["ratios"]:
        lines.append(
            f"{r['clients_per_round']:4d} per round  engine/bare: vmap "
            f"{r['vmap_over_bare_vmap']:.2f}, sequential {r['sequential_over_bare_sequential']:.2f}"
        )
    lines += [
        f"{s['clients_per_round']:4d} per round  {s['strategy']:<56}"
        + (
            f"{1e3 * s['round_s']:8.2f} ms  x{s['ratio_to_fedavg']:.2f} FedAvg"
            if "round_s" in s
            else "skipped"
        )
        for s in doc["strategies"]
    ]
    return "\n".join(lines)
