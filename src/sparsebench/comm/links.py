"""Network links from a hardware profile, and the simulated time to send bytes over them.

A message costs latency + 8 * bytes / bandwidth (the virtual-clock model of FedScale's
`client_metadata.py`). In a round, participants send and receive in parallel, each over its own
link, but everything passes through the server, whose `server_links` links (the profile's, 1 by
default) carry all uploads and then all downloads one after another: the round's bytes on the
critical path are the larger of the biggest participant's share and the round's total divided
over the server's links. `server_links: null` models a server that is never the bottleneck.
Sequential exchanges within a round (PowerSGD's two) each pay the latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Round(NamedTuple):
    """One round's traffic: the biggest participant's bytes (sent plus received), the number
    of sequential exchanges, and all participants' bytes through the server (None: unknown,
    only the critical path is charged)."""

    largest_bytes: int
    messages: int
    total_bytes: int | None = None

    def carried(self, server_links: int | None) -> float:
        """Bytes on the round's critical path when the server has `server_links` links."""
        if server_links is None or self.total_bytes is None:
            return float(self.largest_bytes)
        return max(float(self.largest_bytes), self.total_bytes / server_links)


@dataclass(frozen=True)
class Link:
    name: str
    bandwidth_gbps: float
    latency_ms: float

    def seconds(self, nbytes: float, messages: int = 1) -> float:
        return messages * self.latency_ms / 1e3 + 8.0 * nbytes / (self.bandwidth_gbps * 1e9)


def links_from_profile(profile: dict) -> list[Link]:
    return [
        Link(name, float(v["bandwidth_gbps"]), float(v["latency_ms"]))
        for name, v in sorted(profile.get("links", {}).items())
    ]


def server_links(profile: dict) -> int | None:
    """How many links the profile's server has (1 unless stated; None: unlimited)."""
    return profile.get("server_links", 1)


def comm_time(rounds: list[tuple], links: list[Link], server: int | None = 1) -> dict[str, float]:
    """Simulated seconds per link for a list of rounds (see `Round`) through a server with
    `server` links."""
    return {
        link.name: sum(
            link.seconds(round_.carried(server), round_.messages)
            for round_ in (Round(*entry) for entry in rounds)
        )
        for link in links
    }


def time_to_target(
    curves: dict[str, list],
    compute_s_at_eval: list[float],
    traffic: list[tuple],
    links: list[Link],
    target_acc: float,
    server: int | None = 1,
) -> dict[str, float | None]:
    """Per link, compute time plus simulated communication time up to the first evaluation
    whose test accuracy reaches `target_acc` (None where it never does). Steps (or a federated
    run's rounds) are 1-based and `traffic[s - 1]` is step s's round, as the engines record
    them."""
    points = curves["step"] if "step" in curves else curves["round"]
    for step, acc, compute_s in zip(points, curves["test_acc"], compute_s_at_eval, strict=True):
        if acc >= target_acc:
            comm = comm_time(traffic[:step], links, server)
            return {link.name: compute_s + comm[link.name] for link in links}
    return {link.name: None for link in links}
