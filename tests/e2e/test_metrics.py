"""The Prometheus endpoint, scraped over real HTTP from a real server screening through gRPC."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from screening.client import transaction, watch_entry
from screening.config import load_settings
from screening.protogen import ROOT
from screening.v1 import screening_pb2 as pb
from tests.conftest import Live, _start, _stop, free_port, recent, uid

OLD = "2015-01-05"


@pytest.fixture()
def metered() -> Iterator[tuple[Live, int]]:
    port = free_port()
    srv = _start(load_settings(overrides={"metrics": {"port": port},
                                          "server": {"latency_budget_ms": 1000.0}}))
    yield srv, port
    _stop(srv)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _get(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
         **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_decisions_reasons_latency_and_errors(metered: tuple[Live, int]) -> None:
    """Three payments, one refused request: the scrape shows each by RPC, action and reason, the
    latency histogram's count, the error by status code, sizes and the policy version; no
    identifier appears on the page."""
    live, port = metered
    mule = uid("mule")
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, mule, "case 9", "police")])
    payer = uid("payer")
    for _ in range(2):
        d = live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), 4_500,
                                         payer_opened=OLD, payee_opened=OLD))
        assert d.action == pb.ACTION_ALLOW
    stopped = live.bank.screen(transaction(uid("t"), recent(), payer, mule, 10_000))
    assert stopped.action == pb.ACTION_STOP_PAYMENT
    with pytest.raises(grpc.RpcError):
        live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), -5))

    s = _scrape(port)
    assert _get(s, "screening_decisions_total", rpc="ScreenTransaction", action="ALLOW") == 2
    assert _get(s, "screening_decisions_total", rpc="ScreenTransaction", action="STOP_PAYMENT") == 1
    assert _get(s, "screening_reasons_total", rpc="ScreenTransaction",
                reason="PAYEE_WATCHLISTED") == 1
    assert _get(s, "screening_errors_total", rpc="ScreenTransaction", code="INVALID_ARGUMENT") == 1
    assert _get(s, "screening_rpc_latency_seconds_count", rpc="ScreenTransaction") == 4
    assert _get(s, "screening_rpc_latency_seconds_count", rpc="UpdateWatchlist") == 1
    assert _get(s, "screening_entities", kind="accounts") >= 6
    version = stopped.policy_version
    assert _get(s, "screening_policy_info", version=version) == 1
    assert _get(s, "screening_lane_held", lane="screen") == 0
    assert ("screening_lane_queued", (("lane", "screen"),)) in s
    assert _get(s, "screening_lane_queued", lane="screen") == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        page = reply.read().decode()
    assert mule not in page and payer not in page


def test_metrics_port_is_off_by_default_and_a_busy_port_stops_start_up() -> None:
    """Nothing listens unless asked; a port already taken is a clear start-up error."""
    import socket

    from screening.auth import Authenticator
    from screening.errors import ConfigError
    from screening.server import start_server
    from tests.conftest import TOKENS

    assert load_settings().metrics.port == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=r"\[metrics\] cannot serve on 127.0.0.1:"):
            start_server(load_settings(overrides={"metrics": {"port": port}}), port=0,
                         auth=Authenticator.with_tokens(TOKENS))


@pytest.mark.parametrize("fsync", ["batch", "interval"])
def test_the_event_journal_reports_its_writes_and_fsyncs(tmp_path: Path, fsync: str) -> None:
    """A server with a file store journals every accepted payment before answering: the page
    counts the events written, times each group-commit write (and, with interval fsync, each
    fsync) and shows nothing left waiting; a server without a store shows no journal at all."""
    port = free_port()
    live = _start(load_settings(overrides={
        "metrics": {"port": port},
        "storage": {"backend": "file", "path": str(tmp_path), "journal_fsync": fsync,
                    "journal_fsync_interval_ms": 20.0}}))
    try:
        for _ in range(3):
            live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), 100))
        s = _scrape(port)
        deadline = time.monotonic() + 10
        while (fsync == "interval" and _get(s, "screening_journal_sync_seconds_count") == 0
               and time.monotonic() < deadline):  # the writer's thread fsyncs at its interval
            time.sleep(0.05)
            s = _scrape(port)
    finally:
        _stop(live)
    assert ("screening_journal_pending", ()) in s
    assert _get(s, "screening_journal_events_total") >= 3
    writes = _get(s, "screening_journal_write_seconds_count")
    assert 1 <= writes <= _get(s, "screening_journal_events_total")
    assert _get(s, "screening_journal_write_seconds_sum") > 0
    assert _get(s, "screening_journal_pending") == 0
    syncs = _get(s, "screening_journal_sync_seconds_count")
    assert (syncs >= 1) if fsync == "interval" else (syncs == 0)


def test_a_server_without_a_store_has_no_journal_figures(metered: tuple[Live, int]) -> None:
    live, port = metered
    live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), 100))
    s = _scrape(port)
    assert ("screening_journal_pending", ()) not in s
    assert _get(s, "screening_journal_events_total") == 0


def test_the_grafana_dashboard_asks_only_for_metrics_the_server_exports(tmp_path: Path) -> None:
    """docs/grafana-dashboard.json is valid JSON whose every query names a metric a server with a
    store exports (the checkpoint figures exist once there is a checkpoint)."""
    port = free_port()
    live = _start(load_settings(overrides={"metrics": {"port": port},
                                           "storage": {"backend": "file", "path": str(tmp_path)}}))
    try:
        live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), 100))
        assert live.server.checkpointer is not None
        assert live.server.checkpointer.checkpoint("test") is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            families = list(text_string_to_metric_families(reply.read().decode()))
    finally:
        _stop(live)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exported = {f.name + end for f in families for end in suffixes.get(f.type, ("",))}
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 6
    for expr in queries:
        for name in re.findall(r"\bscreening_[a-z_]+", expr):
            assert name in exported, (name, expr)


def test_store_calls_are_timed_by_operation(tmp_path: Path) -> None:
    """With a file store, the page times each store call by operation: the claim at start, a
    watchlist change's journal append, a checkpoint's write, the event journal's appends."""
    port = free_port()
    live = _start(load_settings(overrides={
        "metrics": {"port": port}, "storage": {"backend": "file", "path": str(tmp_path)}}))
    try:
        live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, uid("mule"), "case",
                                                  "police")])
        live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), 100))
        assert live.server.checkpointer is not None
        assert live.server.checkpointer.checkpoint("test") is not None
        s = _scrape(port)
    finally:
        _stop(live)
    for op in ("claim_writer", "append_journal", "write_checkpoint", "append_events"):
        assert _get(s, "screening_store_seconds_count", op=op) >= 1, op
        assert _get(s, "screening_store_seconds_sum", op=op) > 0, op
    assert _get(s, "screening_store_seconds_count", op="append_journal") == 1
