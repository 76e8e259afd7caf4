"""The traffic the load generator sends: a pool of transaction templates, stamped per request.

A template is a serialized ``Transaction`` without ``transaction_id`` and ``event_time``; each
request gets a unique id and the wall-clock time of its scheduled send, so every request takes
the full screening path (never the cheap duplicate path) and event times are "now".

Two sources of templates:

* ``builtin_pool``: a realistic mix of many accounts (a Zipf-like few heavy payers, most people
  paying rarely), repeat payees (each person has a few usual counterparties), merchants, phones
  and devices on app payments, memos (a few with investment keywords), cash, cross-border,
  near-threshold amounts and new accounts.
* ``synth_pool``: the events of the scenario generator (``screening.offline.synth.generate``), when
  that module exists. This is the hook: ``pool_for("auto")`` prefers it and falls back to the
  built-in mix; ``frame_pool`` turns any frame of ``screening.offline.schema.EVENT_SCHEMA`` rows
  into templates, so it is testable without the generator.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from screening.v1 import screening_pb2 as pb

__all__ = [
    "MixConfig",
    "TxnPool",
    "builtin_pool",
    "frame_pool",
    "pool_for",
    "stamp",
    "stamp_batch",
    "synth_available",
]

_CHANNELS = {
    "mobile_app": pb.CHANNEL_MOBILE_APP,
    "online_banking": pb.CHANNEL_ONLINE_BANKING,
    "counter": pb.CHANNEL_COUNTER,
    "atm": pb.CHANNEL_ATM,
    "third_party_payment": pb.CHANNEL_THIRD_PARTY_PAYMENT,
    "qr": pb.CHANNEL_QR,
}
_PARTY = {"person": pb.PARTY_TYPE_PERSON, "organisation": pb.PARTY_TYPE_ORGANISATION}
_MEMOS = ("房租", "午饭", "还款", "生活费", "货款", "rent", "dinner", "gift", "工资", "电费")
_INVEST_MEMOS = ("理财收益", "投资款", "分红", "high yield investment")
_BANKS = ("ICBC", "CCB", "ABC", "BOC", "CMB", "BOCOM", "PSBC", "ALIPAY", "WECHAT")


@dataclass(frozen=True, kw_only=True)
class MixConfig:
    """Shape of the built-in mix (shares are of transactions)."""

    seed: int = 20_260_417
    persons: int = 200_000
    merchants: int = 2_000
    pool_size: int = 100_000
    merchant_share: float = 0.40
    repeat_share: float = 0.35  # to one of the payer's few usual payees
    usual_payees: int = 4
    phone_share: float = 0.70
    memo_share: float = 0.25
    investment_memo_share: float = 0.01
    cash_share: float = 0.03
    cross_border_share: float = 0.003
    near_threshold_share: float = 0.005
    new_account_share: float = 0.02


@dataclass(frozen=True)
class TxnPool:
    """Serialized transaction templates (no id, no event time) and where they came from."""

    templates: tuple[bytes, ...]
    source: str
    accounts: int

    def __len__(self) -> int:
        return len(self.templates)

    def mean_bytes(self) -> float:
        return float(np.mean([len(t) for t in self.templates])) if self.templates else 0.0


def builtin_pool(cfg: MixConfig | None = None) -> TxnPool:
    """The built-in realistic mix (used until the scenario generator exists)."""
    cfg = cfg or MixConfig()
    rng = np.random.default_rng(cfg.seed)
    n = cfg.pool_size
    # Heavy-tailed activity: a few persons pay often, most rarely.
    weights = 1.0 / np.arange(1, cfg.persons + 1) ** 0.8
    weights /= weights.sum()
    payer = rng.permutation(cfg.persons)[rng.choice(cfg.persons, size=n, p=weights)]
    kind = rng.random(n)
    to_merchant = kind < cfg.merchant_share
    to_usual = (~to_merchant) & (kind < cfg.merchant_share + cfg.repeat_share)
    merchant = rng.zipf(1.3, size=n) % cfg.merchants
    usual = (payer * 7_919 + rng.integers(0, cfg.usual_payees, size=n) * 104_729 + 1) % cfg.persons
    anyone = rng.integers(0, cfg.persons, size=n)
    payee = np.where(to_usual, usual, anyone)
    payee = np.where(payee == payer, (payee + 1) % cfg.persons, payee)
    # Amounts in fen: log-normal around 200 CNY for persons, 60 CNY at merchants.
    amount = np.where(to_merchant, rng.lognormal(np.log(6_000), 1.0, n),
                      rng.lognormal(np.log(20_000), 1.4, n)).astype(np.int64) + 1
    near = rng.random(n) < cfg.near_threshold_share
    amount = np.where(near, rng.integers(4_500_000, 5_000_000, size=n), amount)
    cash = (~to_merchant) & (rng.random(n) < cfg.cash_share)
    xborder = rng.random(n) < cfg.cross_border_share
    has_phone = rng.random(n) < cfg.phone_share
    memo_draw = rng.random(n)
    memo_pick = rng.integers(0, 1 << 30, size=n)
    new_payer = rng.random(n) < cfg.new_account_share
    opened_days = rng.integers(400, 4_000, size=n)
    channel = rng.choice([pb.CHANNEL_MOBILE_APP, pb.CHANNEL_QR, pb.CHANNEL_THIRD_PARTY_PAYMENT,
                          pb.CHANNEL_ONLINE_BANKING], size=n, p=[0.5, 0.25, 0.15, 0.1])
    today = dt.date.today()
    templates = []
    for i in range(n):
        p = int(payer[i])
        t = pb.Transaction()
        t.payer.account_id = f"P{p:09d}"
        t.payer.institution = _BANKS[p % len(_BANKS)]
        t.payer.party_type = pb.PARTY_TYPE_PERSON
        days = 3 if new_payer[i] else int(opened_days[i])
        t.payer.account_opened_date = (today - dt.timedelta(days=days)).isoformat()
        if to_merchant[i]:
            m = int(merchant[i])
            t.payee.account_id = f"M{m:07d}"
            t.payee.party_type = pb.PARTY_TYPE_ORGANISATION
            t.payee.institution = _BANKS[m % len(_BANKS)]
        else:
            q = int(payee[i])
            t.payee.account_id = f"P{q:09d}"
            t.payee.party_type = pb.PARTY_TYPE_PERSON
            t.payee.institution = _BANKS[q % len(_BANKS)]
        t.amount.minor_units = int(amount[i])
        t.amount.currency = "CNY"
        if cash[i]:
            t.channel = pb.CHANNEL_ATM
            t.cash = True
        else:
            t.channel = int(channel[i])  # type: ignore[assignment]
            if t.channel in (pb.CHANNEL_MOBILE_APP, pb.CHANNEL_QR):
                t.device_id = f"dev-{p * 2_654_435_761 % 2**32:08x}"
        t.cross_border = bool(xborder[i])
        if has_phone[i]:
            t.payer_phone = f"+86138{p % 100_000_000:08d}"
        if memo_draw[i] < cfg.investment_memo_share:
            t.memo = _INVEST_MEMOS[int(memo_pick[i]) % len(_INVEST_MEMOS)]
        elif memo_draw[i] < cfg.memo_share:
            t.memo = _MEMOS[int(memo_pick[i]) % len(_MEMOS)]
        templates.append(t.SerializeToString())
    return TxnPool(tuple(templates), "builtin", cfg.persons + cfg.merchants)


def synth_available() -> bool:
    """True when the scenario generator (screening.offline.synth) is importable."""
    try:
        importlib.import_module("screening.offline.synth")
    except ImportError:
        return False
    return True


def synth_pool(pool_size: int = 100_000, seed: int = 7) -> TxnPool:
    """Templates from the scenario generator's transactions (calls are skipped)."""
    synth: Any = importlib.import_module("screening.offline.synth")
    # Many accounts over the shortest period it allows (7 days, ~1.5 transactions per person-day).
    persons = max(1_000, pool_size // 10)
    result = synth.generate(synth.SynthConfig(seed=seed, n_persons=persons, days=7,
                                              n_organisations=max(50, persons // 10)))
    frame = getattr(result, "events", result)
    pool = frame_pool(frame, limit=pool_size)
    return TxnPool(pool.templates, "synth", pool.accounts)


def frame_pool(frame: Any, limit: int | None = None) -> TxnPool:
    """Templates from a polars frame with the columns of ``screening.offline.schema.EVENT_SCHEMA``."""
    import polars as pl

    txns = frame.filter(pl.col("kind") == "txn").sort("event_time")
    if limit is not None:
        txns = txns.head(limit)
    templates = []
    accounts: set[str] = set()
    for row in txns.iter_rows(named=True):
        t = pb.Transaction()
        for side in ("payer", "payee"):
            party = getattr(t, side)
            party.account_id = row[f"{side}_account"]
            accounts.add(party.account_id)
            party.institution = row[f"{side}_institution"] or ""
            party.party_type = _PARTY.get(row[f"{side}_party_type"] or "", pb.PARTY_TYPE_PERSON)
            opened = row[f"{side}_opened_date"]
            if opened is not None:
                party.account_opened_date = opened.isoformat()
        t.amount.minor_units = int(row["amount_minor"])
        t.amount.currency = row["currency"] or "CNY"
        t.channel = _CHANNELS.get(row["channel"] or "", pb.CHANNEL_MOBILE_APP)
        t.cash = bool(row["cash"])
        t.cross_border = bool(row["cross_border"])
        t.device_id = row["device_id"] or ""
        t.payer_phone = row["payer_phone"] or ""
        t.memo = row["memo"] or ""
        templates.append(t.SerializeToString())
    return TxnPool(tuple(templates), "frame", len(accounts))


def pool_for(source: str, pool_size: int = 100_000) -> TxnPool:
    """``builtin``, ``synth`` or ``auto`` (synth when the generator exists, else builtin)."""
    if source == "synth" or (source == "auto" and synth_available()):
        return synth_pool(pool_size)
    if source not in ("builtin", "auto"):
        raise ValueError(f"unknown mix {source!r}: builtin, synth or auto")
    return builtin_pool(MixConfig(pool_size=pool_size))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _header(transaction_id: str, ms: int) -> bytes:
    """Fields 1 (transaction_id) and 2 (event_time) of a Transaction, in wire format."""
    tid = transaction_id.encode()
    seconds, millis = divmod(ms, 1000)
    ts = b"\x08" + _varint(seconds) + (b"\x10" + _varint(millis * 1_000_000) if millis else b"")
    return b"\x0a" + _varint(len(tid)) + tid + b"\x12" + _varint(len(ts)) + ts


def stamp(templates: Sequence[bytes], first_row: int, ids: Sequence[str],
          times_ms: Sequence[int]) -> list[bytes]:
    """One serialized Transaction per id: template row ``first_row + i`` with its id and time.

    Templates hold fields 3 and up, so the id and time (fields 1 and 2) written in front give
    exactly the bytes ``SerializeToString`` would (fields in number order), at a fraction of the
    cost of building messages.
    """
    n = len(templates)
    return [_header(tid, int(ms)) + templates[(first_row + i) % n]
            for i, (tid, ms) in enumerate(zip(ids, times_ms, strict=True))]


def stamp_batch(templates: Sequence[bytes], first_row: int, ids: Sequence[str],
                times_ms: Sequence[int], columnar: bool = False) -> bytes:
    """One serialized TransactionBatch of ``len(ids)`` stamped transactions (``columnar``:
    asking for the columnar reply, field 2)."""
    return b"".join(b"\x0a" + _varint(len(raw)) + raw
                    for raw in stamp(templates, first_row, ids, times_ms)) + (
        b"\x10\x01" if columnar else b"")
