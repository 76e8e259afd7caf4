"""A live payment is not held behind another caller's bulk batch: the engine screens a big batch
in chunks and lets waiting requests in between, and the batch decides as it would in one piece."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from screening import engine as engine_module
from screening.client import decisions_of_columns, transaction
from screening.config import load_settings
from screening.engine import BATCH_CHUNK
from screening.v1 import screening_pb2 as pb
from tests.conftest import CutIn, Live, recent, start_twins, uid

_ROWS = 3 * BATCH_CHUNK + 100  # four chunks


@pytest.fixture()
def twins() -> Iterator[tuple[Live, Live]]:
    """Two servers of their own (a wide latency budget: the graph stage is never skipped), their
    prefillers stopped (the test's calls are the only ones taking the engine's lock)."""
    servers = start_twins(load_settings(overrides={"server": {"latency_budget_ms": 1000.0}}))
    a, b = next(servers)
    for srv in (a, b):
        srv.server.engine.stop_prefill()
    yield a, b
    next(servers, None)


def _bulk() -> list[pb.Transaction]:
    """A bank's bulk file: 40 accounts paying each other over two days (repeat payees, growing
    amounts, a few large and cash ones, so rules fire), the first payment sent twice."""
    prefix = uid("bulk")
    start = recent(minutes_ago=2 * 24 * 60)
    txns = [transaction(f"{prefix}-{i:05d}", start + (recent(0) - start) * i / _ROWS,
                        f"{prefix}-A{i % 40}", f"{prefix}-A{(i + 1 + i * 7 % 39) % 40}",
                        1_000 + 997 * (i % 113) + (5_000_000 if i % 97 == 0 else 0),
                        cash=i % 31 == 0)
                        for i in range(_ROWS - 1)]
    return [*txns, txns[0]]


def test_a_payment_sent_during_a_large_batch_is_answered_before_the_batch(
        twins: tuple[Live, Live], monkeypatch: pytest.MonkeyPatch) -> None:
    """A single ScreenTransaction sent while a large ScreenBatch screens is screened between
    two of its chunks and answered before the batch; the batch's decisions equal those of the
    same batch screened in one piece (another server, nothing interleaved)."""
    chunked, whole = twins
    bulk = _bulk()
    payment = transaction(uid("live"), recent(1), uid("payer"), uid("payee"), 12_300)
    cut = CutIn(chunked.server.engine, lambda: chunked.client("payment").screen(payment))

    reply = chunked.bank.screen_batch(bulk, columnar=True)
    cut.order.append("batch answered")
    cut.join()

    assert cut.order[:4] == ["chunk", "cut in", "answered", "chunk"]
    assert cut.order[-1] == "batch answered"
    assert cut.order.count("chunk") == 4  # the batch's new transactions, BATCH_CHUNK at a time
    # the payment's decision is numbered between the batch's first and last
    engine = chunked.server.engine
    seqs = [r.seq for r in engine.decisions.records() if r.transaction_id.startswith("bulk")]
    (live_rec,) = engine.decisions.find(payment.transaction_id)
    assert min(seqs) < live_rec.seq < max(seqs)

    monkeypatch.setattr(engine_module, "BATCH_CHUNK", 10 * _ROWS)  # one piece
    alone = whole.bank.screen_batch(bulk, columnar=True)
    got, want = decisions_of_columns(reply.columns), decisions_of_columns(alone.columns)
    assert got == want
    assert got[-1]["duplicate"] and not any(d["duplicate"] for d in got[:-1])
    assert len({d["action"] for d in got}) > 1  # not a trivial batch: rules fired
