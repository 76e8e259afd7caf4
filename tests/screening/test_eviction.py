"""At a cap the coldest entities are evicted, never refused: what an evicted id's next owner
sees, what is never evicted, and that a restored server evicts and decides as the first one."""

from __future__ import annotations

import numpy as np
import pytest

from features.state import NO_TIME
from screening.config import Settings, load_settings
from screening.engine import Engine, Eviction
from screening.errors import CapacityExceeded
from screening.memory import plan_memory
from screening.model import NEVER, AccountProfile, CallInput, DecisionRecord, Party, TxnInput, WatchEntry
from screening.policy import Policy, parse_policy
from screening.store import MemoryStore, journal_writer, restore_engine, save_checkpoint
from tests.store.conftest import assert_same_state

T0 = 1_700_000_000_000
MINUTE = 60_000

# Rules that fire on what an account inherited, if anything: a known payee, a payee who paid
# the payer before, graph fan-out and fan-in, distinct payers; and a watchlist and a HOLD rule.
PROBE = parse_policy('''
[policy]
name = "probe"
version = "1"

[[rule]]
code = "KNOWN_PAYEE"
message = "paid this payee before"
action = "WARN"
score = 10
when = ["first_time_payee == 0"]

[[rule]]
code = "PAID_BACK"
message = "the payee paid the payer before"
action = "WARN"
score = 10
when = ["payee_paid_payer_before == 1"]

[[rule]]
code = "GRAPH_FAN_OUT"
message = "the payer paid several accounts"
action = "WARN"
score = 10
when = ["graph_payer_fan_out >= 2"]

[[rule]]
code = "GRAPH_FAN_IN"
message = "the payee was paid by several accounts"
action = "WARN"
score = 10
when = ["graph_payee_fan_in >= 2"]

[[rule]]
code = "DISTINCT_PAYERS"
message = "the payee has several recent payers"
action = "WARN"
score = 10
when = ["payee_in_distinct_7d >= 2"]

[[rule]]
code = "WATCHED"
message = "payee watchlisted"
action = "FREEZE"
score = 90
when = ["payee_watchlisted == 1"]

[[rule]]
code = "HUGE"
message = "a huge payment"
action = "HOLD"
score = 50
when = ["amount >= 90_000_000"]
''', "probe.toml")


def tiny(cap: int = 8, fraction: float = 0.25, **state: object) -> Settings:
    """Caps of ``cap`` entities of each kind; a quarter of the cap evicted at a time."""
    return load_settings(overrides={
        "state": {"initial_accounts": 4, "initial_phones": 4, "initial_devices": 4,
                  "initial_pairs": 16, "max_accounts": cap, "max_phones": cap,
                  "max_devices": cap, "evict_fraction": fraction, **state},
        "graph": {"initial_edges": 64},
        # decisions that compare across engines: the graph's detectors never skipped for time
        "server": {"latency_budget_ms": 60_000.0}})


def engine_for(settings: Settings, policy: Policy = PROBE) -> Engine:
    # the plan for a large machine: these tests are about the caps, not this machine's memory
    return Engine(settings, policy, clock_ms=lambda: T0 + 10**9,
                  memory=plan_memory(settings, 1 << 40))


def pay(engine: Engine, payer: str, payee: str, minute: int, amount: int = 10_000, *,
        phone: str = "", device: str = "") -> DecisionRecord:
    t = TxnInput(f"t{minute}-{payer}-{payee}", T0 + minute * MINUTE, Party(payer, "B1", 1, None),
                 Party(payee, "B1", 1, None), amount, "CNY", amount, 1, False, False, device,
                 phone, "")
    (rec, dup), = engine.screen([t])
    assert not dup
    return rec


def codes(engine: Engine, rec: DecisionRecord) -> set[str]:
    return {r.code for r in engine.policy.fired(rec.reason_bits)}


def test_a_recycled_id_inherits_no_relationship() -> None:
    """Accounts evicted at the cap give their ids to new accounts, which start with nothing:
    no known payee, no payment back, no graph edges, no payers, in no other account's ring."""
    engine = engine_for(tiny(cap=8))
    pay(engine, "A", "B", 0)
    pay(engine, "A", "B", 1)
    pay(engine, "B", "A", 2)
    pay(engine, "A", "E", 3)
    pay(engine, "E", "B", 4)
    assert "KNOWN_PAYEE" in codes(engine, pay(engine, "E", "B", 5))  # the probe works
    for i, (x, y) in enumerate((("X1", "X2"), ("X3", "X4"), ("X5", "E"))):
        pay(engine, x, y, 10 + i)
    assert engine.accounts.live == 8
    id_a, id_b = engine.accounts.get("A"), engine.accounts.get("B")
    assert id_a is not None and id_b is not None
    rec = pay(engine, "C", "D", 20)  # two new accounts: A, B, X1 and X2 (the coldest) go
    assert engine.accounts.get("A") is None and engine.accounts.get("B") is None
    assert (engine.accounts.get("C"), engine.accounts.get("D")) == (id_a, id_b)
    assert codes(engine, rec) == set()
    assert engine.accounts.get("E") is not None  # warm: kept
    e = engine.accounts.get("E")
    assert e is not None
    assert id_b not in engine.state.accounts.ring[e, :, :, 0]  # E paid B: gone from its ring
    # D's payers are C and E now, not B's
    assert codes(engine, pay(engine, "E", "D", 21)) == {"DISTINCT_PAYERS", "GRAPH_FAN_IN"}
    assert "KNOWN_PAYEE" in codes(engine, pay(engine, "C", "D", 22))  # the new relationship
    engine.state.check()
    assert engine.graph is not None
    engine.graph.check((len(engine.accounts), len(engine.phones), len(engine.devices)))
    stats = engine.stats()
    assert stats["accounts"] == 6 and stats["accounts_evicted"] == 4


def test_an_evicted_account_takes_its_registry_entrys_owner_with_it() -> None:
    """The owner of an evicted account's registry entry goes with the rest of its state: the
    id, back later, is anyone's to file (the entry is gone too)."""
    engine = engine_for(tiny(cap=8))
    pay(engine, "A", "B", 0)
    engine.upsert_accounts([AccountProfile("A", 1, None, None, "5411", False, "", "B1")],
                           writer="B1")
    assert engine.core.owners == {"A": "B1"}
    for i, (x, y) in enumerate((("X1", "X2"), ("X3", "X4"), ("X5", "X6"), ("X7", "X8"))):
        pay(engine, x, y, 10 + i)
    assert engine.accounts.get("A") is None and engine.core.owners == {}
    assert engine.upsert_accounts([AccountProfile("A", 1, None, None, "", False, "", "B2")],
                                  writer="B2") == 1
    assert engine.core.owners == {"A": "B2"}


def test_a_flood_of_new_accounts_is_screened_at_the_cap_and_counted() -> None:
    """Thousands of new accounts through a cap of 64: every one screened, the live count stays
    within the cap, every eviction reported, the state consistent throughout."""
    engine = engine_for(tiny(cap=64, fraction=0.05))
    seen: list[Eviction] = []
    engine.on_evict = seen.append
    for batch in range(200):
        txns = [TxnInput(f"f{batch}-{j}", T0 + (batch * 10 + j) * 1000,
                         Party(f"N{batch}-{j}", "B1", 1, None), Party(f"M{batch}-{j}", "B1", 1, None),
                         5_000, "CNY", 5_000, 1, False, False, f"dev{batch}", f"+86{batch:09d}", "")
                for j in range(10)]
        assert len(engine.screen(txns)) == 10
        assert engine.accounts.live <= 64 and engine.phones.live <= 64
    stats = engine.stats()
    assert stats["accounts_evicted"] == 4_000 - stats["accounts"]
    assert sum(e.count for e in seen if e.kind == "accounts") == stats["accounts_evicted"]
    assert stats["phones_evicted"] == 200 - stats["phones"] > 0
    assert all(e.count >= 3 and e.live <= e.cap for e in seen)  # 5 % of 64, at least
    assert len(engine.accounts) <= 64 + 20  # ids are reused: the arrays do not grow on
    engine.state.check()
    assert engine.graph is not None
    engine.graph.check((len(engine.accounts), len(engine.phones), len(engine.devices)))
    live_ids = {engine.accounts.get(f"N199-{j}") for j in range(10)}
    assert None not in live_ids  # the newest are kept


def test_watchlisted_and_open_case_accounts_are_never_evicted() -> None:
    """The coldest accounts stay when they are watchlisted or had a HOLD decision lately."""
    engine = engine_for(tiny(cap=8))
    engine.update_watchlist([WatchEntry(1, "W", "case 9", "police", NEVER)], [])
    pay(engine, "H", "Q", 0, amount=95_000_000)  # HOLD: H and Q are in an open case
    for i in range(40):
        pay(engine, f"N{i}", f"M{i}", 10 + i)
    assert engine.accounts.get("W") is not None
    assert engine.accounts.get("H") is not None and engine.accounts.get("Q") is not None
    assert "WATCHED" in codes(engine, pay(engine, "N39", "W", 60))
    assert engine.stats()["accounts_evicted"] > 70


def test_only_protected_accounts_left_is_refused() -> None:
    """When every account at the cap is watchlisted, a new one is refused (RESOURCE_EXHAUSTED),
    and a request with more new accounts than the cap is refused whole."""
    engine = engine_for(tiny(cap=8))
    engine.update_watchlist([WatchEntry(1, f"W{i}", "case", "police", NEVER) for i in range(8)], [])
    with pytest.raises(CapacityExceeded, match=r"state\.max_accounts"):
        pay(engine, "W0", "new", 0)
    engine = engine_for(tiny(cap=8))
    txns = [TxnInput(f"b{i}", T0, Party(f"P{i}", "B1", 1, None), Party(f"Q{i}", "B1", 1, None),
                     100, "CNY", 100, 1, False, False, "", "", "") for i in range(5)]
    with pytest.raises(CapacityExceeded, match="10 new accounts"):
        engine.screen(txns)
    assert engine.accounts.live == 0


def test_calls_and_watchlist_updates_make_room_too() -> None:
    """New phone numbers from calls and new watchlist entries evict the coldest of their kind."""
    engine = engine_for(tiny(cap=8))
    for i in range(30):
        engine.report_call(CallInput(f"c{i}", f"+8613{i:09d}", f"+8614{i:09d}", T0 + i * MINUTE,
                                     0, 1))
    assert engine.phones.live <= 8 and engine.stats()["phones_evicted"] == 52
    engine.update_watchlist([WatchEntry(2, f"+8615{i:09d}", "fraud", "telecom", NEVER)
                             for i in range(5)], [])
    assert engine.phones.live <= 8
    assert all(engine.phones.get(f"+8615{i:09d}") is not None for i in range(5))


def test_never_seen_entities_go_first() -> None:
    """An account known only from a lapsed watchlist entry (never in a transaction) is colder
    than any account seen."""
    engine = engine_for(tiny(cap=8))
    engine.update_watchlist([WatchEntry(1, "ghost", "old case", "police", NEVER)], [])
    engine.update_watchlist([], [(1, "ghost")])
    ghost = engine.accounts.get("ghost")
    assert ghost is not None and engine.state.account_seen(ghost)[1] == NO_TIME
    seen: list[Eviction] = []
    engine.on_evict = seen.append
    for i in range(3):
        pay(engine, f"N{i}", f"M{i}", i)
    pay(engine, "N0", "new", 5)
    assert not seen  # 8 live: at the cap
    pay(engine, "N1", "newer", 6)  # room for 1 + 2: the ghost and the two seen longest ago
    assert engine.accounts.get("ghost") is None
    assert [(e.count, e.oldest_seen_ms) for e in seen] == [(3, NO_TIME)]
    assert engine.accounts.get("M0") is None and engine.accounts.get("M1") is None


def _flood(engine: Engine, start: int, n: int, returning: int = 0) -> list[tuple[object, ...]]:
    """``n`` payments, each to a new account, every third from an account seen ``returning``
    payments earlier (it may have been evicted meanwhile); the decisions as comparable tuples."""
    out = []
    for i in range(start, start + n):
        payer = f"R{i - returning}" if returning and i % 3 == 0 else f"R{i}"
        rec = pay(engine, payer, f"S{i % 37}" if i % 5 == 0 else f"S{i}", i, 1_000 + i,
                  phone=f"+86{i % 11:09d}", device=f"d{i % 13}")
        out.append((rec.seq, rec.action, rec.reason_bits, rec.features))
    return out


def test_a_restored_server_evicts_and_decides_as_one_that_never_stopped() -> None:
    """Checkpoint after evictions, restore into a new engine: the same next decisions, the same
    evictions, the same state (free ids included) as the engine that went on."""
    settings = tiny(cap=32, fraction=0.1)
    first = engine_for(settings)
    _flood(first, 0, 200, returning=40)
    assert first.stats()["accounts_evicted"] > 100
    store = MemoryStore()
    save_checkpoint(first, store)
    second = engine_for(settings)
    restore_engine(second, store)
    assert_same_state(first, second)
    assert second.accounts.free_ids().tolist() == first.accounts.free_ids().tolist()
    evicted = [dict(first.evicted), dict(second.evicted)]
    assert _flood(first, 200, 150, returning=30) == _flood(second, 200, 150, returning=30)
    more = [{k: e.evicted[k] - was[k] for k in was} for e, was in zip((first, second), evicted, strict=True)]
    assert more[0] == more[1] and more[0]["accounts"] > 100
    assert_same_state(first, second, timings=False)


def test_free_ids_survive_a_checkpoint_as_empty_names() -> None:
    """A checkpoint holds a free id as the empty name; restored, it is handed out first."""
    settings = tiny(cap=8)
    engine = engine_for(settings)
    for i in range(5):  # the fifth: 2 new at the cap, 4 evicted, 2 ids left free
        pay(engine, f"N{i}", f"M{i}", i)
    snap = engine.snapshot()
    assert "" in snap.accounts and snap.counts()["accounts"] == engine.accounts.live
    free = engine.accounts.free_ids()
    assert free.size and all(snap.accounts[i] == "" for i in free.tolist())
    assert np.all(engine.state.accounts.sc[free, 2] == NO_TIME)  # empty rows
    store = MemoryStore()
    save_checkpoint(engine, store)
    restored = engine_for(settings)
    restore_engine(restored, store)
    assert restored.accounts.free_ids().tolist() == free.tolist()
    pay(restored, "N4", "fresh", 9)
    assert restored.accounts.get("fresh") == free[0]


def test_relationships_past_their_cap_forget_the_least_recently_seen() -> None:
    """Eight accounts all paying each other make 56 relationships, past the cap of 4 per
    account (32): the ones seen longest ago go (a payment on one is first-time again), recent
    ones are kept, and each drop is reported."""
    engine = engine_for(tiny(cap=8, fraction=0.125))
    seen: list[Eviction] = []
    engine.on_evict = seen.append
    minute = 0
    for a in range(8):
        for b in range(8):
            if a != b:
                pay(engine, f"A{a}", f"A{b}", minute)
                minute += 1
    assert engine.memory.max_pairs == 32
    assert engine.state.pair_count <= 32 and engine.stats()["relationships_evicted"] >= 24
    assert sum(e.count for e in seen if e.kind == "relationships") == (
        engine.stats()["relationships_evicted"])
    assert engine.stats()["accounts_evicted"] == 0
    assert "KNOWN_PAYEE" in codes(engine, pay(engine, "A7", "A6", minute))  # seen last: kept
    assert "KNOWN_PAYEE" not in codes(engine, pay(engine, "A0", "A1", minute + 1))  # first: gone
    engine.state.check()


def test_journal_entries_replayed_at_the_cap_make_room_as_the_update_did() -> None:
    """A watchlist change replayed from the journal (at restore, or by a live server catching up
    after it took its store back) makes room at the cap as the update it replays did: the
    restored engine keeps within its caps and ends in the state of the one that made it."""
    settings = tiny(cap=8)
    first = engine_for(settings)
    for i in range(4):
        pay(first, f"N{i}", f"M{i}", i)  # 8 accounts: at the cap
    store = MemoryStore()
    save_checkpoint(first, store)
    first.journal = journal_writer(store, first.clock_ms)
    first.update_watchlist([WatchEntry(1, f"W{i}", "fraud", "police", NEVER) for i in range(3)], [])
    assert first.accounts.live <= 8 and first.stats()["accounts_evicted"] > 0
    second = engine_for(settings)
    report = restore_engine(second, store)
    assert report.journal_applied == 1
    assert second.accounts.live <= 8
    assert second.stats()["accounts_evicted"] == first.stats()["accounts_evicted"]
    assert all(second.accounts.get(f"W{i}") is not None for i in range(3))
    assert_same_state(first, second)
