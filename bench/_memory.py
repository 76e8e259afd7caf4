"""Memory of the live state: bytes per account and per relationship, measured, not computed.

Run in a fresh process (``python -m bench._memory --accounts 1000000``) so that resident-set
growth belongs to the state alone. For ``n`` accounts it measures, step by step:

1. ``FeatureState.create(n, ...)``: array bytes (``nbytes``) and resident growth. Arrays made
   with ``np.zeros`` are not resident until written, so resident < allocated here.
2. ``n`` transactions between random accounts through the real kernel (batches of 100 k): every
   account becomes active (all its pages resident) and each transaction creates a relationship
   (a pair-table entry), so the pair table grows as it does in service.
3. The engine's other per-account memory: interned account ids (a dict entry and a str each) and
   the recent-decision ring (``Engine._recent``), built the way ``Engine`` builds them.

It prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "measure"]


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(accounts: int, seed: int = 1) -> dict[str, Any]:
    """Build and fill the state for ``accounts`` accounts; returns the measured figures."""
    from features.layout import EventCol, Kind, TxnFlag
    from features.state import FeatureState, empty_events
    from screening.core import Interner
    from screening.policy import load_policy

    policy = load_policy()
    n = int(accounts)
    gc.collect()
    rss0 = _rss()
    t0 = time.perf_counter()
    # Pair table sized as Engine would grow it for n relationships (ensure() doubles it).
    state = FeatureState.create(n, 16, 16, 16)
    rss_created = _rss()
    created_s = time.perf_counter() - t0
    acc_bytes = state.bytes_per_account() * state.accounts.capacity

    # Every account active: n transactions, payer i -> a random payee, one relationship each.
    rng = np.random.default_rng(seed)
    ts0 = int(time.time() * 1000) - 3_600_000
    chunk = 100_000
    t1 = time.perf_counter()
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        ev = empty_events(m)
        ev[:, EventCol.KIND] = Kind.TXN
        ev[:, EventCol.TS] = ts0 + (start + np.arange(m)) * 3_600_000 // max(n, 1)
        ev[:, EventCol.A] = start + np.arange(m)
        ev[:, EventCol.B] = (start + np.arange(m) + 1 + rng.integers(0, max(n - 1, 1), m)) % n
        ev[:, EventCol.AMOUNT] = rng.integers(100, 1_000_000, m)
        ev[:, EventCol.FLAGS] = TxnFlag.PAYER_PERSON | TxnFlag.PAYEE_PERSON
        state.ensure(n, 16, 16, m)
        state.process(ev, policy.params_array, policy.txn_table, policy.call_table,
                      keep_features=False)
    filled_s = time.perf_counter() - t1
    del ev
    gc.collect()
    rss_filled = _rss()
    pairs = state.pair_count
    pair_table = state.pairs.nbytes

    # The engine's per-account extras: interned ids and the recent-decision ring.
    t2 = time.perf_counter()
    interner = Interner()
    for i in range(n):
        interner.intern(f"P{i:09d}")
    recent = np.full((n, 8), -1, dtype=np.int64)
    recent_pos = np.zeros(n, dtype=np.int64)
    extras_s = time.perf_counter() - t2
    gc.collect()
    rss_engine = _rss()
    state_nbytes = state.nbytes()
    return {
        "accounts": n,
        "measured": True,
        "feature_bytes_per_account": state.bytes_per_account(),
        "feature_arrays_bytes": acc_bytes,
        "state_nbytes": state_nbytes,
        "rss_after_create_bytes": rss_created - rss0,
        "rss_after_fill_bytes": rss_filled - rss0,
        "rss_per_account_after_fill": round((rss_filled - rss0 - pair_table) / n, 1),
        "pairs": pairs,
        "pair_table_slots": state.pair_capacity,
        "pair_table_bytes": pair_table,
        "bytes_per_pair_slot": state.bytes_per_pair_slot(),
        "bytes_per_pair_live": round(pair_table / max(pairs, 1), 1),
        "interner_and_recent_bytes": rss_engine - rss_filled,
        "engine_extra_bytes_per_account": round((rss_engine - rss_filled) / n, 1),
        "recent_ring_bytes_per_account": (recent.nbytes + recent_pos.nbytes) // n,
        "total_rss_bytes_per_account": round((rss_engine - rss0 - pair_table) / n, 1),
        "seconds": {"create": round(created_s, 2), "fill": round(filled_s, 2),
                    "engine_extras": round(extras_s, 2)},
        "fill_events_per_s": round(n / filled_s) if filled_s > 0 else 0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._memory", description=__doc__)
    parser.add_argument("--accounts", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.accounts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
