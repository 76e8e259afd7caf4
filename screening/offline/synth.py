"""Labelled synthetic event streams: ordinary life in China with planted fraud scenarios.

``generate(SynthConfig(...))`` builds a population of persons and organisations (employers,
merchants, utilities, bank wealth-management desks) and their ordinary transactions and phone
calls, then plants labelled cases of every scenario in :data:`SCENARIOS`; ``write`` stores the
result as Parquet (and CSV on request).

The population lives in UTC+8: salaries, rent and bills fall on a day of the local month, shopping
and calls follow local daily rhythms. Times are stored in UTC with millisecond precision and money
as integer minor units (fen; cents for the few cross-border USD payments).

Everything is drawn from generators seeded by ``SynthConfig.seed`` and built with numpy/polars
column operations (Python loops run per scenario case, never per ordinary event), so one config
always gives the same frames and byte-identical files. Identifiers (accounts, phone numbers,
devices) are random, unique and carry no hint of their role: only the label columns
(``scenario``, ``scenario_id``) and the accounts frame tell which events and accounts belong to a
planted case.

Conventions of the generated stream:

* cash at an ATM or a bank counter: the other party is the terminal's account (``ATM...`` or
  ``CTR...``, party type ``cash_terminal``, at the customer's bank). A withdrawal pays the terminal, a deposit
  is paid by it; ``cash`` is true on both.
* optional values that are absent are null: ``payer_phone`` (unknown to the payer's bank),
  ``device_id`` (counter, ATM and corporate payments), ``memo``, ``payer_opened_date`` of
  terminals.
* event ids are ``"c"``/``"t"`` and 11 digits, numbered in stream order, so the frame sorted by
  ``event_time`` is also sorted by ``event_id`` within equal times (calls first).
* the accounts frame lists every account of a planted case with its role; a fraudster's phone
  number appears there too, with ``account`` the number and role ``fraud_caller``. Population
  persons drawn into a case keep their ordinary life (those events stay unlabelled).

Roles: telecom_fraud ``victim``, ``mule`` (receives from the victim), ``sub_mule`` (further
layers), ``cashout`` (overseas or OTC account the money leaves through), ``fraud_caller``;
illegal_fundraising ``collector``, ``investor``, ``controller``; mule_ring ``ring_member``,
``source``, ``sink``; round_tripping ``cycle_member``; structuring ``structurer``,
``counterparty``; large_value_genuine ``large_payer``, ``large_payee``.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from screening.offline.schema import (
    ACCOUNT_LABEL_SCHEMA,
    CHANNELS,
    EVENT_SCHEMA,
    KIND_CALL,
    KIND_TXN,
    LABEL_COLUMNS,
    NUMBER_CLASSES,
    PARTY_TYPES,
    SCENARIOS,
)

try:  # pyarrow with string views makes the frame assembly several times faster
    import pyarrow as _pa

    _pa.string_view()
except (ImportError, AttributeError):  # pragma: no cover - pyarrow missing or without string views
    _pa = None

__all__ = ["INVEST_MEMOS", "RETURN_MEMOS", "SynthConfig", "SynthResult", "generate", "write"]

Array = npt.NDArray[Any]

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
LOCAL_OFFSET_MS = 8 * HOUR_MS  # China Standard Time, UTC+8
CNY = 100  # fen per yuan
CASH_REPORT_THRESHOLD = 50_000 * CNY

# ------------------------------------------------------------------------------ vocabularies
_BANKS = ("ICBC", "CCB", "ABC", "BOC", "BOCOM", "CMB", "PSBC", "CIB", "CITIC", "SPDB")
_BANK_W = (0.18, 0.16, 0.14, 0.11, 0.07, 0.1, 0.09, 0.05, 0.05, 0.05)
_PAYMENT_INST = ("ALIPAY", "TENPAY", "LAKALA")
_PAYMENT_W = (0.45, 0.45, 0.1)
_OVERSEAS_INST = ("HSBC_HK", "BOC_HK", "DBS_SG", "BDO_PH", "ACLEDA_KH", "CITI_US")
_INSTITUTIONS = _BANKS + _PAYMENT_INST + _OVERSEAS_INST
_I_PAY = len(_BANKS)
_I_OVERSEAS = len(_BANKS) + len(_PAYMENT_INST)

_MEMOS = (
    "工资", "salary", "房租", "rent", "电费", "水费", "燃气费", "话费", "宽带费",
    "生活费", "红包", "转账", "货款", "服务费", "咨询费", "借款", "购房款", "首付", "购车款",
    "工程款", "设备款", "安全账户", "保证金", "解冻费", "贷款保证金",
    "投资款", "理财", "investment", "wealth management", "认购款",
    "收益", "interest", "返利", "利息", "分红",
)  # fmt: skip
_M = {m: i for i, m in enumerate(_MEMOS)}
INVEST_MEMOS = ("投资款", "理财", "investment", "wealth management", "认购款")
RETURN_MEMOS = ("收益", "interest", "返利", "利息", "分红")
_UTILITY_MEMOS = ("电费", "水费", "燃气费", "话费", "宽带费")

_CH = {c: i for i, c in enumerate(CHANNELS)}
_CLS = {c: i for i, c in enumerate(NUMBER_CLASSES)}
_SC = {s: i for i, s in enumerate(SCENARIOS)}
_PERSON, _ORG, _TERMINAL = 0, 1, 2  # indices into PARTY_TYPES
_CNY, _USD = 0, 1
_CURRENCIES = ("CNY", "USD")

_PHONE_PREFIX: dict[int, tuple[str, ...]] = {
    _CLS["mobile"]: (
        "+86133", "+86135", "+86136", "+86137", "+86138", "+86139", "+86150", "+86151",
        "+86152", "+86153", "+86158", "+86159", "+86173", "+86177", "+86180", "+86181",
        "+86182", "+86183", "+86186", "+86187", "+86188", "+86189", "+86198", "+86199",
    ),
    _CLS["landline"]: ("+8610", "+8621", "+8620", "+86755", "+8628", "+86571", "+8627"),
    _CLS["virtual_operator"]: ("+86170", "+86171", "+86162", "+86165", "+86167"),
    _CLS["international"]: ("+639", "+85512", "+9595", "+6011", "+1415", "+4479"),
    _CLS["spoofed_suspect"]: ("+8610", "+8621", "+86400", "+86755"),
}  # fmt: skip

# Relative weight of each local hour of the day (0..23).
_SHOP_HOURS = (1, 0.5, 0.3, 0.2, 0.2, 0.3, 1, 3, 5, 5, 6, 8, 10, 8, 6, 6, 7, 8, 10, 11, 10, 8, 5, 2)
_CALL_HOURS = (0.5, 0.2, 0.1, 0.1, 0.1, 0.3, 1, 3, 6, 8, 9, 9, 8, 7, 7, 8, 8, 8, 9, 10, 10, 8, 5, 2)
_XFER_HOURS = (0.5, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 2, 4, 6, 7, 7, 6, 6, 6, 6, 6, 6, 7, 8, 8, 7, 4, 2)
_BANK_HOURS = (0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
_DAY_HOURS = (0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0)

_NO_DATE = np.iinfo(np.int32).min
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, kw_only=True)
class SynthConfig:
    """What to generate. The defaults give about 100k events in well under a second.

    ``events_target``, when set, overrides ``n_persons`` and scales ``n_organisations`` with it
    (same ratio) so that about that many events come out. ``scenario_rate`` is the fraction of
    population persons drawn into planted cases (as victims, investors, ring members, ...); each
    scenario gets at least one case when the rate is above zero, so tiny populations overshoot.
    Extra accounts a case needs (mules, collectors, sinks, ...) and fraudster phone numbers come on
    top of the population. Rates are per person and mean over persons (each person has their own).
    """

    seed: int = 0
    n_persons: int = 1_000
    n_organisations: int = 100
    days: int = 30
    start: date = date(2025, 3, 3)
    scenario_rate: float = 0.01
    events_target: int | None = None
    # shares of the scenario budget of persons, in SCENARIOS order
    scenario_weights: tuple[float, ...] = (0.35, 0.3, 0.12, 0.08, 0.07, 0.08)
    shopping_per_day: float = 1.2
    calls_per_day: float = 1.4
    service_calls_per_day: float = 0.2
    family_transfers_per_month: float = 2.0
    atm_withdrawals_per_month: float = 0.8
    cash_deposits_per_month: float = 0.1
    wealth_purchases_per_month: float = 0.05
    usd_share: float = 0.003  # share of shopping paid abroad in USD
    employed_share: float = 0.7
    renter_share: float = 0.35

    def __post_init__(self) -> None:
        def bad(name: str, what: str) -> ValueError:
            return ValueError(f"SynthConfig.{name} must be {what}, got {getattr(self, name)!r}")

        if self.seed < 0:
            raise bad("seed", ">= 0")
        if self.n_persons < 50:
            raise bad("n_persons", ">= 50")
        if self.n_organisations < 10:
            raise bad("n_organisations", ">= 10")
        if not 7 <= self.days <= 3660:
            raise bad("days", "in 7..3660")
        if not 0.0 <= self.scenario_rate <= 0.5:
            raise bad("scenario_rate", "in [0, 0.5]")
        if self.events_target is not None and self.events_target < 1_000:
            raise bad("events_target", ">= 1000 or None")
        if len(self.scenario_weights) != len(SCENARIOS) or min(self.scenario_weights) < 0:
            raise bad("scenario_weights", f"{len(SCENARIOS)} non-negative weights")
        if sum(self.scenario_weights) <= 0:
            raise bad("scenario_weights", "not all zero")
        for name in ("usd_share", "employed_share", "renter_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "in [0, 1]")
        for name in (
            "shopping_per_day", "calls_per_day", "service_calls_per_day",
            "family_transfers_per_month", "atm_withdrawals_per_month",
            "cash_deposits_per_month", "wealth_purchases_per_month",
        ):  # fmt: skip
            if not 0.0 <= getattr(self, name) <= 1_000.0:
                raise bad(name, "in [0, 1000]")


@dataclass(frozen=True)
class SynthResult:
    """Generated frames: ``events`` (EVENT_SCHEMA + LABEL_COLUMNS) and ``accounts``.

    ``stats`` counts events, transactions, calls, population persons drawn into cases
    (``scenario_persons``) and cases per scenario (``cases_<scenario>``).
    """

    events: pl.DataFrame
    accounts: pl.DataFrame
    stats: Mapping[str, int] = field(default_factory=dict)


def generate(config: SynthConfig) -> SynthResult:
    """Generate a labelled event stream for ``config`` (deterministic in the config)."""
    n_persons, n_orgs = _population_size(config)
    world = _World(config, n_persons, n_orgs)
    ev = _Events()
    _ordinary(world, ev)
    cases = _plant(world, ev)
    events = _assemble(world, ev)
    accounts = world.label_frame()
    txns = ev.n_txn
    stats = {
        "events": events.height,
        "txns": txns,
        "calls": events.height - txns,
        "persons": n_persons,
        "organisations": n_orgs,
        "scenario_persons": world.scenario_persons(),
    }
    stats.update({f"cases_{s}": cases[s] for s in SCENARIOS})
    return SynthResult(events=events, accounts=accounts, stats=stats)


def write(result: SynthResult, out_dir: str | os.PathLike[str], csv: bool = False) -> list[Path]:
    """Write ``events.parquet`` and ``accounts.parquet`` (and ``.csv`` twins) into ``out_dir``.

    Each file is written under a temporary name in ``out_dir`` and moved into place with
    ``os.replace``, so a reader never sees a half-written file. Returns the paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (("events", result.events), ("accounts", result.accounts)):
        written.append(_atomic(out / f"{name}.parquet", frame.write_parquet))
        if csv:
            to_csv = functools.partial(
                frame.write_csv, datetime_format="%Y-%m-%dT%H:%M:%S%.3fZ", date_format="%Y-%m-%d"
            )
            written.append(_atomic(out / f"{name}.csv", to_csv))
    return written


# ============================================================================ private helpers


def _atomic(path: Path, write_to: Callable[[Path], object]) -> Path:
    """Write ``path`` through a temporary file in the same folder, then move it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write_to(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _population_size(cfg: SynthConfig) -> tuple[int, int]:
    if cfg.events_target is None:
        return cfg.n_persons, cfg.n_organisations
    month = 30.44
    per_person_day = (
        cfg.shopping_per_day
        + cfg.calls_per_day
        + cfg.service_calls_per_day
        + (
            cfg.family_transfers_per_month
            + cfg.atm_withdrawals_per_month
            + cfg.cash_deposits_per_month
            + 0.3 * cfg.wealth_purchases_per_month
            + cfg.employed_share
            + cfg.renter_share
            + 2.0  # bills
        )
        / month
        + 0.6 * cfg.n_organisations / cfg.n_persons  # merchant settlements
    )
    n_persons = max(50, round(cfg.events_target / (per_person_day * cfg.days)))
    n_orgs = max(10, round(n_persons * cfg.n_organisations / cfg.n_persons))
    return n_persons, n_orgs


def _rng(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per component, so components do not shift each other."""
    return np.random.default_rng([seed, *stream.encode()])


def _cdf(weights: tuple[float, ...]) -> Array:
    w = np.asarray(weights, dtype=np.float64)
    c = np.cumsum(w / w.sum())
    c[-1] = 1.0
    return c


def _draw(rng: np.random.Generator, cdf: Array, n: int) -> Array:
    """``n`` indices drawn with the probabilities whose cumulative sum is ``cdf``.

    Large draws go through an inverse-cdf table of 2**16 (short distributions) or 2**20 entries,
    each probability rounded to a multiple of the table step: several times faster than a search.
    """
    if n >= 50_000 and cdf.size <= 1 << 12:
        bits = 16 if cdf.size <= 256 else 20
        grid = (np.arange(1 << bits) + 0.5) / (1 << bits)
        table = np.searchsorted(cdf, grid, side="right").astype(np.int64)
        return table[rng.integers(0, 1 << bits, n, dtype=np.uint32)]
    return np.searchsorted(cdf, rng.random(n), side="right").astype(np.int64)


def _unique_ints(rng: np.random.Generator, n: int, high: int) -> Array:
    """``n`` distinct random integers in ``[0, high)`` (``n`` well below ``high``)."""
    if n > high // 4:
        raise ValueError(f"identifier space too small: {n} of {high}")
    out = rng.integers(0, high, n)
    while True:
        _, first = np.unique(out, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            return out
        out[dup] = rng.integers(0, high, int(dup.sum()))


def _digits(prefixes: pl.Series, numbers: Array, width: int) -> pl.Series:
    """``prefix + zero-padded number`` per row."""
    body = pl.Series(numbers, dtype=pl.Int64).cast(pl.String).str.zfill(width)
    return prefixes + body


def _usd_cents(fen: Any) -> Any:
    """CNY fen to USD cents at 7.2 CNY per USD, at least one cent."""
    return np.maximum(1, np.asarray(fen, dtype=np.int64) * 10 // 72)


def _nullable(table: list[Any] | tuple[Any, ...], dtype: pl.DataType) -> pl.Series:
    """A lookup table whose index 0 is null, so ``gather(code + 1)`` maps code -1 to null."""
    return pl.Series([None, *table], dtype=dtype)


def _with_null(values: pl.Series) -> pl.Series:
    """``values`` behind a leading null, in one chunk (gathers from chunked series are slow)."""
    return pl.concat([pl.Series([None], dtype=values.dtype), values], rechunk=True)


def _pick(rng: np.random.Generator, options: tuple[Any, ...], probs: tuple[float, ...]) -> Any:
    """One of ``options`` with (relative) probabilities ``probs``."""
    u = rng.random() * sum(probs)
    for option, p in zip(options, probs, strict=True):
        u -= p
        if u < 0:
            return option
    return options[-1]


# ---------------------------------------------------------------------------- entity tables


class _Accounts:
    """Growing account table: id format, institution, party type, opened date (epoch days)."""

    PERSON, ORG, OVERSEAS, ATM, COUNTER = range(5)
    _PREFIX = ("62", "31", "OS", "ATM", "CTR")
    _WIDTH = (14, 14, 12, 9, 9)

    def __init__(self) -> None:
        self._fmt: list[Array] = []
        self._inst: list[Array] = []
        self._opened: list[Array] = []
        self.n = 0

    def add(self, fmt: int, inst: Array | int, opened: Array | int, n: int = 1) -> Array:
        """Append ``n`` accounts (``inst``/``opened`` broadcast); return their indices."""
        self._fmt.append(np.full(n, fmt, dtype=np.int8))
        self._inst.append(np.broadcast_to(np.asarray(inst, dtype=np.int8), n).copy())
        self._opened.append(np.broadcast_to(np.asarray(opened, dtype=np.int32), n).copy())
        idx = np.arange(self.n, self.n + n, dtype=np.int64)
        self.n += n
        return idx

    def finalize(self, rng: np.random.Generator) -> None:
        """Freeze the arrays and draw the identifiers (random, unique per format)."""
        self.fmt = np.concatenate(self._fmt)
        self.inst = np.concatenate(self._inst)
        terminal = (self.fmt == self.ATM) | (self.fmt == self.COUNTER)
        self.party = np.where(self.fmt == self.PERSON, _PERSON,
                              np.where(terminal, _TERMINAL, _ORG)).astype(np.int8)
        opened = np.concatenate(self._opened)
        order = np.argsort(self.fmt, kind="stable")
        parts = []
        for f in range(len(self._PREFIX)):
            k = int(np.count_nonzero(self.fmt == f))
            numbers = _unique_ints(rng, k, 10 ** self._WIDTH[f])
            prefix = pl.Series([self._PREFIX[f]], dtype=pl.String).gather(np.zeros(k, np.int64))
            parts.append(_digits(prefix, numbers, self._WIDTH[f]))
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        ids = pl.concat(parts).gather(inverse)
        self.ids = _with_null(ids)
        days = pl.Series(opened.astype(np.int32))
        dates = pl.select(pl.when(days != _NO_DATE).then(days).cast(pl.Date)).to_series()
        self.opened_dates = _with_null(dates)


class _Phones:
    """Growing phone-number table: number class, and random unique numbers at the end."""

    def __init__(self) -> None:
        self._cls: list[Array] = []
        self.n = 0

    def add(self, cls: Array | int, n: int = 1) -> Array:
        self._cls.append(np.broadcast_to(np.asarray(cls, dtype=np.int8), n).copy())
        idx = np.arange(self.n, self.n + n, dtype=np.int64)
        self.n += n
        return idx

    def finalize(self, rng: np.random.Generator) -> None:
        self.cls = np.concatenate(self._cls)
        prefixes = [p for c in range(len(NUMBER_CLASSES)) for p in _PHONE_PREFIX[c]]
        first = np.cumsum([0] + [len(_PHONE_PREFIX[c]) for c in range(len(NUMBER_CLASSES))])
        count = np.diff(first)
        pick = first[self.cls] + (rng.random(self.n) * count[self.cls]).astype(np.int64)
        body = _unique_ints(rng, self.n, 10**8)
        numbers = _digits(pl.Series(prefixes, dtype=pl.String).gather(pick), body, 8)
        self.ids = _with_null(numbers)


class _Devices:
    def __init__(self) -> None:
        self.n = 0

    def add(self, n: int = 1) -> Array:
        idx = np.arange(self.n, self.n + n, dtype=np.int64)
        self.n += n
        return idx

    def finalize(self, rng: np.random.Generator) -> None:
        prefix = pl.Series(["D"], dtype=pl.String).gather(np.zeros(self.n, np.int64))
        ids = _digits(prefix, _unique_ints(rng, self.n, 10**11), 11)
        self.ids = _with_null(ids)


# ---------------------------------------------------------------------------- event builder


class _Events:
    """Events as packed int64 columns, appended part by part (scalars broadcast).

    Per row: ``ts`` (epoch ms), ``kind`` (1 transaction, 0 call), ``ab`` = payer (caller) << 32 |
    payee (callee), ``dp`` = device << 32 | payer phone, ``value`` = amount (duration) and
    ``codes``, the bit fields ``_F_*``. Indices and codes are stored plus one: 0 means null.
    """

    COLUMNS = ("ts", "kind", "ab", "dp", "value", "codes")

    def __init__(self) -> None:
        self.parts: dict[str, list[Array]] = {k: [] for k in self.COLUMNS}
        self.n_txn = 0

    def txn(
        self, ts: Any, payer: Any, payee: Any, amount: Any, chan: Any, *, cur: Any = _CNY,
        cash: Any = False, xb: Any = False, dev: Any = -1, phone: Any = -1, memo: Any = -1,
        scen: int = -1, sid: int = -1,
    ) -> None:  # fmt: skip
        n = np.asarray(ts).size
        codes = (
            (_col(cur, n) + 1) << _F_CUR[0]
            | (_col(chan, n) + 1) << _F_CHAN[0]
            | (_col(cash, n) + 1) << _F_CASH[0]
            | (_col(xb, n) + 1) << _F_XB[0]
            | (_col(memo, n) + 1) << _F_MEMO[0]
            | (scen + 1) << _F_SCEN[0]
            | (sid + 1) << _F_SID[0]
        )
        ab = (_col(payer, n) + 1) << 32 | (_col(payee, n) + 1)
        dp = (_col(dev, n) + 1) << 32 | (_col(phone, n) + 1)
        self._append(n, ts, 1, ab, dp, amount, codes)
        self.n_txn += n

    def call(self, ts: Any, caller: Any, callee: Any, dur: Any, *, scen: int = -1, sid: int = -1) -> None:
        n = np.asarray(ts).size
        ab = (_col(caller, n) + 1) << 32 | (_col(callee, n) + 1)
        codes = (scen + 1) << _F_SCEN[0] | (sid + 1) << _F_SID[0]
        self._append(n, ts, 0, ab, 0, dur, codes)

    def _append(self, n: int, *values: Any) -> None:
        for name, v in zip(self.COLUMNS, values, strict=True):
            self.parts[name].append(np.ascontiguousarray(np.broadcast_to(_col(v, n), n)))

    def columns(self) -> list[Array]:
        return [
            np.concatenate(self.parts[k]) if self.parts[k] else np.zeros(0, np.int64) for k in self.COLUMNS
        ]


def _col(values: Any, n: int) -> Array:
    """``values`` as int64: a scalar stays 0-d (numpy broadcasts it), an array must have ``n``."""
    a = np.asarray(values, dtype=np.int64)
    if a.ndim and a.size != n:
        raise ValueError(f"{a.size} values for {n} events")
    return a.reshape(()) if a.ndim == 0 else a.reshape(n)


# ---------------------------------------------------------------------------- the population


class _World:
    """The population, its accounts/phones/devices, the calendar and the account labels."""

    def __init__(self, cfg: SynthConfig, n_persons: int, n_orgs: int) -> None:
        self.cfg = cfg
        self.days = cfg.days
        self.n_p = n = n_persons
        self.start_day = (cfg.start - _EPOCH).days
        self.t0 = self.start_day * DAY_MS - LOCAL_OFFSET_MS  # local midnight of the first day
        self.t_end = self.t0 + cfg.days * DAY_MS
        self.acc = _Accounts()
        self.ph = _Phones()
        self.dev = _Devices()
        self._labels: list[tuple[bool, Array, int, int, str]] = []
        self._sid = 0
        rng = _rng(cfg.seed, "world")
        bank_cdf = _cdf(_BANK_W)

        # persons: one bank account, a phone, one or two devices (persons come first: 0..n-1)
        self.inst_p = _draw(rng, bank_cdf, n)
        age = np.where(rng.random(n) < 0.03, rng.integers(1, 90, n), rng.integers(180, 15 * 365, n))
        self.acc_p = self.acc.add(_Accounts.PERSON, self.inst_p, self.start_day - age, n)
        cls = np.array([_CLS[c] for c in ("mobile", "landline", "virtual_operator", "international")])
        self.phone = self.ph.add(cls[_draw(rng, _cdf((0.94, 0.015, 0.04, 0.005)), n)], n)
        self.dev1 = self.dev.add(n)
        two = rng.random(n) < 0.2
        self.dev2 = np.full(n, -1, dtype=np.int64)
        self.dev2[two] = self.dev.add(int(two.sum()))

        # organisations: utilities, employers, merchants (collection + settlement accounts)
        n_util = int(np.clip(n_orgs // 20, 3, 12))
        n_emp = max(1, int((n_orgs - n_util) * 0.35))
        n_mer = max(1, n_orgs - n_util - n_emp)

        def org_age(k: int) -> Array:
            return rng.integers(365, 20 * 365, k)

        self.util_acc = self.acc.add(
            _Accounts.ORG, _draw(rng, bank_cdf, n_util), self.start_day - org_age(n_util), n_util
        )
        self.util_memo = np.array([_M[_UTILITY_MEMOS[i % 5]] for i in range(n_util)])
        self.emp_acc = self.acc.add(
            _Accounts.ORG, _draw(rng, bank_cdf, n_emp), self.start_day - org_age(n_emp), n_emp
        )
        self.emp_phone = self.ph.add(_CLS["landline"], n_emp)
        self.salary_dom = rng.choice(np.array([1, 5, 8, 10, 15, 20, 25, 28]), n_emp)
        self.mer_col = self.acc.add(
            _Accounts.ORG,
            _I_PAY + _draw(rng, _cdf(_PAYMENT_W), n_mer),
            self.start_day - rng.integers(30, 8 * 365, n_mer),
            n_mer,
        )
        self.mer_bank = self.acc.add(
            _Accounts.ORG, _draw(rng, bank_cdf, n_mer), self.start_day - org_age(n_mer), n_mer
        )
        self.mer_phone = self.ph.add(
            np.where(rng.random(n_mer) < 0.6, _CLS["landline"], _CLS["mobile"]), n_mer
        )
        self.fee_bp = rng.integers(30, 61, n_mer)
        popularity = 1.0 / np.arange(1, n_mer + 1) ** 0.9
        self.mer_cdf = _cdf(tuple(rng.permutation(popularity)))
        n_banks = len(_BANKS)
        self.wealth_acc = self.acc.add(
            _Accounts.ORG, np.arange(n_banks), self.start_day - org_age(n_banks), n_banks
        )
        n_os = int(np.clip(n_orgs // 20, 3, 20))
        self.os_acc = self.acc.add(
            _Accounts.OVERSEAS,
            _I_OVERSEAS + rng.integers(0, len(_OVERSEAS_INST), n_os),
            _NO_DATE,
            n_os,
        )
        # cash terminals per bank: ATMs and branch counters (no opened date)
        self.n_term = int(np.clip(n // 400, 2, 200))
        term_inst = np.repeat(np.arange(n_banks), self.n_term)
        self.atm = self.acc.add(_Accounts.ATM, term_inst, _NO_DATE, term_inst.size).reshape(
            n_banks, self.n_term
        )
        self.ctr = self.acc.add(_Accounts.COUNTER, term_inst, _NO_DATE, term_inst.size).reshape(
            n_banks, self.n_term
        )
        # service numbers (couriers' privacy numbers, customer service lines)
        n_svc = int(np.clip(n // 100, 5, 2000))
        self.svc_phone = self.ph.add(
            np.where(rng.random(n_svc) < 0.6, _CLS["virtual_operator"], _CLS["landline"]), n_svc
        )

        # who is related to whom, and how active each person is
        emp_cdf = _cdf(tuple(1.0 / np.arange(1, n_emp + 1) ** 1.1))
        self.employer = np.where(rng.random(n) < cfg.employed_share, _draw(rng, emp_cdf, n), -1).astype(
            np.int64
        )
        salary = np.exp(rng.normal(math.log(7_000), 0.5, n)).clip(2_500, 80_000)
        self.salary = (salary * CNY).astype(np.int64)
        landlords = rng.choice(n, max(1, n // 20), replace=False)
        self.landlord = np.where(
            rng.random(n) < cfg.renter_share, landlords[rng.integers(0, landlords.size, n)], -1
        )
        self.landlord[self.landlord == np.arange(n)] = -1
        self.rent = rng.integers(15, 81, n) * 100 * CNY
        self.rent_dom = rng.integers(1, 11, n)
        self.n_family = rng.integers(1, 4, n)
        self.family = self._others(rng, 3)
        self.contacts = self._others(rng, 6)
        self.fav = _draw(rng, self.mer_cdf, 3 * n).reshape(n, 3)
        self.n_bills = rng.integers(1, 4, n)
        self.bill_util = rng.integers(0, n_util, (n, 3))
        self.bill_dom = rng.integers(1, 29, (n, 3))
        self.bill_base = np.exp(rng.normal(math.log(120), 0.6, (n, 3))) * CNY
        self.wealthy = rng.random(n) < 0.3
        self.shop_rate = cfg.shopping_per_day * rng.lognormal(-0.18, 0.6, n)
        self.call_rate = cfg.calls_per_day * rng.lognormal(-0.18, 0.6, n)
        self.spend = rng.lognormal(0.0, 0.4, n)
        self.cash_factor = rng.lognormal(-0.32, 0.8, n)

    def _others(self, rng: np.random.Generator, k: int) -> Array:
        """``k`` other persons per person (never the person themself)."""
        n = self.n_p
        out = rng.integers(0, n - 1, (n, k))
        return out + (out >= np.arange(n)[:, None])

    # -------------------------------------------------------------- calendar
    def times(self, rng: np.random.Generator, day: Array, hours: Array) -> Array:
        """Epoch ms of events on window day ``day`` at local hours drawn from cdf ``hours``."""
        n = day.size
        hour = _draw(rng, hours, n)
        ts: Array = self.t0 + day * DAY_MS + hour * HOUR_MS + rng.integers(0, HOUR_MS, n)
        return ts

    def monthly(self, dom: Array) -> tuple[Array, Array]:
        """(entity, window day) for every window day whose day of month is ``dom[entity]``."""
        dates = np.datetime64(self.cfg.start, "D") + np.arange(self.days)
        dom_w = (dates - dates.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
        cnt = np.bincount(dom_w, minlength=32)
        by_dom = np.argsort(dom_w, kind="stable")
        first = np.concatenate([[0], np.cumsum(cnt)[:-1]])
        k = cnt[dom]
        ent = np.repeat(np.arange(dom.size), k)
        j = np.arange(ent.size) - np.repeat(np.cumsum(k) - k, k)
        return ent, by_dom[first[dom[ent]] + j]

    def day_of(self, ts: int) -> int:
        return (ts - self.t0) // DAY_MS

    # -------------------------------------------------------------- scenario accounts
    def next_sid(self) -> int:
        self._sid += 1
        return self._sid - 1

    def new_person(self, rng: np.random.Generator, opened_day: int) -> tuple[int, int, int]:
        """A new person account outside the population: (account, phone, bank)."""
        inst = int(_draw(rng, _cdf(_BANK_W), 1)[0])
        acc = int(self.acc.add(_Accounts.PERSON, inst, opened_day)[0])
        cls = _CLS["mobile"] if rng.random() < 0.75 else _CLS["virtual_operator"]
        return acc, int(self.ph.add(cls)[0]), inst

    def new_org(self, rng: np.random.Generator, opened_day: int, payment: bool = False) -> int:
        if payment:
            inst = _I_PAY + int(_draw(rng, _cdf(_PAYMENT_W), 1)[0])
        else:
            inst = int(_draw(rng, _cdf(_BANK_W), 1)[0])
        return int(self.acc.add(_Accounts.ORG, inst, opened_day)[0])

    def label(self, acc: Any, scen: int, sid: int, role: str, phone: bool = False) -> None:
        self._labels.append((phone, np.atleast_1d(np.asarray(acc, np.int64)), scen, sid, role))

    def scenario_persons(self) -> int:
        labelled = [idx for phone, idx, *_ in self._labels if not phone]
        if not labelled:
            return 0
        idx = np.unique(np.concatenate(labelled))
        return int(np.count_nonzero(idx < self.n_p))

    def label_frame(self) -> pl.DataFrame:
        if not self._labels:
            return pl.DataFrame(schema=ACCOUNT_LABEL_SCHEMA)
        sizes = [x[1].size for x in self._labels]
        idx = np.concatenate([x[1] for x in self._labels]) + 1
        phone = np.repeat([x[0] for x in self._labels], sizes)
        roles = sorted({x[4] for x in self._labels})
        frame = pl.DataFrame(
            {
                "account": pl.select(
                    pl.when(pl.Series(phone))
                    .then(self.ph.ids.gather(np.where(phone, idx, 0)))
                    .otherwise(self.acc.ids.gather(np.where(phone, 0, idx)))
                ).to_series(),
                "scenario": pl.Series(SCENARIOS).gather(np.repeat([x[2] for x in self._labels], sizes)),
                "scenario_id": np.repeat([x[3] for x in self._labels], sizes).astype(np.int64),
                "role": pl.Series(roles).gather(np.repeat([roles.index(x[4]) for x in self._labels], sizes)),
            },
            schema=ACCOUNT_LABEL_SCHEMA,
        )
        return frame.unique(maintain_order=True).sort("scenario_id", "role", "account")


_SHOP = _cdf(_SHOP_HOURS)
_CALLS = _cdf(_CALL_HOURS)
_XFER = _cdf(_XFER_HOURS)
_BANK = _cdf(_BANK_HOURS)
_DAYTIME = _cdf(_DAY_HOURS)
_SALARY = _cdf(tuple(1.0 if h in (9, 10) else 0.0 for h in range(24)))
_NIGHT = _cdf(tuple(1.0 if h in (1, 2) else 0.0 for h in range(24)))


# ---------------------------------------------------------------------------- ordinary life


def _ordinary(w: _World, ev: _Events) -> None:
    _shopping(w, ev, _rng(w.cfg.seed, "shopping"))
    _monthly_payments(w, ev, _rng(w.cfg.seed, "monthly"))
    _transfers_and_cash(w, ev, _rng(w.cfg.seed, "transfers"))
    _calls(w, ev, _rng(w.cfg.seed, "calls"))


def _codes(rng: np.random.Generator, options: tuple[int, ...], probs: tuple[float, ...], n: int) -> Array:
    return np.asarray(options, dtype=np.int64)[_draw(rng, _cdf(probs), n)]


def _person_cols(w: _World, rng: np.random.Generator, p: Array, chan: Array) -> tuple[Array, Array]:
    """Device (null at counter/ATM; sometimes the second device) and payer phone (95% known)."""
    n = p.size
    dev = np.where((w.dev2[p] >= 0) & (rng.random(n) < 0.3), w.dev2[p], w.dev1[p])
    dev = np.where((chan == _CH["counter"]) | (chan == _CH["atm"]), -1, dev)
    phone = np.where(rng.random(n) < 0.95, w.phone[p], -1)
    return dev, phone


def _shopping(w: _World, ev: _Events, rng: np.random.Generator) -> None:
    p = np.repeat(np.arange(w.n_p), rng.poisson(w.shop_rate * w.days))
    n = p.size
    day = rng.integers(0, w.days, n)
    ts = w.times(rng, day, _SHOP)
    merchant = np.where(rng.random(n) < 0.5, w.fav[p, rng.integers(0, 3, n)], _draw(rng, w.mer_cdf, n))
    amount = np.exp(rng.normal(math.log(40), 1.0, n)) * w.spend[p]
    amount = (amount.clip(1, 20_000) * CNY).astype(np.int64)
    abroad = rng.random(n) < w.cfg.usd_share
    chan = np.where(
        abroad,
        _codes(rng, (_CH["third_party_payment"], _CH["online_banking"]), (0.6, 0.4), n),
        _codes(rng, (_CH["qr"], _CH["third_party_payment"], _CH["mobile_app"]), (0.45, 0.35, 0.2), n),
    )
    payee = np.where(abroad, w.os_acc[rng.integers(0, w.os_acc.size, n)], w.mer_col[merchant])
    dev, phone = _person_cols(w, rng, p, chan)
    ev.txn(
        ts, w.acc_p[p], payee, np.where(abroad, _usd_cents(amount), amount), chan,
        cur=np.where(abroad, _USD, _CNY), xb=abroad, dev=dev, phone=phone,
    )  # fmt: skip

    # merchants settle each local day's takings (less their fee) to their bank account, T+1
    home = ~abroad
    sales = np.bincount(
        merchant[home] * w.days + day[home],
        weights=amount[home].astype(np.float64),
        minlength=w.mer_col.size * w.days,
    )
    sales = np.rint(sales).astype(np.int64).reshape(w.mer_col.size, w.days)
    m, d = np.nonzero(sales[:, :-1] > 0)
    gross = sales[m, d]
    net = gross - gross * w.fee_bp[m] // 10_000
    keep = net > 0
    m, d, net = m[keep], d[keep], net[keep]
    ev.txn(
        w.times(rng, d + 1, _NIGHT), w.mer_col[m], w.mer_bank[m], net, _CH["online_banking"],
        phone=np.where(rng.random(m.size) < 0.5, w.mer_phone[m], -1),
    )  # fmt: skip


def _monthly_payments(w: _World, ev: _Events, rng: np.random.Generator) -> None:
    # salary from the employer on its pay day, 09:00-11:00 local
    emp = np.flatnonzero(w.employer >= 0)
    e, day = w.monthly(w.salary_dom[w.employer[emp]])
    p = emp[e]
    n = p.size
    amount = (w.salary[p] * rng.normal(1.0, 0.03, n).clip(0.8, 1.5)).astype(np.int64)
    ev.txn(
        w.times(rng, day, _SALARY), w.emp_acc[w.employer[p]], w.acc_p[p], np.maximum(amount, CNY),
        _CH["online_banking"],
        phone=np.where(rng.random(n) < 0.3, w.emp_phone[w.employer[p]], -1),
        memo=_codes(rng, (_M["工资"], _M["salary"], -1), (0.8, 0.05, 0.15), n),
    )  # fmt: skip

    # rent to a landlord (a person)
    renters = np.flatnonzero(w.landlord >= 0)
    e, day = w.monthly(w.rent_dom[renters])
    p = renters[e]
    n = p.size
    chan = _codes(rng, (_CH["mobile_app"], _CH["online_banking"]), (0.8, 0.2), n)
    dev, phone = _person_cols(w, rng, p, chan)
    ev.txn(
        w.times(rng, day, _XFER), w.acc_p[p], w.acc_p[w.landlord[p]], w.rent[p], chan,
        dev=dev, phone=phone, memo=_codes(rng, (_M["房租"], _M["rent"], -1), (0.6, 0.05, 0.35), n),
    )  # fmt: skip

    # utility and phone bills
    owner = np.repeat(np.arange(w.n_p), w.n_bills)
    slot = np.arange(owner.size) - np.repeat(np.cumsum(w.n_bills) - w.n_bills, w.n_bills)
    e, day = w.monthly(w.bill_dom[owner, slot])
    p, util = owner[e], w.bill_util[owner[e], slot[e]]
    n = p.size
    amount = (w.bill_base[owner[e], slot[e]] * rng.lognormal(0.0, 0.3, n)).astype(np.int64)
    chan = _codes(rng, (_CH["third_party_payment"], _CH["mobile_app"]), (0.6, 0.4), n)
    dev, phone = _person_cols(w, rng, p, chan)
    ev.txn(
        w.times(rng, day, _XFER), w.acc_p[p], w.util_acc[util], np.maximum(amount, CNY), chan,
        dev=dev, phone=phone, memo=w.util_memo[util],
    )  # fmt: skip


def _transfers_and_cash(w: _World, ev: _Events, rng: np.random.Generator) -> None:
    cfg, months = w.cfg, w.days / 30.44
    # transfers to family
    p = np.repeat(np.arange(w.n_p), rng.poisson(cfg.family_transfers_per_month * months, w.n_p))
    n = p.size
    to = w.family[p, (rng.random(n) * w.n_family[p]).astype(np.int64)]
    amount = np.exp(rng.normal(math.log(800), 0.9, n)).clip(1, 100_000)
    amount = np.where(rng.random(n) < 0.6, np.maximum(100, np.round(amount, -2)), amount)
    chan = _codes(rng, (_CH["mobile_app"], _CH["online_banking"], _CH["counter"]), (0.75, 0.2, 0.05), n)
    dev, phone = _person_cols(w, rng, p, chan)
    memo = _codes(rng, (_M["生活费"], _M["红包"], _M["转账"], -1), (0.25, 0.1, 0.1, 0.55), n)
    ev.txn(
        w.times(rng, rng.integers(0, w.days, n), _XFER), w.acc_p[p], w.acc_p[to],
        (amount * CNY).astype(np.int64), chan, dev=dev, phone=phone, memo=memo,
    )  # fmt: skip

    # ATM withdrawals at the person's bank
    lam = cfg.atm_withdrawals_per_month * months * w.cash_factor
    p = np.repeat(np.arange(w.n_p), rng.poisson(lam))
    n = p.size
    notes = (100, 200, 300, 500, 800, 1000, 1500, 2000, 3000)
    amount = _codes(rng, notes, (3, 3, 2, 4, 1, 3, 1, 1, 1), n) * CNY
    ev.txn(
        w.times(rng, rng.integers(0, w.days, n), _DAYTIME), w.acc_p[p],
        w.atm[w.inst_p[p], rng.integers(0, w.n_term, n)], amount, _CH["atm"], cash=True,
        phone=np.where(rng.random(n) < 0.95, w.phone[p], -1),
    )  # fmt: skip

    # cash deposits at a branch counter
    p = np.repeat(np.arange(w.n_p), rng.poisson(cfg.cash_deposits_per_month * months, w.n_p))
    n = p.size
    ev.txn(
        w.times(rng, rng.integers(0, w.days, n), _BANK),
        w.ctr[w.inst_p[p], rng.integers(0, w.n_term, n)], w.acc_p[p],
        rng.integers(10, 301, n) * 100 * CNY, _CH["counter"], cash=True,
    )  # fmt: skip

    # bank wealth-management purchases (genuine "理财" memos)
    lam = np.where(w.wealthy, cfg.wealth_purchases_per_month * months / 0.3, 0.0)
    p = np.repeat(np.arange(w.n_p), rng.poisson(lam))
    n = p.size
    chan = _codes(rng, (_CH["mobile_app"], _CH["online_banking"]), (0.7, 0.3), n)
    dev, phone = _person_cols(w, rng, p, chan)
    ev.txn(
        w.times(rng, rng.integers(0, w.days, n), _XFER), w.acc_p[p], w.wealth_acc[w.inst_p[p]],
        rng.integers(10, 201, n) * 1000 * CNY, chan, dev=dev, phone=phone,
        memo=_codes(rng, (_M["理财"], -1), (0.7, 0.3), n),
    )  # fmt: skip


def _calls(w: _World, ev: _Events, rng: np.random.Generator) -> None:
    # calls between persons: family, contacts, sometimes anyone
    p = np.repeat(np.arange(w.n_p), rng.poisson(w.call_rate * w.days))
    n = p.size
    r = rng.random(n)
    family = w.family[p, (rng.random(n) * w.n_family[p]).astype(np.int64)]
    contact = w.contacts[p, rng.integers(0, w.contacts.shape[1], n)]
    anyone = rng.integers(0, w.n_p, n)
    to = np.where(r < 0.45, family, np.where(r < 0.85, contact, anyone))
    to = np.where(to == p, (p + 1) % w.n_p, to)
    duration = np.exp(rng.normal(math.log(100), 1.1, n)).clip(1, 7_200).astype(np.int64)
    ev.call(w.times(rng, rng.integers(0, w.days, n), _CALLS), w.phone[p], w.phone[to], duration)

    # couriers and customer service calling persons: short calls, often virtual numbers
    p = np.repeat(np.arange(w.n_p), rng.poisson(w.cfg.service_calls_per_day * w.days, w.n_p))
    n = p.size
    duration = np.exp(rng.normal(math.log(40), 0.7, n)).clip(3, 900).astype(np.int64)
    ev.call(
        w.times(rng, rng.integers(0, w.days, n), _DAYTIME),
        w.svc_phone[rng.integers(0, w.svc_phone.size, n)], w.phone[p], duration,
    )  # fmt: skip


# ---------------------------------------------------------------------------- planted scenarios

_MIN_PERSONS = (1, 8, 3, 3, 1, 1)  # population persons a case needs, per scenario
_MEAN_PERSONS = (1, 20, 5, 4, 1, 1)


def _plant(w: _World, ev: _Events) -> dict[str, int]:
    """Draw the scenario budget of persons, split it into cases and plant them."""
    cfg = w.cfg
    cases = {s: 0 for s in SCENARIOS}
    budget = round(cfg.scenario_rate * w.n_p)
    if budget == 0:
        return cases
    weights = np.asarray(cfg.scenario_weights, dtype=np.float64)
    weights = weights / weights.sum()
    raw = weights * budget
    alloc = np.floor(raw).astype(np.int64)
    alloc[np.argsort(alloc - raw, kind="stable")[: budget - int(alloc.sum())]] += 1
    alloc = np.where(weights > 0, np.maximum(alloc, _MIN_PERSONS), 0)
    if alloc.sum() > w.n_p:
        raise ValueError(f"scenario cases need {alloc.sum()} persons, population is {w.n_p}")
    persons = _rng(cfg.seed, "plant").permutation(w.n_p)[: int(alloc.sum())]
    planters = (_telecom_fraud, _fundraising, _mule_ring, _round_tripping, _structuring, _large_value)
    first = 0
    for s, k, mean, plant in zip(SCENARIOS, alloc, _MEAN_PERSONS, planters, strict=True):
        group, first = persons[first : first + k], first + k
        if k:
            groups = np.array_split(group, max(1, round(k / mean)))
            cases[s] = plant(w, ev, _rng(cfg.seed, f"plant/{s}"), groups)
    return cases


def _split(rng: np.random.Generator, total: int, k: int) -> Array:
    """``total`` (> k) split into ``k`` positive integer parts of random size."""
    parts = (total * rng.dirichlet(np.full(k, 5.0))).astype(np.int64)
    parts = np.maximum(parts, 1)
    parts[-1] = total - parts[:-1].sum()
    if parts[-1] <= 0:
        parts = np.full(k, total // k)
        parts[-1] += total - parts.sum()
    return parts


def _cut(rng: np.random.Generator, amount: int, lo: float, hi: float) -> int:
    """``amount`` less a fee/cut of ``lo``..``hi`` of it (at least one minor unit left)."""
    return max(1, amount - int(amount * rng.uniform(lo, hi)))


def _cash_out(
    w: _World, ev: _Events, rng: np.random.Generator, who: tuple[int, int, int], amount: int,
    t: int, method: str, cashout: int, dev: int, label: tuple[int, int],
    delay: tuple[int, int] = (5, 41),
) -> None:  # fmt: skip
    """Move ``amount`` out of mule account ``who`` = (account, phone, bank) ``delay`` minutes
    after time ``t``: ATM withdrawals of at most 20,000 CNY, cross-border in USD, or to OTC."""
    acc, phone, inst = who
    scen, sid = label
    t += int(rng.integers(*delay)) * MINUTE_MS
    if method == "atm":
        chunk = 20_000 * CNY  # daily-limit sized withdrawals
        whole = amount // (100 * CNY) * (100 * CNY)
        n = -(-whole // chunk)
        if n == 0:
            return
        amounts = np.full(n, chunk, dtype=np.int64)
        amounts[-1] = whole - chunk * (n - 1)
        times = t + np.cumsum(rng.integers(MINUTE_MS, 4 * MINUTE_MS, n)) - MINUTE_MS
        terminals = w.atm[inst, rng.integers(0, w.n_term, n)]
        ev.txn(times, acc, terminals, amounts, _CH["atm"], cash=True, phone=phone, scen=scen, sid=sid)
    elif method == "xborder":
        ev.txn(
            t, acc, cashout, int(_usd_cents(amount)), _CH["online_banking"], cur=_USD,
            xb=True, dev=dev, phone=phone, scen=scen, sid=sid,
        )  # fmt: skip
    else:
        ev.txn(
            t, acc, cashout, amount, _CH["third_party_payment"], dev=dev, phone=phone,
            scen=scen, sid=sid,
        )  # fmt: skip


def _telecom_fraud(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """A fraud number sprays short calls, talks a victim into paying a new mule account, the
    mules layer it (fan-out or chain) and cash it out (ATM, cross-border, OTC)."""
    S = _SC["telecom_fraud"]
    fraud_cls = (_CLS["virtual_operator"], _CLS["international"], _CLS["spoofed_suspect"])
    memos = (-1, _M["安全账户"], _M["保证金"], _M["解冻费"], _M["贷款保证金"], _M["转账"])
    for g in groups:
        v, sid = int(g[0]), w.next_sid()
        label = (S, sid)
        w.label(w.acc_p[v], S, sid, "victim")
        caller = int(w.ph.add(_pick(rng, fraud_cls, (0.45, 0.35, 0.2)))[0])
        w.label(caller, S, sid, "fraud_caller", phone=True)
        day = int(rng.integers(0, w.days - 1))
        t_call = w.t0 + day * DAY_MS + int(rng.integers(9 * HOUR_MS, 21 * HOUR_MS))
        v_phone = int(w.phone[v])

        # the fraud number sprays many short calls around the successful one
        lo, hi = max(w.t0, t_call - 3 * DAY_MS), min(w.t_end, t_call + DAY_MS)
        n = int(rng.integers(30, 201))
        short = rng.random(n) < 0.7
        dur = np.where(short, rng.integers(2, 30, n), rng.integers(30, 300, n))
        ev.call(rng.integers(lo, hi, n), caller, w.phone[rng.integers(0, w.n_p, n)], dur, scen=S, sid=sid)
        k = int(rng.integers(0, 3))
        if k and t_call - HOUR_MS > lo:  # earlier grooming calls to the victim
            ev.call(
                rng.integers(lo, t_call - HOUR_MS, k), caller, v_phone, rng.integers(60, 900, k),
                scen=S, sid=sid,
            )  # fmt: skip
        ev.call(t_call, caller, v_phone, int(rng.integers(300, 2_700)), scen=S, sid=sid)

        # the victim pays a brand-new mule account 5-60 minutes after the call starts
        m = 1 if rng.random() < 0.7 else int(rng.integers(2, 4))
        total = int(math.exp(rng.uniform(math.log(20_000), math.log(300_000))) * CNY)
        amounts = np.maximum(_split(rng, total, m), 1_000 * CNY) if m > 1 else np.array([total])
        if rng.random() < 0.6:
            amounts = np.maximum(amounts // (100 * CNY) * (100 * CNY), 100 * CNY)
        t_pay = t_call + np.sort(rng.integers(5 * MINUTE_MS, 60 * MINUTE_MS + 1, m))
        mule = w.new_person(rng, w.start_day + day - int(rng.integers(1, 31)))
        w.label(mule[0], S, sid, "mule")
        chan = _pick(rng, (_CH["mobile_app"], _CH["online_banking"], _CH["counter"]), (0.7, 0.25, 0.05))
        ev.txn(
            t_pay, w.acc_p[v], mule[0], amounts, chan,
            dev=-1 if chan == _CH["counter"] else w.dev1[v], phone=v_phone,
            memo=_pick(rng, memos, (0.5, 0.15, 0.1, 0.1, 0.1, 0.05)), scen=S, sid=sid,
        )  # fmt: skip

        # layering by the handler's devices, then cash-out
        handler = w.dev.add(int(rng.integers(1, 3)))
        method = _pick(rng, ("atm", "xborder", "otc"), (0.5, 0.3, 0.2))
        cashout = -1
        if method == "xborder":
            cashout = int(w.acc.add(_Accounts.OVERSEAS, _I_OVERSEAS + int(rng.integers(0, 6)), _NO_DATE)[0])
        elif method == "otc":
            cashout = w.new_org(rng, w.start_day - int(rng.integers(30, 400)), payment=True)
        if cashout >= 0:
            w.label(cashout, S, sid, "cashout")
        fan = rng.random() < 0.6
        subs = [
            w.new_person(rng, w.start_day + day - int(rng.integers(1, 61)))
            for _ in range(int(rng.integers(2, 6) if fan else rng.integers(2, 5)))
        ]
        w.label([s[0] for s in subs], S, sid, "sub_mule")

        def dev_of(_: Array = handler) -> int:
            return int(_[rng.integers(0, _.size)])

        for t_in, a_in in zip(t_pay.tolist(), amounts.tolist(), strict=True):
            if fan:  # one mule fans out to all second-level mules
                parts = _split(rng, _cut(rng, a_in, 0.0, 0.01), len(subs))
                times = t_in + int(rng.integers(1, 11)) * MINUTE_MS
                times = times + np.cumsum(rng.integers(20_000, 120_000, len(subs)))
                ev.txn(
                    times, mule[0], [s[0] for s in subs], parts, _CH["mobile_app"],
                    dev=dev_of(), phone=mule[1], scen=S, sid=sid,
                )  # fmt: skip
                for s, a, t in zip(subs, parts.tolist(), times.tolist(), strict=True):
                    _cash_out(w, ev, rng, s, a, t, method, cashout, dev_of(), label)
            else:  # a chain of hops
                cur, a, t = mule, a_in, t_in
                for nxt in subs:
                    t += int(rng.integers(2, 21)) * MINUTE_MS
                    a = _cut(rng, a, 0.0, 0.01)
                    ev.txn(
                        t, cur[0], nxt[0], a, _CH["mobile_app"], dev=dev_of(), phone=cur[1],
                        scen=S, sid=sid,
                    )  # fmt: skip
                    cur = nxt
                _cash_out(w, ev, rng, cur, a, t, method, cashout, dev_of(), label)
    return len(groups)


def _fundraising(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """A collector takes "investments" from many persons and pays periodic "returns" to earlier
    investors out of later money, siphoning the rest to a controller (Ponzi)."""
    S = _SC["illegal_fundraising"]
    invest = np.array([_M[m] for m in INVEST_MEMOS])
    returns = np.array([_M[m] for m in RETURN_MEMOS])
    stakes = np.array([1, 2, 3, 5, 10, 20, 30, 50]) * 1_000 * CNY
    for g in groups:
        sid, k = w.next_sid(), g.size
        if rng.random() < 0.7:
            collector = w.new_org(rng, w.start_day - int(rng.integers(60, 720)))
            c_phone, c_dev, c_chan = int(w.ph.add(_CLS["landline"])[0]), -1, _CH["online_banking"]
        else:
            collector, c_phone, _ = w.new_person(rng, w.start_day - int(rng.integers(30, 720)))
            c_dev, c_chan = int(w.dev.add()[0]), _CH["mobile_app"]
        controller = w.new_person(rng, w.start_day - int(rng.integers(100, 3_000)))[0]
        w.label(collector, S, sid, "collector")
        w.label(w.acc_p[g], S, sid, "investor")

        cs = int(rng.integers(0, max(1, w.days // 5)))  # campaign start
        span = w.days - cs
        period = min(int(_pick(rng, (7, 10, 15), (0.6, 0.2, 0.2))), max(1, span // 4))
        # a few seed investors in the first period, then more and more joiners
        seed = max(2, k // 4)
        join = cs + (span - 1) * rng.random(k) ** 0.7
        join[:seed] = cs + rng.random(seed) * max(1, period - 1)
        join_ts = w.t0 + join.astype(np.int64) * DAY_MS + rng.integers(8 * HOUR_MS, 22 * HOUR_MS, k)
        top = np.repeat(np.arange(k), rng.integers(0, 3, k))
        top_ts = join_ts[top] + (rng.random(top.size) * (w.t_end - join_ts[top])).astype(np.int64)
        who = np.concatenate([np.arange(k), top])
        ts = np.concatenate([join_ts, top_ts])
        n = ts.size
        amount = stakes[_draw(rng, _cdf((3, 3, 2, 4, 3, 2, 1, 1)), n)]
        chan = _codes(rng, (_CH["mobile_app"], _CH["online_banking"], _CH["counter"]), (0.6, 0.25, 0.15), n)
        dev, _ = _person_cols(w, rng, g[who], chan)
        ev.txn(
            ts, w.acc_p[g[who]], collector, amount, chan, dev=dev, phone=w.phone[g[who]],
            memo=invest[rng.integers(0, invest.size, n)], scen=S, sid=sid,
        )  # fmt: skip

        # periodic returns to those who paid in before, from the pool
        rate = rng.uniform(0.005, 0.02) * period / 7
        order = np.argsort(ts, kind="stable")
        ts, who, amount = ts[order], who[order], amount[order]
        paid_out = 0
        for d in range(cs + period, w.days, period):
            t = w.t0 + d * DAY_MS + int(rng.integers(10 * HOUR_MS, 12 * HOUR_MS))
            before = ts < t - 6 * HOUR_MS
            principal = np.bincount(who[before], weights=amount[before], minlength=k)
            first_paid = np.full(k, np.iinfo(np.int64).max)
            np.minimum.at(first_paid, who[before], ts[before])
            payees = np.flatnonzero(principal > 0)
            payees = payees[np.argsort(first_paid[payees], kind="stable")]
            ret = (principal[payees] * rate).astype(np.int64)
            balance = int(amount[ts < t].sum()) - paid_out
            ok = (ret > 0) & (np.cumsum(ret) <= balance)
            payees, ret = payees[ok], ret[ok]
            times = t + np.cumsum(rng.integers(5_000, 60_000, payees.size))
            if payees.size:
                ev.txn(
                    times, collector, w.acc_p[g[payees]], ret, c_chan, dev=c_dev, phone=c_phone,
                    memo=returns[rng.integers(0, returns.size, payees.size)], scen=S, sid=sid,
                )  # fmt: skip
                paid_out += int(ret.sum())
                t = int(times[-1])
            siphon = int((balance - int(ret.sum())) * rng.uniform(0.4, 0.7))
            t_s = t + int(rng.integers(HOUR_MS, 6 * HOUR_MS))
            if siphon > 0 and t_s < w.t_end:
                w.label(controller, S, sid, "controller")
                ev.txn(
                    t_s, collector, controller, siphon, c_chan, dev=c_dev, phone=c_phone,
                    scen=S, sid=sid,
                )  # fmt: skip
                paid_out += siphon
    return len(groups)


def _mule_ring(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """Batches of money enter a ring of recruited persons and rush through several of them
    (minutes per hop) before leaving to a sink account or as cash."""
    S = _SC["mule_ring"]
    for g in groups:
        sid = w.next_sid()
        sources = [
            w.new_person(rng, w.start_day - int(rng.integers(30, 2_000)))
            for _ in range(int(rng.integers(1, 4)))
        ]
        sinks = [
            w.new_person(rng, w.start_day - int(rng.integers(5, 200))) for _ in range(int(rng.integers(1, 3)))
        ]
        w.label(w.acc_p[g], S, sid, "ring_member")
        for batch in range(int(rng.integers(3, 11))):
            t = w.t0 + int(rng.integers(0, w.days - 1)) * DAY_MS
            t += int(rng.integers(8 * HOUR_MS, 22 * HOUR_MS))
            a = int(math.exp(rng.uniform(math.log(30_000), math.log(500_000)))) * CNY
            # the first batch runs through every member, later ones through some of them
            path = rng.permutation(g)[: g.size if batch == 0 else int(rng.integers(2, g.size + 1))]
            src = sources[batch if batch < len(sources) else int(rng.integers(0, len(sources)))]
            w.label(src[0], S, sid, "source")
            ev.txn(
                t, src[0], w.acc_p[path[0]], a, _CH["online_banking"], phone=src[1],
                scen=S, sid=sid,
            )  # fmt: skip
            for i in range(1, path.size):
                t += int(rng.integers(1, 21)) * MINUTE_MS
                a = _cut(rng, a, 0.0, 0.005)
                p = int(path[i - 1])
                ev.txn(
                    t, w.acc_p[p], w.acc_p[path[i]], a, _CH["mobile_app"], dev=w.dev1[p],
                    phone=w.phone[p], scen=S, sid=sid,
                )  # fmt: skip
            last = int(path[-1])
            who = (int(w.acc_p[last]), int(w.phone[last]), int(w.inst_p[last]))
            exit_ = _pick(rng, ("sink", "atm", "counter"), (0.6, 0.2, 0.2))
            if exit_ == "atm":
                _cash_out(w, ev, rng, who, a, t, "atm", -1, -1, (S, sid), delay=(1, 16))
                continue
            t += int(rng.integers(1, 21)) * MINUTE_MS
            if exit_ == "sink":
                sink = sinks[int(rng.integers(0, len(sinks)))]
                w.label(sink[0], S, sid, "sink")
                ev.txn(
                    t, who[0], sink[0], _cut(rng, a, 0.0, 0.005), _CH["mobile_app"],
                    dev=w.dev1[last], phone=who[1], scen=S, sid=sid,
                )  # fmt: skip
            else:
                ev.txn(
                    t, who[0], w.ctr[who[2], int(rng.integers(0, w.n_term))],
                    a // (100 * CNY) * (100 * CNY) or a, _CH["counter"], cash=True,
                    phone=who[1], scen=S, sid=sid,
                )  # fmt: skip
    return len(groups)


def _round_tripping(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """Money goes round a fixed cycle A -> B -> ... -> A within days, a fee lost at each hop."""
    S = _SC["round_tripping"]
    memos = (_M["货款"], _M["服务费"], _M["咨询费"], _M["借款"], -1)
    for g in groups:
        sid, k = w.next_sid(), g.size
        w.label(w.acc_p[g], S, sid, "cycle_member")
        cycles = int(rng.integers(1, 4))
        max_gap = int(min(36 * HOUR_MS, 0.8 * w.days * DAY_MS / (k * cycles)))
        min_gap = min(2 * HOUR_MS, max_gap // 2)
        t = w.t0 + int(rng.integers(0, max(1, w.days * DAY_MS - k * cycles * max_gap)))
        a = int(math.exp(rng.uniform(math.log(100_000), math.log(2_000_000)))) // 1_000 * 1_000 * CNY
        memo = _pick(rng, memos, (0.35, 0.2, 0.2, 0.15, 0.1))
        chan = _pick(rng, (_CH["online_banking"], _CH["mobile_app"]), (0.7, 0.3))
        for _ in range(cycles):
            for i in range(k):
                p, q = int(g[i]), int(g[(i + 1) % k])
                t += int(rng.integers(min_gap, max_gap + 1))
                a = _cut(rng, a, 0.001, 0.01)
                ev.txn(
                    t, w.acc_p[p], w.acc_p[q], a, chan, dev=w.dev1[p], phone=w.phone[p],
                    memo=memo, scen=S, sid=sid,
                )  # fmt: skip
    return len(groups)


def _structuring(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """Cash deposits, withdrawals or transfers of 45,000-49,999.99 CNY over a few days, just
    under the 50,000 CNY cash reporting threshold, at different branches."""
    S = _SC["structuring"]
    for g in groups:
        sid, s = w.next_sid(), int(g[0])
        w.label(w.acc_p[s], S, sid, "structurer")
        mode = _pick(rng, ("deposit", "withdraw", "transfer"), (0.4, 0.3, 0.3))
        n_days = int(rng.integers(2, 6))
        per_day = rng.integers(1, 4, n_days)
        per_day[0] += max(0, 3 - int(per_day.sum()))
        day = np.repeat(int(rng.integers(0, w.days - n_days + 1)) + np.arange(n_days), per_day)
        n = day.size
        amount = rng.integers(45_000 * CNY, CASH_REPORT_THRESHOLD, n)
        if rng.random() < 0.5:
            amount = amount // (100 * CNY) * (100 * CNY)
        branch = w.ctr[w.inst_p[s], rng.integers(0, w.n_term, n)]
        if mode == "deposit":
            ev.txn(
                w.times(rng, day, _BANK), branch, w.acc_p[s], amount, _CH["counter"], cash=True,
                scen=S, sid=sid,
            )  # fmt: skip
        elif mode == "withdraw":
            ev.txn(
                w.times(rng, day, _BANK), w.acc_p[s], branch, amount, _CH["counter"], cash=True,
                phone=w.phone[s], scen=S, sid=sid,
            )  # fmt: skip
        else:
            cps = [
                w.new_person(rng, w.start_day - int(rng.integers(30, 3_000)))[0]
                for _ in range(int(rng.integers(1, 4)))
            ]
            payees = np.asarray(cps)[rng.integers(0, len(cps), n)]
            w.label(np.unique(payees), S, sid, "counterparty")
            chan = _codes(rng, (_CH["mobile_app"], _CH["online_banking"]), (0.6, 0.4), n)
            ev.txn(
                w.times(rng, day, _XFER), w.acc_p[s], payees, amount, chan, dev=w.dev1[s],
                phone=w.phone[s], scen=S, sid=sid,
            )  # fmt: skip
    return len(groups)


def _large_value(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """Genuine reportable payments: a person's house or car money (>= 500,000 CNY), large cash
    (>= 50,000 CNY) and company payments (>= 2,000,000 CNY)."""
    S = _SC["large_value_genuine"]
    for g in groups:
        sid, p = w.next_sid(), int(g[0])
        day = np.array([int(rng.integers(0, w.days))])
        if rng.random() < 0.6:
            payee = w.new_org(rng, w.start_day - int(rng.integers(365, 7_000)))
            w.label(w.acc_p[p], S, sid, "large_payer")
            w.label(payee, S, sid, "large_payee")
            chan = _pick(rng, (_CH["online_banking"], _CH["counter"]), (0.7, 0.3))
            ev.txn(
                w.times(rng, day, _BANK), w.acc_p[p], payee,
                int(rng.integers(500, 3_001)) * 1_000 * CNY, chan,
                dev=-1 if chan == _CH["counter"] else w.dev1[p], phone=w.phone[p],
                memo=_pick(rng, (_M["购房款"], _M["首付"], _M["购车款"]), (0.5, 0.3, 0.2)),
                scen=S, sid=sid,
            )  # fmt: skip
        else:
            branch = int(w.ctr[w.inst_p[p], int(rng.integers(0, w.n_term))])
            amount = int(rng.integers(50, 201)) * 1_000 * CNY
            if rng.random() < 0.5:
                w.label(w.acc_p[p], S, sid, "large_payer")
                ev.txn(
                    w.times(rng, day, _BANK), w.acc_p[p], branch, amount, _CH["counter"],
                    cash=True, phone=w.phone[p], scen=S, sid=sid,
                )  # fmt: skip
            else:
                w.label(w.acc_p[p], S, sid, "large_payee")
                ev.txn(
                    w.times(rng, day, _BANK), branch, w.acc_p[p], amount, _CH["counter"],
                    cash=True, scen=S, sid=sid,
                )  # fmt: skip
    companies = np.concatenate([w.emp_acc, w.mer_bank])
    n_company = max(1, len(groups) // 2)
    for _ in range(n_company):
        sid = w.next_sid()
        payer, payee = rng.choice(companies, 2, replace=False)
        w.label(payer, S, sid, "large_payer")
        w.label(payee, S, sid, "large_payee")
        ev.txn(
            w.times(rng, np.array([int(rng.integers(0, w.days))]), _BANK), payer, payee,
            int(rng.integers(200, 5_001)) * 10_000 * CNY, _CH["online_banking"],
            memo=_pick(rng, (_M["货款"], _M["工程款"], _M["设备款"]), (0.5, 0.3, 0.2)),
            scen=S, sid=sid,
        )  # fmt: skip
    return len(groups) + n_company


# ---------------------------------------------------------------------------- the event frame

_T4 = np.array([f"{i:04d}".encode() for i in range(10_000)], dtype="S4").view(np.uint32)
_HEAD = {
    kind: np.array([f"{kind[0]}{i:03d}".encode() for i in range(1_000)], dtype="S4").view(np.uint32)
    for kind in (KIND_CALL, KIND_TXN)
}


def _event_ids(is_txn: Array) -> pl.Series:
    """``c``/``t`` + 11-digit position in the stream, written straight into Arrow string views.

    A view of a string of at most 12 bytes is its length (u32) followed by the bytes inline, so
    the ids need no separate data buffer and polars takes them over without copying.
    """
    n = is_txn.size
    if n >= 10**11:
        raise ValueError(f"too many events for 11-digit ids: {n}")
    block = 100_000_000  # the last 8 digits cycle through each block of this many events
    views = np.empty((n, 4), dtype=np.uint32)
    views[:, 0] = 12
    for head, first in enumerate(range(0, n, block)):
        m = min(block, n - first)
        rows = views[first : first + m]
        rows[:, 1] = np.where(is_txn[first : first + m], _HEAD[KIND_TXN][head], _HEAD[KIND_CALL][head])
        rows[:, 2] = np.repeat(_T4[: -(-m // 10_000)], 10_000)[:m]
        rows[:, 3] = np.tile(_T4, -(-m // 10_000))[:m]
    if _pa is None:  # pragma: no cover - without pyarrow string views
        return pl.Series(np.ascontiguousarray(views[:, 1:]).view("S12").reshape(n)).cast(pl.String)
    return pl.Series(_pa.Array.from_buffers(_pa.string_view(), n, [None, _pa.py_buffer(views)]))


def _stream_order(ts: Array, kind: Array) -> tuple[Array, Array, Array]:
    """Permutation into stream order (time, calls before transactions, then build order), and
    the times and kinds (as bools: transaction) in that order."""
    n = ts.size
    if n == 0:
        return ts.astype(np.int64), ts.astype(np.int64), kind.astype(bool)
    t_min = int(ts.min())
    bits = max(1, (n - 1).bit_length())
    if ((int(ts.max()) - t_min) * 2 + 1).bit_length() + bits <= 63:  # one int64 key, one sort
        key = ts - t_min
        key *= 2
        key += kind
        key <<= bits
        key |= np.arange(n, dtype=np.int64)
        key.sort()
        order = key & ((1 << bits) - 1)
        key >>= bits
        is_txn = (key & 1).astype(bool)
        key >>= 1
        key += t_min
        return order, key, is_txn
    order = np.lexsort((np.arange(n), kind, ts))
    return order, ts[order], kind[order].astype(bool)


# bit fields of the packed per-row codes: (shift, width)
_F_CUR, _F_CHAN, _F_CASH, _F_XB = (0, 2), (2, 3), (5, 2), (7, 2)
_F_MEMO, _F_SCEN, _F_SID = (9, 7), (16, 4), (20, 43)
_LOW32 = (0, 32)
_HIGH31 = (32, 31)


def _bits(packed: Array, f: tuple[int, int]) -> Array:
    """Bit field ``f`` = (shift, width) of non-negative int64 array ``packed``."""
    out: Array = np.right_shift(packed, f[0])
    np.bitwise_and(out, (1 << f[1]) - 1, out=out)
    return out


def _assemble(w: _World, ev: _Events) -> pl.DataFrame:
    """The event frame in stream order, identifiers and vocabularies looked up from codes."""
    rng = _rng(w.cfg.seed, "identifiers")
    w.acc.finalize(rng)
    w.ph.finalize(rng)
    w.dev.finalize(rng)
    if len(_MEMOS) >= 1 << _F_MEMO[1] or len(SCENARIOS) >= 1 << _F_SCEN[1]:
        raise RuntimeError("internal error: vocabulary outgrew its bit field")
    ts, kind, ab, dp, value, codes = ev.columns()
    if (value <= 0).any():
        raise RuntimeError("internal error: non-positive amount or duration generated")
    order, ts, txn = _stream_order(ts, kind)
    # putting rows in stream order is four random gathers, run in parallel by polars
    packed = pl.DataFrame({"ab": ab, "dp": dp, "value": value, "codes": codes})[order]
    del ab, dp, value, codes, kind, order
    ab, dp, value, codes = (packed[k].to_numpy() for k in ("ab", "dp", "value", "codes"))
    call = ~txn
    a, b = _bits(ab, _HIGH31), _bits(ab, _LOW32)  # payer/payee on transactions, else caller/callee
    del ab

    def by_entity(column: _Column, codes: Array) -> _Column:
        """``column`` looked up by a per-account (per-phone) code: entity index -> value."""
        return column.compose(np.concatenate([[0], codes.astype(np.int64) + 1]))

    def by_low16(column: _Column, f: tuple[int, int]) -> _Column:
        """``column`` looked up by bit field ``f`` of the low 16 bits of ``codes``."""
        return column.compose(_bits(np.arange(1 << 16), f))

    def vocab(values: tuple[Any, ...], dtype: pl.DataType | None = None) -> _Column:
        return _Column(_nullable(values, dtype or pl.String()))

    accounts, opened, phones = _Column(w.acc.ids), _Column(w.acc.opened_dates), _Column(w.ph.ids)
    institutions = by_entity(vocab(_INSTITUTIONS), w.acc.inst)
    parties = by_entity(vocab(PARTY_TYPES), w.acc.party)
    flags = vocab((False, True), pl.Boolean())
    low16 = _bits(codes, (0, 16))  # currency, channel, cash, cross-border and memo
    jobs: dict[str, Callable[[], pl.Series]] = {
        "event_id": lambda: _event_ids(txn),
        "kind": lambda: _Column(pl.Series([KIND_CALL, KIND_TXN])).gather(txn.astype(np.int64)),
        "event_time": lambda: pl.Series(ts).cast(EVENT_SCHEMA["event_time"]),
        "payer_account": lambda: accounts.gather(a, txn),
        "payer_institution": lambda: institutions.gather(a, txn),
        "payer_party_type": lambda: parties.gather(a, txn),
        "payer_opened_date": lambda: opened.gather(a, txn),
        "payee_account": lambda: accounts.gather(b, txn),
        "payee_institution": lambda: institutions.gather(b, txn),
        "payee_party_type": lambda: parties.gather(b, txn),
        "payee_opened_date": lambda: opened.gather(b, txn),
        "amount_minor": lambda: _ints(value, txn),
        "currency": lambda: by_low16(vocab(_CURRENCIES), _F_CUR).gather(low16),
        "channel": lambda: by_low16(vocab(CHANNELS), _F_CHAN).gather(low16),
        "cash": lambda: by_low16(flags, _F_CASH).gather(low16),
        "cross_border": lambda: by_low16(flags, _F_XB).gather(low16),
        "device_id": lambda: _Column(w.dev.ids).gather(_bits(dp, _HIGH31)),
        "payer_phone": lambda: phones.gather(_bits(dp, _LOW32)),
        "memo": lambda: by_low16(vocab(_MEMOS), _F_MEMO).gather(low16),
        "caller_number": lambda: phones.gather(a, call),
        "callee_number": lambda: phones.gather(b, call),
        "duration_seconds": lambda: _ints(value, call),
        "caller_class": lambda: by_entity(vocab(NUMBER_CLASSES), w.ph.cls).gather(a, call),
        "scenario": lambda: _Column(pl.Series(["", *SCENARIOS])).gather(_bits(codes, _F_SCEN)),
        "scenario_id": lambda: pl.Series(_bits(codes, _F_SID) - 1),
    }
    # numpy gathers release the GIL, so the columns are built on two threads (same result)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        columns = {name: future.result() for name, future in futures.items()}
    schema = EVENT_SCHEMA | LABEL_COLUMNS
    n = len(columns["event_id"])
    return pl.DataFrame([
        (columns[name].alias(name) if name in columns else pl.Series(name, [None] * n)).cast(dtype)
        for name, dtype in schema.items()])


def _ints(values: Array, valid: Array) -> pl.Series:
    """Int64 ``values`` with nulls where ``valid`` is false."""
    if _pa is None:  # pragma: no cover - without pyarrow
        return pl.select(pl.when(pl.Series(valid)).then(pl.Series(values))).to_series()
    validity = _pa.py_buffer(np.packbits(valid, bitorder="little"))
    array = _pa.Array.from_buffers(_pa.int64(), values.size, [validity, _pa.py_buffer(values)])
    return pl.Series(array)


class _Column:
    """A lookup table (a polars series) turned into a column by gathering integer codes.

    Strings go as Arrow string views (16 bytes per value: the length, then the bytes inline when
    they fit in 12, else a 4-byte prefix and an offset into one shared data buffer): a lookup is a
    numpy gather of 16-byte views that polars adopts without copying, several times faster than a
    polars gather of strings; dates and booleans likewise. Without pyarrow string views the
    polars gather is used.
    """

    def __init__(self, table: pl.Series) -> None:
        self.table = table
        self.valid = table.is_not_null().to_numpy()
        self.data: list[Any] = []
        if _pa is None:  # pragma: no cover - without pyarrow
            return
        if table.dtype == pl.Date:
            self.type = _pa.date32()
            self.values = table.cast(pl.Int32).fill_null(0).to_numpy()
        elif table.dtype == pl.Boolean:
            self.type = _pa.bool_()
            self.values = table.fill_null(False).to_numpy()
        else:
            self.type = _pa.string_view()
            self.values, data = self._views(table)
            self.data = [_pa.py_buffer(data)]

    @staticmethod
    def _views(table: pl.Series) -> tuple[Array, Array]:
        """The 16-byte Arrow views of a string series (as complex128), and their data buffer."""
        array = table.to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string, no compute
        _, offsets_buf, data_buf = array.buffers()
        offsets = np.frombuffer(offsets_buf, np.int64)[array.offset : array.offset + len(array) + 1]
        data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        data = data if data.size else np.zeros(1, np.uint8)
        start, length = offsets[:-1], np.diff(offsets)
        j = np.arange(12)
        raw = np.zeros((len(array), 16), dtype=np.uint8)
        raw[:, 4:] = np.where(j < length[:, None], data[np.minimum(start[:, None] + j, data.size - 1)], 0)
        views = raw.view(np.uint32)
        views[:, 0] = length
        long = length > 12
        views[long, 2] = 0  # buffer index
        views[long, 3] = start[long]
        return raw.view(np.complex128).reshape(len(array)), data  # 16 opaque bytes per value

    def compose(self, codes: Array) -> _Column:
        """The column looked up through ``codes`` first: ``table[codes[index]]`` in one gather.

        Codes past the end of the table (bit patterns that never occur) map to entry 0.
        """
        codes = np.where(codes < len(self.table), codes, 0)
        out = copy.copy(self)
        out.table = self.table.gather(codes)
        out.valid = self.valid[codes]
        if _pa is not None:
            out.values = self.values[codes]
        return out

    def gather(self, index: Array, where: Array | None = None) -> pl.Series:
        """``table[index]``, null where ``where`` is false (index may then be out of range)."""
        if self.valid[1:].all():  # the common case: null at most at index 0
            valid = index != 0 if not self.valid[0] else np.ones(index.size, dtype=bool)
        else:
            valid = self.valid.take(index, mode="clip")
        if where is not None:
            valid &= where
        if _pa is None:
            nullable = pl.concat([pl.Series([None], dtype=self.table.dtype), self.table])
            return nullable.gather(np.where(valid, index + 1, 0))
        validity = None if valid.all() else _pa.py_buffer(np.packbits(valid, bitorder="little"))
        values = self.values.take(index, mode="clip")
        if self.type == _pa.bool_():
            values = np.packbits(values, bitorder="little")
        array = _pa.Array.from_buffers(self.type, index.size, [validity, _pa.py_buffer(values), *self.data])
        return pl.Series(array)
