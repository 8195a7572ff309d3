"""Prometheus metrics of one daemon, in its own registry.

Goals: what an operator alerts on is a metric: documents submitted, received and delivered or
failed per recipient, delivery latency (queued to receipt), document bytes, status reports,
deliveries waiting per state, peers known and connected, the age of the peer list and of
revocation lists, API requests. Counters count since the process started (Prometheus
handles restarts); gauges are read from the node when scraped. Non-goals: per-document
labels (unbounded cardinality).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Gauges", "Metrics"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0,
    86400.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Gauges:
    """Values read when scraped (see :class:`Metrics`)."""

    pending_by_state: dict[str, int]
    peers_known: int
    peers_connected: int
    directory_age: float
    revocation_list_age: float
    node_counters: dict[str, int]
    inbox_unacked: int


class _GaugeCollector(Collector):
    def __init__(self, read: Callable[[], Gauges]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauges = self._read()
        pending = GaugeMetricFamily(
            "p2pdoc_deliveries_pending",
            "Deliveries (document x recipient) not yet delivered or failed, by state",
            labels=["state"],
        )
        for state, count in sorted(gauges.pending_by_state.items()):
            pending.add_metric([state], count)
        yield pending
        yield GaugeMetricFamily(
            "p2pdoc_peers_known", "Peers in the directory", value=gauges.peers_known
        )
        yield GaugeMetricFamily(
            "p2pdoc_peers_connected",
            "Peers with a live admitted session",
            value=gauges.peers_connected,
        )
        yield GaugeMetricFamily(
            "p2pdoc_directory_age_seconds",
            "Age of the peer list (the configuration file)",
            value=gauges.directory_age,
        )
        yield GaugeMetricFamily(
            "p2pdoc_revocation_list_age_seconds",
            "Age of the oldest cached revocation list (0 if none)",
            value=gauges.revocation_list_age,
        )
        yield GaugeMetricFamily(
            "p2pdoc_inbox_unacknowledged",
            "Received documents the document software has not acknowledged",
            value=gauges.inbox_unacked,
        )
        node = GaugeMetricFamily(
            "p2pdoc_node_counter",
            "The node's own counters since start (sessions, refused peers, attempts...)",
            labels=["name"],
        )
        for name, value in sorted(gauges.node_counters.items()):
            node.add_metric([name], value)
        yield node


class Metrics:
    """The daemon's metrics; :meth:`render` gives the Prometheus text format.

    Args:
        read_gauges: called at each scrape for the values read from the node.
    """

    def __init__(self, read_gauges: Callable[[], Gauges]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        self.submitted = Counter(
            "p2pdoc_documents_submitted", "Documents submitted for sending", registry=registry
        )
        self.received = Counter(
            "p2pdoc_documents_received", "Documents received and stored", registry=registry
        )
        self.deliveries = Counter(
            "p2pdoc_deliveries",
            "Deliveries (document x recipient) finished, by final state",
            ["state"],
            registry=registry,
        )
        self.latency = Histogram(
            "p2pdoc_delivery_latency_seconds",
            "Seconds from queueing a document to the recipient's verified receipt",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.document_bytes = Counter(
            "p2pdoc_document_bytes",
            "Bytes of document files: submitted, received, delivered (per recipient)",
            ["direction"],
            registry=registry,
        )
        self.status_reports = Counter(
            "p2pdoc_status_reports",
            "Status reports: posted here as recipient, received here as sender",
            ["direction"],
            registry=registry,
        )
        self.api_requests = Counter(
            "p2pdoc_api_requests",
            "HTTP API requests by route and status code",
            ["method", "route", "status"],
            registry=registry,
        )
        for state in ("delivered", "failed"):
            self.deliveries.labels(state)
        for direction in ("submitted", "received", "delivered"):
            self.document_bytes.labels(direction)
        for direction in ("posted", "received"):
            self.status_reports.labels(direction)
        registry.register(_GaugeCollector(read_gauges))

    def render(self) -> bytes:
        return generate_latest(self.registry)
