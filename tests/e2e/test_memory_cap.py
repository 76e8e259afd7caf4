"""A server at its account cap keeps screening new customers: the coldest are evicted."""

from __future__ import annotations

import json

from screening.client import transaction
from screening.config import load_settings
from screening.v1 import screening_pb2 as pb
from tests.conftest import _start, _stop, recent, uid


def test_new_customers_are_screened_at_the_cap_not_refused() -> None:
    """With room for 16 accounts, 300 payments between new accounts (one by one and in
    batches) are all answered; the server logs its memory plan (in `serving`) and every
    eviction, and its stats count them."""
    settings = load_settings(overrides={"state": {
        "initial_accounts": 8, "max_accounts": 16, "max_phones": 16, "max_devices": 16,
        "evict_fraction": 0.125}})
    live = _start(settings)
    try:
        when = recent(30)
        for i in range(100):
            d = live.bank.screen(transaction(uid("t"), when, uid("new"), uid("new"), 1_000 + i))
            assert d.action == pb.ACTION_ALLOW
        batch = [transaction(uid("t"), when, uid("new"), uid("new"), 500) for _ in range(8)]
        for _ in range(25):
            out = live.bank.screen_batch(batch)
            assert len(out.decisions) == 8
            batch = [transaction(uid("t"), when, uid("new"), uid("new"), 500) for _ in range(8)]
        stats = live.server.engine.stats()
        assert stats["accounts"] <= 16 and stats["accounts_evicted"] == 600 - stats["accounts"]
    finally:
        _stop(live)
    events = [json.loads(line) for line in live.log.getvalue().splitlines() if line.startswith("{")]
    plan = [e["memory"] for e in events if e["event"] == "serving"]
    assert plan and plan[0]["max_accounts"] == 16 and plan[0]["derived"] == []
    evicted = [e for e in events if e["event"] == "evicted"]
    assert sum(e["count"] for e in evicted if e["kind"] == "accounts") == stats["accounts_evicted"]
    assert all(e["live"] <= e["cap"] == 16 for e in evicted)
    assert not any("new-" in line for line in live.log.getvalue().splitlines()
                   if '"evicted"' in line)  # no account numbers in them
