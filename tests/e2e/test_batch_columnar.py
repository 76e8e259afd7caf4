"""ScreenBatch's columnar reply carries exactly the decisions of the classic reply."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pytest

from screening.client import decisions_of_columns
from screening.config import load_settings
from screening.offline.messages import to_requests
from screening.offline.replay import replay
from screening.offline.synth import SynthConfig, generate
from screening.policy import load_policy
from screening.v1 import screening_pb2 as pb
from tests.conftest import Live, play_in_batches, start_twins

_BATCH = 40


@pytest.fixture()
def twins() -> Iterator[tuple[Live, Live]]:
    """Two servers of their own (a wide latency budget: the graph stage is never skipped)."""
    yield from start_twins(load_settings(overrides={"server": {"latency_budget_ms": 1000.0}}))


def _classic(d: pb.Decision) -> dict[str, object]:
    r = d.reports
    return {"action": d.action, "risk_score": d.risk_score,
            "reasons": [x.code for x in d.reasons],
            "reports": r.large_value | r.suspicious << 1 | r.notify_police << 2,
            "policy_version": d.policy_version, "degraded": d.degraded,
            "duplicate": d.duplicate}


def test_columnar_reply_equals_classic_reply_for_a_labelled_stream(
        twins: tuple[Live, Live]) -> None:
    """The same labelled stream (calls between the batches, a batch sent twice) through two
    servers, one asking for columns: every decision is the same, and both equal replay's."""
    classic_srv, columnar_srv = twins
    stream = generate(SynthConfig(seed=3, n_persons=150, n_organisations=15, days=8,
                                  scenario_rate=0.2)).events
    classic_rows: list[dict[str, object]] = []
    columnar_rows: list[dict[str, object]] = []
    ids: list[str] = []

    def screen(batch: list[pb.Transaction]) -> None:
        c = classic_srv.client("bank").screen_batch(batch)
        k = columnar_srv.client("bank").screen_batch(batch, columnar=True)
        assert not k.decisions and len(k.columns.actions) == len(batch)
        assert not c.HasField("columns")
        classic_rows.extend(_classic(d) for d in c.decisions)
        columnar_rows.extend(decisions_of_columns(k.columns))
        ids.extend(t.transaction_id for t in batch)

    requests = list(to_requests(stream))
    # the first batch is sent again at the end: duplicates, answered with the first decisions
    repeated = play_in_batches(zip(requests, requests, strict=True), twins, screen, _BATCH)
    assert columnar_rows == classic_rows
    assert sum(r["duplicate"] for r in classic_rows) == repeated
    assert sum(r["action"] != pb.ACTION_ALLOW for r in classic_rows) > 10  # not vacuous
    offline = replay(stream, load_policy(), load_settings()).decisions
    live = pl.DataFrame({"event_id": ids[:len(ids) - repeated],
                         "action_live": [pb.Action.Name(r["action"]).removeprefix("ACTION_")  # type: ignore[arg-type]
                                         for r in columnar_rows[:len(ids) - repeated]],
                         "codes_live": [r["reasons"] for r in columnar_rows[:len(ids) - repeated]]})
    joined = offline.join(live, on="event_id")
    assert joined.height == live.height
    assert joined.filter(pl.col("action") != pl.col("action_live")).height == 0
    assert joined.filter(pl.col("reason_codes") != pl.col("codes_live")).height == 0
