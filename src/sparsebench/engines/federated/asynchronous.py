"""Asynchronous server loops on a simulated clock: buffered (FedBuff) and fixed-interval
(FedFix). A budget round is one server step (buffered) or one interval (fixed-interval), and
checkpoints count the same rounds; a checkpoint holds the clock, the clients in flight and the
updates buffered so far.

The clock counts local steps of a unit-speed client (a client takes its strategy-drawn speed
times the local steps); compute seconds are clock time times the measured seconds of one
client's local step on this machine (the mean over all local training so far), so
time-to-target is comparable with the round loops. Each logged step's traffic goes through the
server's links like a synchronous round's: the biggest client's upload plus one model down, and
all the step's uploads and downloads in total."""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from sparsebench.engines.context import RunContext
from sparsebench.engines.federated.clients import (
    byzantine_clients,
    load_vector,
    message_bytes,
    model_vector,
    partition_clients,
    train_round,
    upload,
    upload_round,
)
from sparsebench.engines.federated.record import flush, log_round, new_curves, run_result
from sparsebench.engines.federated.resume import Checkpoints, Progress
from sparsebench.seeds import derive
from sparsebench.spec import RunResult


@dataclass(order=True)
class _Job:
    finish: float
    order: int
    client: int = field(compare=False)
    version: int = field(compare=False)
    start: torch.Tensor = field(compare=False)
    trained: torch.Tensor = field(compare=False)
    loss: float = field(compare=False)


@dataclass(frozen=True)
class _Setup:
    """What both asynchronous loops draw from the run's seeds: the partition, the client
    sampler, the attack noise, the Byzantine set, the client speeds, and a model's bytes."""

    parts: list[torch.Tensor]
    sampler: torch.Generator
    attacker: torch.Generator
    byzantine: set[int]
    speeds: torch.Tensor
    model_bytes: int


@dataclass(kw_only=True)
class _Clocked(Progress):
    """Progress on the simulated clock: the measured local training so far (seconds, client
    local steps) that converts clock time into compute seconds, and the clock at the last
    logged step."""

    work_s: float = 0.0
    work_steps: int = 0
    logged_at: float = 0.0

    def log_compute(self, now: float) -> None:
        """Record the compute seconds from the last logged step to `now`."""
        unit = self.work_s / max(self.work_steps, 1)
        self.compute_s.append((now - self.logged_at) * unit)
        self.logged_at = now


def _train(
    ctx: RunContext, setup: _Setup, run: _Clocked, clients: list[int], rnd: int, start: torch.Tensor
) -> tuple[torch.Tensor, list[float]]:
    """`train_round` of `clients` from `start`, its measured time added to `run`'s work."""
    started = time.perf_counter()
    trained, losses = train_round(ctx, setup.parts, clients, rnd, start)
    run.work_s += time.perf_counter() - started
    run.work_steps += len(clients) * ctx.budget.local_steps
    return trained, losses


def async_setup(ctx: RunContext) -> _Setup:
    """The run's fixed setup, drawn before any checkpoint is read (a resume overwrites the
    generators' states)."""
    params, root = ctx.method.params, ctx.seeds["root"]
    return _Setup(
        partition_clients(ctx),
        torch.Generator().manual_seed(ctx.seeds["method"]),
        torch.Generator().manual_seed(derive(root, "attack")),
        byzantine_clients(params.clients, params.byzantine_fraction, derive(root, "byzantine")),
        ctx.method.client_speeds(derive(root, "client-speeds")),
        message_bytes({"model": model_vector(ctx.model)}),
    )


@dataclass(kw_only=True)
class _Buffered(_Clocked):
    """The buffered loop between server steps (`rounds_done` is the model version): the
    clients in flight (a heap by finish time), the buffer, and the clients that finished at
    `now`, restarted once every client finishing at `now` is buffered."""

    global_vec: torch.Tensor
    sampler: torch.Generator
    attacker: torch.Generator
    jobs: list[_Job] = field(default_factory=list)
    buffer: list[tuple[torch.Tensor, int, float]] = field(default_factory=list)
    now: float = 0.0
    idle: int = 0
    dispatches: int = 0
    order: int = 0
    up: int = 0
    down: int = 0
    largest_up: int = 0


def _dispatch(ctx: RunContext, setup: _Setup, run: _Buffered, count: int) -> None:
    """Start `count` idle clients, drawn by the sampler, on the current model at `run.now`."""
    busy = {job.client for job in run.jobs}
    idle = [c for c in range(ctx.method.params.clients) if c not in busy]
    draw = torch.randperm(len(idle), generator=run.sampler)[:count].tolist()
    chosen = [idle[i] for i in draw]
    run.dispatches += 1
    trained, losses = _train(ctx, setup, run, chosen, run.dispatches, run.global_vec)
    for client, vec, loss in zip(chosen, trained, losses, strict=True):
        finish = run.now + float(setup.speeds[client]) * ctx.budget.local_steps
        run.order += 1
        job = _Job(finish, run.order, client, run.rounds_done, run.global_vec, vec, loss)
        heapq.heappush(run.jobs, job)
    run.down += setup.model_bytes * len(chosen)


def _restart_idle(ctx: RunContext, setup: _Setup, run: _Buffered) -> None:
    """Once no client in flight finishes at `run.now`, start as many as finished then."""
    if run.jobs and run.jobs[0].finish == run.now:
        return
    _dispatch(ctx, setup, run, run.idle)
    run.idle = 0


def _fill_buffer(ctx: RunContext, setup: _Setup, run: _Buffered) -> bool:
    """Buffer finished updates in order of arrival, with their staleness, until the buffer is
    full; False when a client's loss stopped being finite."""
    size = ctx.method.params.buffer_size
    while len(run.buffer) < size:
        job = heapq.heappop(run.jobs)
        if not math.isfinite(job.loss):
            return False
        run.now, run.idle = job.finish, run.idle + 1
        byzantine = job.client in setup.byzantine
        msg = upload(ctx, job.client, job.start, job.trained, byzantine, run.attacker)
        sent = message_bytes(msg)
        run.up += sent
        run.largest_up = max(run.largest_up, sent)
        run.buffer.append((msg["delta"], run.rounds_done - job.version, job.loss))
        if len(run.buffer) < size:
            _restart_idle(ctx, setup, run)
    return True


def run_buffered(ctx: RunContext) -> RunResult:
    """Simulated-clock asynchronous rounds (FedBuff-style): `clients_per_round` clients in
    flight; finished updates are buffered with their staleness; the strategy steps once per full
    buffer. A budget round is one server step. Clients finishing at the same instant are all
    buffered before idle clients are started on the current model."""
    strategy, budget = ctx.method, ctx.budget
    setup = async_setup(ctx)
    run = _Buffered(
        curves={**new_curves(), "sim_time": []},
        global_vec=model_vector(ctx.model),
        sampler=setup.sampler,
        attacker=setup.attacker,
    )
    saves = Checkpoints(ctx)
    if not saves.resume(run):
        _dispatch(ctx, setup, run, strategy.params.clients_per_round)
    diverged = False
    steps = range(run.rounds_done + 1, budget.rounds + 1)
    for version in tqdm(steps, desc="server steps", mininterval=2.0, leave=False):
        if not _fill_buffer(ctx, setup, run):
            diverged = True
            break
        deltas, stale, losses = (list(t) for t in zip(*run.buffer, strict=True))
        run.global_vec = strategy.aggregate_buffer(run.global_vec, deltas, stale)
        run.rounds_done = version
        run.buffer.clear()
        if log_round(ctx, run, version, losses, run.up, run.down, run.global_vec):
            run.curves["sim_time"].append(run.now)
            run.log_compute(run.now)
        run.traffic.append((setup.model_bytes + run.largest_up, 2, run.up + run.down))
        run.up = run.down = run.largest_up = 0
        if version < budget.rounds:
            _restart_idle(ctx, setup, run)
        saves.reached(run)
    _flush(ctx, run, run.now)
    saves.finish()
    load_vector(ctx.model, run.global_vec)
    return run_result(ctx, setup.parts, run, diverged)


def _flush(ctx: RunContext, run: _Buffered | _FixedInterval, now: float) -> None:
    """Log the steps counted since the last logged one (a run that diverged in between)."""
    if flush(ctx, run, run.global_vec, timed=False):
        run.curves["sim_time"].append(now)
        run.log_compute(now)


@dataclass(kw_only=True)
class _FixedInterval(_Clocked):
    """The fixed-interval loop between merges: every active client's work in flight (finish
    time, the model it started from, its trained model, its loss) and the downlink bytes of
    the round under way."""

    global_vec: torch.Tensor
    attacker: torch.Generator
    jobs: dict[int, tuple[float, torch.Tensor, torch.Tensor, float]] = field(default_factory=dict)
    down: int = 0
    last_merge: float = 0.0


def _start(
    ctx: RunContext, setup: _Setup, run: _FixedInterval, clients: list[int], now: float, rnd: int
) -> None:
    """Clients `clients` start round `rnd`'s local work on the current model at `now`."""
    trained, losses = _train(ctx, setup, run, clients, rnd, run.global_vec)
    for client, vec, loss in zip(clients, trained, losses, strict=True):
        finish = now + float(setup.speeds[client]) * ctx.budget.local_steps
        run.jobs[client] = (finish, run.global_vec, vec, loss)


def _merge(
    ctx: RunContext, setup: _Setup, run: _FixedInterval, active: list[int], rnd: int
) -> bool:
    """Interval `rnd`: merge the updates of the clients that finished by its end and restart
    them on the new model (nothing happens, and nothing is sent, when none did); False when a
    loss stopped being finite."""
    strategy, budget = ctx.method, ctx.budget
    now = rnd * strategy.interval_length(budget.local_steps)
    done = [c for c in active if run.jobs[c][0] <= now * (1 + 1e-12)]
    if not done:
        run.traffic.append((0, 0, 0))
        return True
    losses = [run.jobs[c][3] for c in done]
    if not all(math.isfinite(v) for v in losses):
        return False
    starts, trained = [run.jobs[c][1] for c in done], [run.jobs[c][2] for c in done]
    msgs = upload_round(ctx, done, starts, trained, setup.byzantine, run.attacker)
    sent = [message_bytes(m) for m in msgs]
    up = sum(sent)
    deltas = [m["delta"] for m in msgs]
    run.global_vec = strategy.aggregate_interval(run.global_vec, deltas, done, budget.local_steps)
    sending = done if rnd < budget.rounds else []
    run.down += setup.model_bytes * len(sending)
    if log_round(ctx, run, rnd, losses, up, run.down, run.global_vec):
        run.curves["sim_time"].append(now)
        run.log_compute(now)
    run.last_merge = now
    run.traffic.append((setup.model_bytes + max(sent), 2, up + run.down))
    run.down = 0
    if sending:
        _start(ctx, setup, run, sending, now, rnd + 1)
    return True


def run_fixed_interval(ctx: RunContext) -> RunResult:
    """Simulated-clock FedFix rounds: a seeded set of `clients_per_round` clients works without
    pause; at every multiple of the strategy's interval the server merges the updates of the
    clients that finished since the last merge and sends them the new model, while the others
    keep training on the version they hold. A budget round is one interval; an interval in
    which nobody finished leaves the model as it is and is not logged."""
    strategy, params, budget = ctx.method, ctx.method.params, ctx.budget
    setup = async_setup(ctx)
    drawn = torch.randperm(params.clients, generator=setup.sampler)[: params.clients_per_round]
    active = sorted(int(c) for c in drawn)
    strategy.set_population(active, [len(setup.parts[c]) for c in active])
    run = _FixedInterval(
        curves={**new_curves(), "sim_time": []},
        global_vec=model_vector(ctx.model),
        attacker=setup.attacker,
    )
    saves = Checkpoints(ctx)
    if not saves.resume(run):
        _start(ctx, setup, run, active, 0.0, 1)
        run.down = setup.model_bytes * len(active)
    diverged = False
    intervals = range(run.rounds_done + 1, budget.rounds + 1)
    for rnd in tqdm(intervals, desc="intervals", mininterval=2.0, leave=False):
        if not _merge(ctx, setup, run, active, rnd):
            diverged = True
            break
        run.rounds_done = rnd
        saves.reached(run)
    _flush(ctx, run, run.last_merge)
    saves.finish()
    load_vector(ctx.model, run.global_vec)
    return run_result(ctx, setup.parts, run, diverged)
