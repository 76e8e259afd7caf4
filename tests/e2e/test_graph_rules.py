"""Graph rules of the default policy through a real server: watchlist proximity and layering."""

from __future__ import annotations

from screening.client import transaction, watch_entry
from screening.v1 import screening_pb2 as pb
from tests.conftest import Live, recent, uid

OLD = "2015-01-05"


def _codes(d: pb.Decision) -> list[str]:
    return [r.code for r in d.reasons]


def test_payee_that_dealt_with_a_listed_account_is_held(live: Live) -> None:
    """A payee who received from a now-listed account is one hop from it: HOLD, police notified."""
    listed, mule = uid("listed"), uid("mule")
    live.bank.screen(transaction(uid("t"), recent(60), listed, mule, 100_000))
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, listed, "case 9", "police")])
    d = live.bank.screen(transaction(uid("t"), recent(30), uid("victim"), mule, 200_000,
                                     payer_opened=OLD, payee_opened=OLD))
    assert d.action == pb.ACTION_HOLD and "GRAPH_PAYEE_LINKED_TO_WATCHLIST" in _codes(d)
    assert d.features["graph_payee_watch_hops"] == 1.0 and d.reports.notify_police


def test_payee_sharing_a_device_with_a_listed_account_gets_a_warning(live: Live) -> None:
    """Listed account and payee used the same device: two hops (account - device - account)."""
    listed, mule, device = uid("listed"), uid("mule"), uid("dev")
    live.bank.screen(transaction(uid("t"), recent(70), listed, uid("x"), 100, device_id=device))
    live.bank.screen(transaction(uid("t"), recent(60), mule, uid("y"), 100, device_id=device))
    live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, listed, "case 10", "police")])
    d = live.bank.screen(transaction(uid("t"), recent(30), uid("victim"), mule, 200_000,
                                     payer_opened=OLD, payee_opened=OLD))
    assert d.action == pb.ACTION_WARN and _codes(d) == ["GRAPH_PAYEE_NEAR_WATCHLIST"]
    assert d.features["graph_payee_watch_hops"] == 2.0


def test_money_rushed_through_a_chain_is_held(live: Live) -> None:
    """Three quick hops of a large amount: the third transfer is a layering chain."""
    a, b, c, d_ = (uid(x) for x in "abcd")
    base = dict(payer_opened=OLD, payee_opened=OLD)
    live.bank.screen(transaction(uid("t"), recent(40), a, b, 5_000_000, **base))
    live.bank.screen(transaction(uid("t"), recent(35), b, c, 4_990_000, **base))
    d = live.bank.screen(transaction(uid("t"), recent(30), c, d_, 4_980_000, **base))
    assert "GRAPH_LAYERING_CHAIN" in _codes(d) and d.action >= pb.ACTION_HOLD
    assert d.features["graph_chain_hops"] == 3.0
