"""ScreenBatch's columnar decode: the same transactions, and the same refusals, as the classic
per-transaction validation."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest

from features.layout import EventCol, TxnFlag
from features.state import FeatureState
from screening.client import transaction
from screening.config import load_settings
from screening.convert import Converter
from screening.core import Screener
from screening.errors import InvalidRequest
from screening.idempotency import fingerprint, fingerprints
from screening.lines import NearLine
from screening.model import TxnColumns
from screening.offline.messages import to_requests
from screening.offline.synth import SynthConfig, generate
from screening.policy import load_policy
from screening.v1 import screening_pb2 as pb
from tests.e2e.test_rpcs import BAD_TRANSACTIONS

SETTINGS = load_settings()
POLICY = load_policy()


def _conv() -> Converter:
    return Converter(SETTINGS, POLICY, lambda: time.time_ns() // 1_000_000)


def _batch(txns: list[pb.Transaction]) -> pb.TransactionBatch:
    return pb.TransactionBatch(transactions=txns)


def _good(i: int) -> pb.Transaction:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    return transaction(f"t-{i}", when, f"a-{i}", f"b-{i}", 100 + i)


@pytest.fixture(scope="module")
def stream_batches() -> list[pb.TransactionBatch]:
    frame = generate(SynthConfig(seed=5, n_persons=100, n_organisations=10, days=7,
                                 scenario_rate=0.2)).events
    txns = [r for r in to_requests(frame) if isinstance(r, pb.Transaction)]
    return [_batch(txns[i:i + 200]) for i in range(0, len(txns), 200)]


def test_columns_equal_the_classic_validated_transactions(
        stream_batches: list[pb.TransactionBatch]) -> None:
    """Every column of a labelled stream's batches holds what per-transaction validation gives,
    and the fingerprints are the same bytes."""
    conv = _conv()
    for b in stream_batches:
        cols = conv.batch_columns(b)
        classic = conv.batch(b)
        assert cols == TxnColumns.from_inputs(classic)
        assert cols.rows() == classic
        assert fingerprints(cols) == [fingerprint(t) for t in classic]


def test_rare_forms_are_accepted_as_the_classic_path_accepts_them() -> None:
    """Phones to normalise, memos with line breaks, opening dates: the same columns."""
    conv = _conv()
    txns = [_good(i) for i in range(4)]
    txns[0].payer_phone = "138 0013 8000"
    txns[1].memo = "line\none\ttab"
    txns[2].payee.account_opened_date = "2020-02-29"
    txns[3].payee_phone = "0044 20 7946 0000"
    b = _batch(txns)
    assert conv.batch_columns(b) == TxnColumns.from_inputs(conv.batch(b))


@pytest.mark.parametrize(("field", "spoil"), BAD_TRANSACTIONS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_TRANSACTIONS)])
def test_a_bad_transaction_is_refused_with_the_classic_message(field, spoil) -> None:  # type: ignore[no-untyped-def]
    """The refusal names the same field and index, with the same words."""
    conv = _conv()
    txns = [_good(i) for i in range(3)]
    spoil(txns[1])
    b = _batch(txns)
    with pytest.raises(InvalidRequest) as classic:
        conv.batch(b)
    with pytest.raises(InvalidRequest) as columnar:
        conv.batch_columns(b)
    assert str(columnar.value) == str(classic.value)
    assert f"transactions[1].{field}" in str(columnar.value)


def test_an_id_with_a_line_break_inside_is_refused() -> None:
    """The joined-ids check cannot be fooled by one id holding the separator."""
    conv = _conv()
    txns = [_good(i) for i in range(2)]
    txns[1].transaction_id = "ab\ncd"
    with pytest.raises(InvalidRequest, match=r"transactions\[1\].transaction_id"):
        conv.batch_columns(_batch(txns))


def test_empty_and_oversized_batches_are_refused() -> None:
    conv = _conv()
    with pytest.raises(InvalidRequest, match="is empty"):
        conv.batch_columns(_batch([]))


def _bare_screener() -> Screener:
    gs = SETTINGS.graph
    return Screener(state=FeatureState.create(4, 4, 4, 16), graph=None,
                    graph_params=gs.params().array(), graph_expiry_ms=gs.expiry_ms)


def test_batch_encoder_equals_one_row_at_a_time(stream_batches: list[pb.TransactionBatch]) -> None:
    """The vectorised encoder (batches) and the row encoder (one transaction) give the same
    event rows and intern the same ids in the same order, registry owners that the transactions
    contradict (foreign flags) included."""
    conv = _conv()
    whole, single = _bare_screener(), _bare_screener()
    # every other payee's registry entry belongs to another institution than the payments name
    owners = {t.payee.account_id: ("ELSEWHERE" if i % 2 else t.payee.institution)
              for b in stream_batches for i, t in enumerate(b.transactions) if t.payee.institution}
    whole.owners, single.owners = dict(owners), dict(owners)
    near = NearLine.build(POLICY, SETTINGS)
    foreign = 0
    for b in stream_batches:
        cols = conv.batch_columns(b)
        got = whole.encode_transactions(cols, POLICY, near)
        want = np.concatenate([single.encode_transactions(cols.take([i]), POLICY, near)
                               for i in range(len(cols))])
        np.testing.assert_array_equal(got, want)
        foreign += int((got[:, EventCol.FLAGS] & TxnFlag.PAYEE_FOREIGN != 0).sum())
    for a, b in zip(whole.interners(), single.interners(), strict=True):
        assert a.names() == b.names()
    assert foreign > 0


def test_columnar_reply_names_each_decisions_policy() -> None:
    """Decisions of two policies in one reply (a duplicate answered after a swap): each row's
    legend index picks the policy it was made under, and reading it back gives the codes the
    classic reply gives."""
    from screening.client import decisions_of_columns
    from screening.model import DecisionRecord
    from screening.policy import default_policy_text, parse_policy

    other = parse_policy(default_policy_text().replace('version = "', 'version = "x', 1), "other")
    assert other.version != POLICY.version
    policies = {POLICY.version: POLICY, other.version: other}
    conv = Converter(SETTINGS, POLICY, lambda: time.time_ns() // 1_000_000,
                     policy_for=policies.__getitem__)
    recs = [DecisionRecord(f"t{i}", i, 1_700_000_000_000, 3, bits, 40, flags, (), version, 5,
                           False)
            for i, (bits, flags, version) in enumerate([(0b101, 0, POLICY.version),
                                                        (0b10, 2, other.version),
                                                        (0, 0, POLICY.version)])]
    dups = [False, True, False]
    cols = conv.decision_columns(recs, dups, 7)
    assert list(cols.legend_index) == [0, 1, 0]
    got = decisions_of_columns(pb.DecisionColumns.FromString(cols.SerializeToString()))
    classic = conv.decision_batch(recs, dups, 7).decisions
    assert [g["reasons"] for g in got] == [[r.code for r in d.reasons] for d in classic]
    assert [g["policy_version"] for g in got] == [d.policy_version for d in classic]
    assert [g["duplicate"] for g in got] == dups
    assert cols.server_latency_us == 7
