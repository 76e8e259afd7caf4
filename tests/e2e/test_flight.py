"""The Arrow Flight bulk endpoint screens as ScreenBatch does, with its state, scope and roles."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from screening.audit import read_records, verify
from screening.cli import main
from screening.config import load_settings
from screening.digest import state_digest
from screening.errors import ConfigError
from screening.flight_client import FlightScreeningClient, event_batches
from screening.offline.events import write_frame
from screening.offline.messages import to_requests
from screening.offline.synth import SynthConfig, generate
from screening.server import _start_flight
from screening.v1 import screening_pb2 as pb
from tests.conftest import (
    Live,
    _start,
    _stop,
    free_port,
    play_in_batches,
    serve_process,
    server_env,
    start_twins,
)

_BATCH = 40


@pytest.fixture(scope="module")
def stream() -> pl.DataFrame:
    # ScreenBatch's test helper names one institution for both parties: the frame does the same
    events = generate(SynthConfig(seed=3, n_persons=150, n_organisations=15, days=8,
                                  scenario_rate=0.2)).events
    return events.with_columns(pl.col("payer_institution").alias("payee_institution"))


@pytest.fixture(scope="module")
def twins() -> Iterator[tuple[Live, Live]]:
    """Two servers with Flight on a free port (a wide latency budget: the graph stage is never
    skipped, so the two decide alike)."""
    yield from start_twins(load_settings(overrides={"server": {"latency_budget_ms": 1000.0},
                                                    "flight": {"port": 0}}))


def _flight(live: Live, role: str) -> FlightScreeningClient:
    return FlightScreeningClient(f"grpc://127.0.0.1:{live.server.flight_port}", f"test-token-{role}")


def _classic(d: pb.Decision) -> dict[str, Any]:
    r = d.reports
    return {"event_id": d.transaction_id, "action": pb.Action.Name(d.action).removeprefix("ACTION_"),
            "risk_score": d.risk_score, "reasons": [x.code for x in d.reasons],
            "large_value": r.large_value, "suspicious": r.suspicious,
            "notify_police": r.notify_police, "degraded": d.degraded, "duplicate": d.duplicate,
            "policy_version": d.policy_version}


def _screen(live: Live, frame: pl.DataFrame, role: str = "bank") -> list[dict[str, Any]]:
    with _flight(live, role) as client:
        return [row for reply in client.screen(event_batches(frame, _BATCH))
                for row in reply.to_pylist()]


def test_flight_decisions_equal_screen_batch_for_a_labelled_stream(
        twins: tuple[Live, Live], stream: pl.DataFrame) -> None:
    """The same labelled stream (calls between the batches, a batch sent twice) through Flight
    on one server and ScreenBatch on another: every decision is the same."""
    over_flight, over_grpc = twins
    flight_rows: list[dict[str, Any]] = []
    grpc_rows: list[dict[str, Any]] = []

    def screen(rows: list[int]) -> None:
        part = stream[rows]
        msgs = [m for m in to_requests(part) if isinstance(m, pb.Transaction)]
        grpc_rows.extend(_classic(d) for d in over_grpc.client("bank").screen_batch(msgs).decisions)
        flight_rows.extend(_screen(over_flight, part))

    # the first batch is sent again at the end: duplicates, answered with the first decisions
    repeated = play_in_batches(enumerate(to_requests(stream)), twins, screen, _BATCH)
    assert flight_rows == grpc_rows
    assert sum(r["duplicate"] for r in flight_rows) == repeated
    assert sum(r["action"] != "ALLOW" for r in flight_rows) > 10  # not vacuous


def test_duplicates_are_idempotent_across_flight_and_screen_batch(
        twins: tuple[Live, Live], stream: pl.DataFrame) -> None:
    """An institution's ids are one scope: what ScreenBatch decided, Flight answers as a
    duplicate, and the other way round; another content under a used id is refused."""
    live = twins[0]
    fresh = stream.filter(pl.col("kind") == "txn").tail(20).with_columns(
        ("dup-" + pl.col("event_id")).alias("event_id"))
    a, b = fresh.head(10), fresh.tail(10)
    msgs_a = [m for m in to_requests(a) if isinstance(m, pb.Transaction)]
    first = [_classic(d) for d in live.bank.screen_batch(msgs_a).decisions]
    again = _screen(live, a)
    assert [r["duplicate"] for r in again] == [True] * 10
    assert [dict(r, duplicate=False) for r in again] == first
    over_flight = _screen(live, b)
    assert not any(r["duplicate"] for r in over_flight)
    msgs_b = [m for m in to_requests(b) if isinstance(m, pb.Transaction)]
    back = [_classic(d) for d in live.bank.screen_batch(msgs_b).decisions]
    assert back == [dict(r, duplicate=True) for r in over_flight]
    changed = b.with_columns(pl.col("amount_minor") + 1)
    with pytest.raises(flight.FlightServerError, match=r"ALREADY_EXISTS: batch 0, row 0, column event_id"):
        _screen(live, changed)


def test_a_role_without_screen_batch_is_refused(twins: tuple[Live, Live],
                                                stream: pl.DataFrame) -> None:
    """Police may not screen (as on ScreenBatch); without a token nobody may."""
    part = stream.filter(pl.col("kind") == "txn").head(3)
    with pytest.raises(flight.FlightUnauthorizedError, match="role 'police'"):
        _screen(twins[0], part, role="police")
    with FlightScreeningClient(f"grpc://127.0.0.1:{twins[0].server.flight_port}") as anonymous, \
            pytest.raises(flight.FlightUnauthenticatedError, match="bearer token"):
        list(anonymous.screen(event_batches(part)))


def test_a_bad_column_is_refused_naming_it_and_nothing_changes(
        twins: tuple[Live, Live], stream: pl.DataFrame) -> None:
    """A batch with one bad value, or a column of the wrong type, is refused whole with
    INVALID_ARGUMENT naming the row and column: the state digest does not move."""
    live = twins[0]
    part = stream.filter(pl.col("kind") == "txn").head(8).with_columns(
        ("bad-" + pl.col("event_id")).alias("event_id"))
    before = state_digest(live.server.engine.snapshot())
    bad_currency = part.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("XXX")).otherwise(pl.col("currency"))
        .alias("currency"))
    with pytest.raises(flight.FlightServerError, match=r"^INVALID_ARGUMENT: batch 0, row 5, "
                       r"column currency: unknown currency XXX") as refused:
        _screen(live, bad_currency)
    assert "Traceback" not in str(refused.value) and ".py" not in str(refused.value)
    with pytest.raises(flight.FlightServerError,
                       match=r"INVALID_ARGUMENT: .*column amount_minor: must be int64"):
        _screen(live, part.with_columns(pl.col("amount_minor").cast(pl.Float64)))
    with pytest.raises(flight.FlightServerError,
                       match=r"INVALID_ARGUMENT: .*row 2, column channel: unknown value 'pigeon'"):
        _screen(live, part.with_columns(
            pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("pigeon")).otherwise(pl.col("channel"))
            .alias("channel")))
    assert state_digest(live.server.engine.snapshot()) == before
    assert live.police.query_account(part["payer_account"][0]).account_id  # the server answers


def test_flight_configured_without_pyarrow_flight_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """[flight] port set where pyarrow.flight cannot be imported: a clear ConfigError."""
    monkeypatch.setitem(sys.modules, "screening.flight", None)
    with pytest.raises(ConfigError, match=r"\[flight\] port is set but pyarrow.flight"):
        _start_flight(load_settings(overrides={"flight": {"port": 0}}), None, None)  # type: ignore[arg-type]


def test_flight_under_mutual_tls_is_refused_at_start() -> None:
    """Callers named by client certificates are not supported over Flight yet: no start."""
    settings = load_settings(overrides={"flight": {"port": 0}, "tls": {
        "cert_file": "server.pem", "key_file": "server.key", "client_ca_file": "ca.pem"}})
    with pytest.raises(ConfigError, match="mutual TLS is not supported yet"):
        _start_flight(settings, None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_flight_screen_cli_writes_the_decisions_of_an_events_file(
        twins: tuple[Live, Live], stream: pl.DataFrame, tmp_path: Path, suffix: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`screening flight screen FILE` sends the file's transactions (calls left out) in batches
    and writes one decision per transaction, in file order."""
    part = stream.head(60).with_columns((f"cli{suffix}-" + pl.col("event_id")).alias("event_id"))
    src = tmp_path / f"events{suffix}"
    write_frame(part, src)
    code = main(["flight", "screen", str(src), "--server",
                 f"grpc://127.0.0.1:{twins[0].server.flight_port}", "--token", "test-token-bank",
                 "--batch-rows", "7"])
    assert code == 0
    out = pl.read_parquet(tmp_path / "events.decisions.parquet")
    assert out["event_id"].to_list() == part.filter(pl.col("kind") == "txn")["event_id"].to_list()
    assert "decisions ->" in capsys.readouterr().out


def test_sigterm_drains_an_open_flight_exchange(stream: pl.DataFrame) -> None:
    """`serve --flight-port`: an exchange open when SIGTERM arrives is answered to its end (its
    next batch included), then the server stops cleanly."""
    fport = free_port()
    part = stream.filter(pl.col("kind") == "txn").head(20)
    first, second = list(event_batches(part, 10))
    answered: list[int] = []

    def during(_client: Any, proc: subprocess.Popen[str]) -> None:
        # one batch in flight: the first reply has come back (the exchange is open on the
        # server) before the generator sends SIGTERM; with two, SIGTERM could beat the exchange's
        # start and the server rightly refuses a new exchange while stopping
        with FlightScreeningClient(f"grpc://127.0.0.1:{fport}", in_flight=1) as client:
            replies = client.screen(_paced(first, second, proc))
            # what this test holds: both batches answered after SIGTERM. The call's last status
            # can race the stopping process's exit (CANCELLED at close, seen once on a loaded
            # machine, after both answers had arrived)
            with contextlib.suppress(flight.FlightCancelledError):
                answered.extend(reply.num_rows for reply in replies)

    code, err = serve_process(["--no-auth", "--flight-port", str(fport)], free_port(),
                              lambda _c: None, env=server_env(), signals=during)
    assert code == 0, err[-2000:]
    assert answered == [10, 10]
    assert "flight_serving" in err


def _paced(first: pa.RecordBatch, second: pa.RecordBatch,
           proc: subprocess.Popen[str]) -> Iterator[pa.RecordBatch]:
    yield first
    proc.send_signal(signal.SIGTERM)  # while the exchange is open
    time.sleep(0.5)
    yield second


def test_flight_decisions_are_in_the_audit_trail(tmp_path: Path, stream: pl.DataFrame) -> None:
    """Each decision made over Flight is in the audit trail, with the caller and the decision,
    as ScreenBatch's are; the chain verifies after stop."""
    d = tmp_path / "audit"
    live = _start(load_settings(overrides={"flight": {"port": 0},
                                           "audit": {"dir": str(d), "flush_interval_ms": 20.0}}))
    part = stream.filter(pl.col("kind") == "txn").head(5)
    try:
        rows = _screen(live, part)
    finally:
        _stop(live)
    report = verify(d)
    assert report.ok, report.problem
    decisions = [r for r in read_records(d) if r["kind"] == "decision"]
    assert [r["rpc"] for r in decisions] == ["FlightScreen"] * 5
    assert [r["txn"] for r in decisions] == part["event_id"].to_list()
    assert [r["action"] for r in decisions] == [r["action"] for r in rows]
    assert {r["by"] for r in decisions} == {"test-bank"}
