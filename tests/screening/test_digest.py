"""The state digest the fuzzer compares: equal for equal state, moved by any change, blind to
when the snapshot was taken and to search scratch."""

from __future__ import annotations

from screening.digest import state_digest, state_parts
from tests.store.conftest import busy_engine, busy_txn


def test_the_digest_is_the_same_for_two_snapshots_of_one_state() -> None:
    """Snapshots taken at different times (created_ms, lock time) of the same state agree."""
    engine = busy_engine(n=50)
    a, b = engine.snapshot(), engine.snapshot()
    assert state_digest(a) == state_digest(b)
    assert state_parts(a) == state_parts(b)


def test_a_screened_transaction_changes_the_digest_and_names_the_parts() -> None:
    """A new decision moves the digest; the parts say which arrays and lists moved."""
    engine = busy_engine(n=50)
    before = engine.snapshot()
    engine.screen([busy_txn(1000)])
    after = engine.snapshot()
    assert state_digest(before) != state_digest(after)
    old, new = state_parts(before), state_parts(after)
    changed = {k for k in old if old[k] != new[k]}
    assert "decisions" in changed and "features.accounts.cnt" in changed, sorted(changed)


def test_a_case_export_leaves_the_digest_alone() -> None:
    """Searches advance the graph's search stamp (scratch); the digest leaves it out."""
    engine = busy_engine(n=50)
    before = state_digest(engine.snapshot())
    engine.case_input("account_id", "A1", hops=3, lo_ms=0, hi_ms=2**50, max_nodes=300,
                      now_ms=engine.clock_ms())
    assert state_digest(engine.snapshot()) == before
