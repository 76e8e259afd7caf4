"""Prometheus metrics: what operators watch (decisions, latency, refusals, queues, state size).

One ``Metrics`` per server, on its own registry (tests and several servers in one process do
not share counters), served over HTTP on ``[metrics] port`` when that is not 0. Counters are
updated on the request path with cached label children (about a microsecond each); sizes are
read only when scraped (``_Sizes``). Labels never carry identifiers: RPC, action, reason code,
lane, status code.

Names (``screening_`` prefix): ``decisions_total{rpc,action}``, ``reasons_total{rpc,reason}``,
``degraded_decisions_total{rpc}``, ``duplicate_requests_total{rpc}``,
``rpc_latency_seconds{rpc}`` (histogram, handler time), ``refused_total{lane,reason}`` (shed
before any work), ``errors_total{rpc,code}``, ``lane_held{lane}``, ``lane_queued{lane}`` (queue
depth), ``entities{kind}``,
``graph_edges``, ``state_bytes``, ``unsaved_decisions``, ``checkpoint_*``, ``audit_*`` (with an
audit trail: records waiting, written, calls refused, writer failing), ``policy_info{version}``,
``store_seconds{op}`` (histogram: each call to the state store, by operation),
``shadow_decisions_total{shadow,event,action}``, ``shadow_disagreements_total{shadow,event}``
(``event``: ``transaction`` or ``call``); with an
event journal ``journal_write_seconds`` (histogram: one group-commit write, the store's round
trip), ``journal_events_total``, ``journal_sync_seconds`` (interval fsyncs), ``journal_pending``.
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

__all__ = ["Metrics"]

# Handler time, seconds: sub-millisecond screening up to multi-second exports and reports.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)
# One journal write or fsync: tens of microseconds (page cache, Redis on the host) to a slow disk.
STORE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 1.0)
# Any store call: the same, and up to a large checkpoint's write.
STORE_OP_BUCKETS = (*STORE_BUCKETS, 2.5, 10.0, 30.0, 120.0)


class Metrics:
    """The server's metrics; every method is safe to call from any thread."""

    def __init__(self, policy_version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._decisions = Counter("screening_decisions", "Decisions answered, by RPC and action.",
                                  ["rpc", "action"], registry=r)
        self._reasons = Counter("screening_reasons", "Reason codes in decisions, by RPC.",
                                ["rpc", "reason"], registry=r)
        self._degraded = Counter("screening_degraded_decisions",
                                 "Decisions answered without some analysis (latency budget or "
                                 "store outage).", ["rpc"], registry=r)
        self._duplicates = Counter("screening_duplicate_requests",
                                   "Repeated transaction or call ids answered with the first "
                                   "decision.", ["rpc"], registry=r)
        self._latency = Histogram("screening_rpc_latency_seconds",
                                  "Server time per call (per message on ScreenStream).", ["rpc"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self._refused = Counter("screening_refused",
                                "Calls refused before any work (lane full, deadline too short, "
                                "too many streams).", ["lane", "reason"], registry=r)
        self._errors = Counter("screening_errors", "Calls ended with an error status.",
                               ["rpc", "code"], registry=r)
        self._shadow = Counter("screening_shadow_decisions",
                               "What shadow policies would have decided (never answered), by "
                               "event (transaction, call).", ["shadow", "event", "action"],
                               registry=r)
        self._shadow_diff = Counter("screening_shadow_disagreements",
                                    "Transactions and calls a shadow policy would have decided "
                                    "with another action than the active one.",
                                    ["shadow", "event"], registry=r)
        self._store = Histogram("screening_store_seconds",
                                "One call to the state store, by operation (claim renewals, "
                                "journal appends, checkpoint writes, ...), failed calls included.",
                                ["op"], buckets=STORE_OP_BUCKETS, registry=r)
        self._journal_write = Histogram("screening_journal_write_seconds",
                                        "One group-commit write of the event journal to the store "
                                        "(with its fsync when journal_fsync is batch).",
                                        buckets=STORE_BUCKETS, registry=r)
        self._journal_events = Counter("screening_journal_events",
                                       "Events written to the event journal.", registry=r)
        self._journal_sync = Histogram("screening_journal_sync_seconds",
                                       "One fsync of the event journal (journal_fsync = interval).",
                                       buckets=STORE_BUCKETS, registry=r)
        self._sizes = _Sizes(policy_version)
        r.register(self._sizes)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        self._http: WSGIServer | None = None

    # ------------------------------------------------------------------ wiring
    def watch(self, *, lanes: Callable[[], Mapping[str, tuple[int, int]]] | None = None,
              engine: Callable[[], Mapping[str, int]] | None = None,
              checkpoint: Callable[[], Mapping[str, float] | None] | None = None,
              audit: Callable[[], Mapping[str, float]] | None = None,
              journal_pending: Callable[[], int] | None = None) -> None:
        """Sources read at scrape time: lane occupancy and queue depth, the engine's sizes, the
        last checkpoint, the audit trail's writer, the events waiting for the journal."""
        self._sizes.lanes = lanes
        self._sizes.engine = engine
        self._sizes.checkpoint = checkpoint
        self._sizes.audit = audit
        self._sizes.journal_pending = journal_pending

    def set_policy(self, version: str) -> None:
        self._sizes.policy_version = version

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` over HTTP in a daemon thread; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return int(server.server_port)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    # ------------------------------------------------------------------ the request path
    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, metric.labels(*labels))
        return child

    def decided(self, rpc: str, action: str, reasons: Sequence[str], *, degraded: bool = False,
                duplicate: bool = False) -> None:
        self._child(self._decisions, rpc, action).inc()
        for code in reasons:
            self._child(self._reasons, rpc, code).inc()
        if degraded:
            self._child(self._degraded, rpc).inc()
        if duplicate:
            self._child(self._duplicates, rpc).inc()

    def decided_batch(self, rpc: str, actions: Iterable[str], reasons: Iterable[Sequence[str]],
                      *, degraded: int = 0, duplicates: int = 0) -> None:
        """``decided`` for a batch: the same counts, one increment per label rather than per
        decision (a Prometheus increment takes a lock and costs about 3 µs)."""
        for action, n in collections.Counter(actions).items():
            self._child(self._decisions, rpc, action).inc(n)
        for code, n in collections.Counter(itertools.chain.from_iterable(reasons)).items():
            self._child(self._reasons, rpc, code).inc(n)
        if degraded:
            self._child(self._degraded, rpc).inc(degraded)
        if duplicates:
            self._child(self._duplicates, rpc).inc(duplicates)

    def shadow_decided(self, shadow: str, event: str, action: str, n: int) -> None:
        self._child(self._shadow, shadow, event, action).inc(n)

    def shadow_disagreed(self, shadow: str, event: str, n: int) -> None:
        self._child(self._shadow_diff, shadow, event).inc(n)

    def store_timed(self, op: str, seconds: float) -> None:
        self._child(self._store, op).observe(seconds)

    def journal_written(self, events: int, seconds: float) -> None:
        self._journal_write.observe(seconds)
        self._journal_events.inc(events)

    def journal_synced(self, seconds: float) -> None:
        self._journal_sync.observe(seconds)

    def observe(self, rpc: str, seconds: float) -> None:
        self._child(self._latency, rpc).observe(seconds)

    def refused(self, lane: str, reason: str) -> None:
        self._child(self._refused, lane, reason).inc()

    def failed(self, rpc: str, code: str) -> None:
        self._child(self._errors, rpc, code).inc()


class _Sizes(Collector):
    """Gauges read when scraped, never on the request path."""

    def __init__(self, policy_version: str) -> None:
        self.policy_version = policy_version
        self.lanes: Callable[[], Mapping[str, tuple[int, int]]] | None = None
        self.engine: Callable[[], Mapping[str, int]] | None = None
        self.checkpoint: Callable[[], Mapping[str, float] | None] | None = None
        self.audit: Callable[[], Mapping[str, float]] | None = None
        self.journal_pending: Callable[[], int] | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # values come and go with the sources; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("screening_policy_info", "The active policy (value 1).",
                                 labels=["version"])
        info.add_metric([self.policy_version], 1)
        yield info
        if self.lanes is not None:
            held = GaugeMetricFamily("screening_lane_held",
                                     "Calls running or queued in each lane.", labels=["lane"])
            queued = GaugeMetricFamily("screening_lane_queued",
                                       "Calls waiting for a thread in each lane (queue depth).",
                                       labels=["lane"])
            for lane, (n, waiting) in self.lanes().items():
                held.add_metric([lane], n)
                queued.add_metric([lane], waiting)
            yield held
            yield queued
        if self.engine is not None:
            stats = self.engine()
            entities = GaugeMetricFamily("screening_entities", "Entities held in the state.",
                                         labels=["kind"])
            for kind in ("accounts", "phones", "devices", "pairs"):
                entities.add_metric([kind], stats.get(kind, 0))
            yield entities
            for key, help_text in (
                    ("graph_edges", "Edges in the live transaction graph."),
                    ("state_bytes", "Bytes of feature state and recent-decision rings."),
                    ("unsaved_decisions", "Decisions since the last checkpoint."),
                    ("ledger_rows", "Transactions held in the daily report ledger.")):
                if key in stats:
                    yield GaugeMetricFamily(f"screening_{key}", help_text, value=stats[key])
        if self.checkpoint is not None:
            last = self.checkpoint()
            if last is not None:
                for key, help_text in (
                        ("seconds", "Duration of the last checkpoint."),
                        ("lock_seconds", "Time the last checkpoint held the engine lock."),
                        ("bytes", "Size of the last checkpoint."),
                        ("timestamp_seconds", "When the last checkpoint was written (Unix time).")):
                    yield GaugeMetricFamily(f"screening_checkpoint_{key}", help_text,
                                            value=last[key])
        if self.audit is not None:
            figures = self.audit()
            for key, help_text in (
                    ("pending", "Audit records queued, not yet written."),
                    ("written", "Audit records written since start."),
                    ("refused", "Calls refused because the audit writer was max_pending behind."),
                    ("failing", "1 while the audit writer's last write failed.")):
                yield GaugeMetricFamily(f"screening_audit_{key}", help_text, value=figures[key])
        if self.journal_pending is not None:
            yield GaugeMetricFamily("screening_journal_pending",
                                    "Events accepted, not yet written to the journal.",
                                    value=self.journal_pending())
