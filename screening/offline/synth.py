"""Labelled synthetic event streams: ordinary life in China with planted fraud scenarios.

``generate(SynthConfig(...))`` builds a population of persons and organisations (employers,
merchants, utilities, bank wealth-management desks) and their ordinary transactions and phone
calls, then plants labelled cases of every scenario in :data:`SCENARIOS` and every benign
look-alike in :data:`LOOKALIKES`, and lists what the institutions know of their customers (the
account registry); ``write`` stores the result as Parquet (and CSV on request).

Case parameters (amounts, delays, pieces, call volumes, answer rates, ...) are drawn per case
from wide ranges taken from how each fraud, and each legitimate look-alike, works; none is set
from a detection rule's threshold.

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
  ``payee_phone`` (set where the payer's bank knows the payee's phone on file: mostly transfers
  within one institution), ``device_id`` (counter, ATM and corporate payments), ``memo``,
  ``payer_opened_date`` of terminals.
* every call carries its final ``call_outcome``: answered with a duration, or unanswered or
  rejected with duration 0 (ordinary people let a tenth of calls ring out, more from unknown
  numbers).
* the window is cut as an extract would be: a case running past its last day loses the rest.
* event ids are ``"c"``/``"t"`` and 11 digits, numbered in stream order, so the frame sorted by
  ``event_time`` is also sorted by ``event_id`` within equal times (calls first).
* the accounts frame lists every account of a planted case with its role; a fraudster's phone
  number appears there too, with ``account`` the number and role ``fraud_caller``. Population
  persons drawn into a case keep their ordinary life (those events stay unlabelled). A
  look-alike labels the accounts whose behaviour is the look-alike (``lookalike``), the numbers
  that call (``lookalike_caller``) and accounts made for it (``lookalike_party``: suppliers,
  hospitals, developers); the population persons it deals with (customers, staff, donors,
  neighbours, relatives) stay unlabelled: they are ordinary people doing ordinary things.
* the registry (``REGISTRY_SCHEMA``) has every person and organisation account of a domestic
  bank or payment institution: phone on file, opened date, last activity before the window
  (years back for dormant accounts, a few days for accounts in use), merchant category, payroll.

Roles: telecom_fraud ``victim``, ``mule`` (receives from the victim), ``sub_mule`` (further
layers), ``cashout`` (overseas or OTC account the money leaves through), ``fraud_caller``;
illegal_fundraising ``collector``, ``investor``, ``controller``; mule_ring ``ring_member``,
``source``, ``sink``; round_tripping ``cycle_member``; structuring ``structurer``,
``counterparty``; large_value_genuine ``large_payer``, ``large_payee``. The later scenarios:
``victim``, ``mule`` (level 1: paid by victims), ``mule_level2``, ``mule_level3``, ``cashout``,
``fraud_caller``, ``robocaller``, ``lender`` (an online lender a victim borrowed from);
pyramid_scheme ``controller``, ``collector`` (the platform account), ``recruiter`` (members
with a downline), ``member``; ponzi_exit ``investor``, ``collector``, ``controller``,
``cashout``; structuring_thresholds ``structurer``, ``counterparty``.
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
    CALL_OUTCOMES,
    CHANNELS,
    EVENT_SCHEMA,
    KIND_CALL,
    KIND_TXN,
    LABEL_COLUMNS,
    LABELS,
    LOOKALIKES,
    NUMBER_CLASSES,
    PARTY_TYPES,
    REGISTRY_SCHEMA,
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
    "退款", "贷款", "会员费", "入会费", "加盟费", "报单", "奖金", "提成", "报销", "学费",
    "tuition", "医药费", "手术费", "捐款", "爱心捐款", "团购", "补偿款", "还款", "往来款",
)  # fmt: skip
_M = {m: i for i, m in enumerate(_MEMOS)}
INVEST_MEMOS = ("投资款", "理财", "investment", "wealth management", "认购款")
RETURN_MEMOS = ("收益", "interest", "返利", "利息", "分红")
_UTILITY_MEMOS = ("电费", "水费", "燃气费", "话费", "宽带费")

_CH = {c: i for i, c in enumerate(CHANNELS)}
_CLS = {c: i for i, c in enumerate(NUMBER_CLASSES)}
_SC = {s: i for i, s in enumerate(LABELS)}  # fraud scenarios, then look-alikes
_OUT = {o: i for i, o in enumerate(CALL_OUTCOMES)}
# Registry merchant categories: what the acquiring bank or payment institution files for a merchant.
_CATEGORIES = (
    "grocery", "restaurant", "supermarket", "convenience_store", "fruit_shop", "pharmacy", "clothing",
    "electronics", "fuel", "hair_beauty", "utility", "wholesale", "hospital", "real_estate",
    "crowdfunding_platform", "virtual_goods", "car_dealer", "education",
)  # fmt: skip
_CAT = {c: i for i, c in enumerate(_CATEGORIES)}
_SHOP_CATS = tuple(_CAT[c] for c in _CATEGORIES[:10])
_SHOP_CAT_W = (0.22, 0.25, 0.08, 0.12, 0.06, 0.05, 0.08, 0.04, 0.03, 0.07)
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

    ``lookalike_rate`` is the fraction of population persons at the centre of a benign look-alike
    case (a shop owner, an employer's boss, a rider, a crowdfunding family, ...), split between
    :data:`LOOKALIKES` by ``lookalike_weights``; the ordinary persons they deal with (customers,
    staff, donors, neighbours) are drawn from the rest of the population and stay unlabelled.
    ``scenario_weights`` may also hold just the first six weights (the original families), which
    gives the later scenarios none.
    """

    seed: int = 0
    n_persons: int = 1_000
    n_organisations: int = 100
    days: int = 30
    start: date = date(2025, 3, 3)
    scenario_rate: float = 0.01
    events_target: int | None = None
    # shares of the scenario budget of persons, in SCENARIOS order
    scenario_weights: tuple[float, ...] = (
        0.14, 0.12, 0.05, 0.03, 0.03, 0.04, 0.12, 0.1, 0.08, 0.05, 0.12, 0.08, 0.04,
    )  # fmt: skip
    lookalike_rate: float = 0.005
    # shares of the look-alike budget, in LOOKALIKES order (couriers make many calls each: half)
    lookalike_weights: tuple[float, ...] = (1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0)
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
        if not 0.0 <= self.lookalike_rate <= 0.2:
            raise bad("lookalike_rate", "in [0, 0.2]")
        if self.scenario_rate + self.lookalike_rate > 0.5:
            raise bad("lookalike_rate", "at most 0.5 together with scenario_rate")
        if self.events_target is not None and self.events_target < 1_000:
            raise bad("events_target", ">= 1000 or None")
        sizes = (_N_LEGACY, len(SCENARIOS))
        if len(self.scenario_weights) not in sizes or min(self.scenario_weights) < 0:
            raise bad("scenario_weights", f"{len(SCENARIOS)} (or {_N_LEGACY}) non-negative weights")
        if sum(self.scenario_weights) <= 0:
            raise bad("scenario_weights", "not all zero")
        if len(self.lookalike_weights) != len(LOOKALIKES) or min(self.lookalike_weights) < 0:
            raise bad("lookalike_weights", f"{len(LOOKALIKES)} non-negative weights")
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
    """Generated frames: ``events`` (EVENT_SCHEMA + LABEL_COLUMNS), ``accounts`` (the labels)
    and ``registry`` (REGISTRY_SCHEMA: what the institutions know of their own customers).

    ``stats`` counts events, transactions, calls, population persons drawn into fraud cases
    (``scenario_persons``) and at the centre of look-alikes (``lookalike_persons``), and cases
    per scenario and look-alike (``cases_<label>``).
    """

    events: pl.DataFrame
    accounts: pl.DataFrame
    stats: Mapping[str, int] = field(default_factory=dict)
    registry: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REGISTRY_SCHEMA))


def generate(config: SynthConfig) -> SynthResult:
    """Generate a labelled event stream for ``config`` (deterministic in the config)."""
    n_persons, n_orgs = _population_size(config)
    world = _World(config, n_persons, n_orgs)
    ev = _Events(world.t0, world.t_end)
    plan = _allocate(world)
    _ordinary(world, ev)
    cases = _plant(world, ev, plan)
    events = _assemble(world, ev)
    world.prune_labels()
    accounts = world.label_frame()
    registry = world.registry_frame()
    txns = ev.n_txn
    stats = {
        "events": events.height,
        "txns": txns,
        "calls": events.height - txns,
        "persons": n_persons,
        "organisations": n_orgs,
        "scenario_persons": world.scenario_persons(lookalikes=False),
        "lookalike_persons": world.scenario_persons(lookalikes=True),
    }
    stats.update({f"cases_{s}": cases[s] for s in LABELS})
    return SynthResult(events=events, accounts=accounts, stats=stats, registry=registry)


def write(result: SynthResult, out_dir: str | os.PathLike[str], csv: bool = False) -> list[Path]:
    """Write ``events``, ``accounts`` and ``registry`` as Parquet (and ``.csv`` twins) into
    ``out_dir``.

    Each file is written under a temporary name in ``out_dir`` and moved into place with
    ``os.replace``, so a reader never sees a half-written file. Returns the paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    frames = (("events", result.events), ("accounts", result.accounts), ("registry", result.registry))
    for name, frame in frames:
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


@functools.lru_cache(maxsize=512)
def _cdf(weights: tuple[float, ...]) -> Array:
    """Cumulative probabilities of ``weights`` (cached: cases draw from the same few often)."""
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


_SCALARS = (int, np.integer, np.bool_)


class _Growing:
    """A column built by appends: blocks as arrays, single values in a Python list (cases add
    accounts and numbers one at a time; a tiny numpy array each costs more than the value)."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype
        self.chunks: list[Any] = []

    def add(self, value: Any, n: int) -> None:
        if n == 1 and isinstance(value, _SCALARS):
            if not self.chunks or not isinstance(self.chunks[-1], list):
                self.chunks.append([])
            self.chunks[-1].append(value)
        elif np.ndim(value) == 0:
            self.chunks.append(np.full(n, value, dtype=self.dtype))
        else:
            self.chunks.append(np.array(value, dtype=self.dtype).reshape(n))

    def array(self) -> Array:
        out: Array = np.concatenate(
            [np.zeros(0, self.dtype), *(np.asarray(c, dtype=self.dtype) for c in self.chunks)]
        )
        return out

    def set(self, idx: Any, value: Any) -> None:
        merged = self.array()
        merged[np.asarray(idx)] = value
        self.chunks = [merged]


class _Accounts:
    """Growing account table: id format, institution, party type, opened date (epoch days), and
    what the registry tells of it: phone on file, last activity before the window, merchant
    category, payroll."""

    PERSON, ORG, OVERSEAS, ATM, COUNTER = range(5)
    _PREFIX = ("62", "31", "OS", "ATM", "CTR")
    _WIDTH = (14, 14, 12, 9, 9)
    ACTIVE = np.iinfo(np.int32).max  # last_active: in use up to the window (drawn at the end)

    def __init__(self) -> None:
        self._cols = {
            "fmt": _Growing(np.int8), "inst": _Growing(np.int8), "opened": _Growing(np.int32),
            "phone": _Growing(np.int64), "last": _Growing(np.int32), "cat": _Growing(np.int8),
            "payroll": _Growing(np.bool_),
        }  # fmt: skip
        self.n = 0

    def add(
        self, fmt: int, inst: Array | int, opened: Array | int, n: int = 1, *, phone: Array | int = -1,
        last_active: Array | int = ACTIVE, category: Array | int = -1, payroll: bool = False,
    ) -> Array:  # fmt: skip
        """Append ``n`` accounts (scalars broadcast); return their indices."""
        for key, value in (
            ("fmt", fmt), ("inst", inst), ("opened", opened), ("phone", phone), ("last", last_active),
            ("cat", category), ("payroll", payroll),
        ):  # fmt: skip
            self._cols[key].add(value, n)
        idx = np.arange(self.n, self.n + n, dtype=np.int64)
        self.n += n
        return idx

    def set(
        self, idx: Array | int, *, phone: Array | int | None = None, last_active: Array | int | None = None,
        category: Array | int | None = None, payroll: bool | None = None,
    ) -> None:  # fmt: skip
        """Change registry facts of accounts added before (a whole-table copy: for set-up only)."""
        for key, value in (("phone", phone), ("last", last_active), ("cat", category), ("payroll", payroll)):
            if value is not None:
                self._cols[key].set(idx, value)

    def finalize(self, rng: np.random.Generator) -> None:
        """Freeze the arrays and draw the identifiers (random, unique per format)."""
        self.fmt = self._cols["fmt"].array()
        self.inst = self._cols["inst"].array()
        self.opened = self._cols["opened"].array()
        self.phone = self._cols["phone"].array()
        self.last_active = self._cols["last"].array()
        self.category = self._cols["cat"].array()
        self.payroll = self._cols["payroll"].array()
        terminal = (self.fmt == self.ATM) | (self.fmt == self.COUNTER)
        self.party = np.where(self.fmt == self.PERSON, _PERSON, np.where(terminal, _TERMINAL, _ORG)).astype(
            np.int8
        )
        opened = self.opened
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
        self._cls = _Growing(np.int8)
        self.n = 0

    def add(self, cls: Array | int, n: int = 1) -> Array:
        self._cls.add(cls, n)
        idx = np.arange(self.n, self.n + n, dtype=np.int64)
        self.n += n
        return idx

    def finalize(self, rng: np.random.Generator) -> None:
        self.cls = self._cls.array()
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

# bit fields of the packed per-row codes: (shift, width); the low 16 bits describe a transaction
_F_CUR, _F_CHAN, _F_CASH, _F_XB = (0, 2), (2, 3), (5, 2), (7, 2)
_F_MEMO, _F_OUT, _F_SCEN, _F_SID = (9, 7), (16, 3), (19, 6), (25, 38)
_LOW32 = (0, 32)
_HIGH31 = (32, 31)


class _Events:
    """Events as packed int64 columns, appended part by part (scalars broadcast).

    Per row: ``ts`` (epoch ms), ``kind`` (1 transaction, 0 call), ``ab`` = payer (caller) << 32 |
    payee (callee), ``dp`` = device << 32 | payer phone, ``value`` = amount (duration) and
    ``codes``, the bit fields ``_F_*``. Indices and codes are stored plus one: 0 means null.
    Rows outside the window ``[t0, t_end)`` are dropped, so a case that runs on past the last day
    is cut there, as a real extract would be.
    """

    COLUMNS = ("ts", "kind", "ab", "dp", "value", "codes")

    def __init__(self, t0: int = -(2**62), t_end: int = 2**62) -> None:
        self.parts: dict[str, list[Array]] = {k: [] for k in self.COLUMNS}
        self.rows: list[tuple[int, int, int, int, int, int]] = []  # single events, packed in Python
        self.n_txn = 0
        self.t0, self.t_end = t0, t_end

    def txn(
        self, ts: Any, payer: Any, payee: Any, amount: Any, chan: Any, *, cur: Any = _CNY,
        cash: Any = False, xb: Any = False, dev: Any = -1, phone: Any = -1, memo: Any = -1,
        scen: Any = -1, sid: Any = -1,
    ) -> None:  # fmt: skip
        one = (ts, payer, payee, amount, chan, cur, cash, xb, dev, phone, memo, scen, sid)
        if all(isinstance(x, _SCALARS) for x in one):  # a case's single payment: no numpy
            t = int(ts)
            if self.t0 <= t < self.t_end:
                packed = 0
                for value, f in zip((cur, chan, cash, xb, memo, scen, sid), _TXN_FIELDS, strict=True):
                    packed |= (int(value) + 1) << f[0]
                parties = (int(payer) + 1) << 32 | (int(payee) + 1)
                device_phone = (int(dev) + 1) << 32 | (int(phone) + 1)
                self.rows.append((t, 1, parties, device_phone, int(amount), packed))
                self.n_txn += 1
            return
        n = np.size(ts)
        codes: Any = 0  # sizes are checked once per column, in _append
        for value, f in zip((cur, chan, cash, xb, memo, scen, sid), _TXN_FIELDS, strict=True):
            codes = codes | (np.asarray(value, dtype=np.int64) + 1) << f[0]
        ab = (np.asarray(payer, dtype=np.int64) + 1) << 32 | (np.asarray(payee, dtype=np.int64) + 1)
        dp = (np.asarray(dev, dtype=np.int64) + 1) << 32 | (np.asarray(phone, dtype=np.int64) + 1)
        self.n_txn += self._append(n, ts, 1, ab, dp, amount, codes)

    def call(
        self, ts: Any, caller: Any, callee: Any, dur: Any, *, outcome: Any = None, scen: Any = -1,
        sid: Any = -1,
    ) -> None:  # fmt: skip
        """Calls with their final outcome (default: answered when there is a duration, else
        unanswered)."""
        n = np.asarray(ts).size
        if outcome is None:
            outcome = np.where(_col(dur, n) > 0, _OUT["answered"], _OUT["unanswered"])
        ab = (_col(caller, n) + 1) << 32 | (_col(callee, n) + 1)
        codes = (
            (_col(outcome, n) + 1) << _F_OUT[0]
            | (_col(scen, n) + 1) << _F_SCEN[0]
            | (_col(sid, n) + 1) << _F_SID[0]
        )
        self._append(n, ts, 0, ab, 0, dur, codes)

    def _append(self, n: int, *values: Any) -> int:
        """Append the rows inside the window; return how many."""
        cols = [
            np.full(n, c) if c.ndim == 0 else np.ascontiguousarray(c) for c in (_col(v, n) for v in values)
        ]
        ts = cols[0]
        inside = (ts >= self.t0) & (ts < self.t_end)
        if not inside.all():
            cols = [c[inside] for c in cols]
        for name, c in zip(self.COLUMNS, cols, strict=True):
            self.parts[name].append(c)
        return int(cols[0].size)

    def columns(self) -> list[Array]:
        """The packed columns: the parts in the order they were added, then the single rows."""
        rows = np.array(self.rows, dtype=np.int64).reshape(len(self.rows), len(self.COLUMNS))
        return [np.concatenate([*self.parts[k], rows[:, i]]) for i, k in enumerate(self.COLUMNS)]


_TXN_FIELDS = (_F_CUR, _F_CHAN, _F_CASH, _F_XB, _F_MEMO, _F_SCEN, _F_SID)


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
        self._acted: tuple[Array, Array] | None = None
        self._outside: Array | None = None
        self.free = np.arange(n_persons)  # persons in no planted case (set by _allocate)
        rng = _rng(cfg.seed, "world")
        bank_cdf = _cdf(_BANK_W)

        # persons: one bank account, a phone, one or two devices (persons come first: 0..n-1)
        self.inst_p = _draw(rng, bank_cdf, n)
        age = np.where(rng.random(n) < 0.03, rng.integers(1, 90, n), rng.integers(180, 15 * 365, n))
        self.acc_p = self.acc.add(_Accounts.PERSON, self.inst_p, self.start_day - age, n)
        cls = np.array([_CLS[c] for c in ("mobile", "landline", "virtual_operator", "international")])
        self.phone_cls = cls[_draw(rng, _cdf((0.94, 0.015, 0.04, 0.005)), n)]
        self.phone = self.ph.add(self.phone_cls, n)
        self.acc.set(self.acc_p, phone=self.phone)
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
        self.acc.set(self.emp_acc, phone=self.emp_phone, payroll=True)
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
        category = np.asarray(_SHOP_CATS)[_draw(_rng(cfg.seed, "categories"), _cdf(_SHOP_CAT_W), n_mer)]
        self.acc.set(self.mer_col, phone=self.mer_phone, category=category)
        self.acc.set(self.mer_bank, phone=self.mer_phone, category=category)
        self.acc.set(self.util_acc, category=_CAT["utility"])
        self.shop_owner = np.full(n_mer, -1, dtype=np.int64)  # look-alike shops: owner person
        self.shop_sid = np.full(n_mer, -1, dtype=np.int64)
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

    def new_person(
        self, rng: np.random.Generator, opened_day: int, *, last_active: int = _Accounts.ACTIVE,
        payment: bool = False,
    ) -> tuple[int, int, int]:  # fmt: skip
        """A new person account outside the population: (account, phone, institution); the phone
        is on file at the institution. ``payment``: at a payment institution, not a bank."""
        if payment:
            inst = _I_PAY + int(_draw(rng, _cdf(_PAYMENT_W), 1)[0])
        else:
            inst = int(_draw(rng, _cdf(_BANK_W), 1)[0])
        cls = _CLS["mobile"] if rng.random() < 0.75 else _CLS["virtual_operator"]
        phone = int(self.ph.add(cls)[0])
        acc = int(self.acc.add(_Accounts.PERSON, inst, opened_day, phone=phone, last_active=last_active)[0])
        return acc, phone, inst

    def new_org(
        self, rng: np.random.Generator, opened_day: int, payment: bool = False, *, category: int = -1,
        payroll: bool = False, phone: int = -1,
    ) -> int:  # fmt: skip
        if payment:
            inst = _I_PAY + int(_draw(rng, _cdf(_PAYMENT_W), 1)[0])
        else:
            inst = int(_draw(rng, _cdf(_BANK_W), 1)[0])
        return int(
            self.acc.add(_Accounts.ORG, inst, opened_day, phone=phone, category=category, payroll=payroll)[0]
        )

    def new_overseas(self, rng: np.random.Generator) -> int:
        """An account abroad (no opened date: not a customer of a reporting institution)."""
        inst = _I_OVERSEAS + int(rng.integers(0, len(_OVERSEAS_INST)))
        return int(self.acc.add(_Accounts.OVERSEAS, inst, _NO_DATE)[0])

    def outside_phones(self, rng: np.random.Generator, k: int) -> Array:
        """``k`` numbers of people outside the population (dial lists reach them too): drawn from
        one pool per world, several times the population, made on first use."""
        if self._outside is None:
            size = max(5_000, 3 * self.n_p)
            self._outside = self.ph.add(_CLS["mobile"], size)
        out: Array = self._outside[rng.integers(0, self._outside.size, k)]
        return out

    def free_persons(self, rng: np.random.Generator, k: int) -> Array:
        """``k`` distinct population persons in no planted case (ordinary counterparties)."""
        k = min(k, self.free.size)
        out: Array = self.free[rng.choice(self.free.size, k, replace=False)] if k else self.free[:0]
        return out

    def label(self, acc: Any, scen: int, sid: int, role: str, phone: bool = False) -> None:
        self._labels.append((phone, np.atleast_1d(np.asarray(acc, np.int64)), scen, sid, role))

    def note_actors(self, kind: Array, ab: Array, codes: Array) -> None:
        """Remember who acted in each planted case (from the packed rows, before ordering)."""
        sid = _bits(codes, _F_SID)
        rows = np.flatnonzero(sid)
        sid, kind, ab = sid[rows] - 1, kind[rows], ab[rows]
        a, b = _bits(ab, _HIGH31) - 1, _bits(ab, _LOW32) - 1
        txn = kind == 1
        acc = np.concatenate([a[txn], b[txn]])
        acc_sid = np.concatenate([sid[txn], sid[txn]])
        ph = np.concatenate([a[~txn], b[~txn]])
        ph_sid = np.concatenate([sid[~txn], sid[~txn]])
        self._acted = (np.unique(acc_sid << 32 | acc), np.unique(ph_sid << 32 | ph))

    def prune_labels(self) -> None:
        """Drop labels of accounts and numbers that do nothing in their case (their part fell
        past the window's end), so every labelled account acts in its case."""
        if self._acted is None or not self._labels:
            return
        acc_keys, ph_keys = self._acted
        sizes = [x[1].size for x in self._labels]
        idx = np.concatenate([x[1] for x in self._labels])
        sid = np.repeat(np.asarray([x[3] for x in self._labels], dtype=np.int64), sizes)
        phone = np.repeat([x[0] for x in self._labels], sizes)
        keys = sid << 32 | idx
        keep = np.where(phone, np.isin(keys, ph_keys), np.isin(keys, acc_keys))
        kept = []
        for (is_phone, ids, scen, case, role), mask in zip(
            self._labels, np.split(keep, np.cumsum(sizes)[:-1]), strict=True
        ):
            if mask.any():
                kept.append((is_phone, ids[mask], scen, case, role))
        self._labels = kept

    def scenario_persons(self, lookalikes: bool = False) -> int:
        """Population persons labelled in fraud cases (or, ``lookalikes``, in look-alike cases)."""
        n_fraud = len(SCENARIOS)
        labelled = [
            idx for phone, idx, scen, *_ in self._labels if not phone and (scen >= n_fraud) == lookalikes
        ]
        if not labelled:
            return 0
        idx = np.unique(np.concatenate(labelled))
        return int(np.count_nonzero(idx < self.n_p))

    def registry_frame(self) -> pl.DataFrame:
        """What the institutions know of their customers (every person and organisation account
        at a domestic bank or payment institution), sorted by account.

        Accounts in use up to the window were last active a few days before it (unknown for a
        few: records that do not say); accounts opened in the window have no earlier activity.
        """
        acc = self.acc
        rng = _rng(self.cfg.seed, "registry")
        rows = np.flatnonzero(
            ((acc.fmt == _Accounts.PERSON) | (acc.fmt == _Accounts.ORG)) & (acc.inst < _I_OVERSEAS)
        )
        opened = acc.opened[rows].astype(np.int64)
        last = acc.last_active[rows].astype(np.int64)
        active = last == _Accounts.ACTIVE
        recent = self.start_day - 1 - rng.geometric(0.25, rows.size) + 1
        last = np.where(active, np.maximum(recent, opened), last)
        unknown = (active & (rng.random(rows.size) < 0.02)) | (opened >= self.start_day)
        last = np.where(unknown | (last == _NO_DATE), _NO_DATE, last)

        def dates(days: Array) -> pl.Series:
            s = pl.Series(days.astype(np.int32))
            return pl.select(pl.when(s != _NO_DATE).then(s).cast(pl.Date)).to_series()

        cat = acc.category[rows].astype(np.int64)
        phone = acc.phone[rows]
        frame = pl.DataFrame(
            {
                "account": self.acc.ids.gather(rows + 1),
                "institution": pl.Series(_INSTITUTIONS).gather(acc.inst[rows].astype(np.int64)),
                "party_type": pl.Series(PARTY_TYPES).gather(acc.party[rows].astype(np.int64)),
                "opened_date": dates(np.where(opened == _NO_DATE, _NO_DATE, opened)),
                "last_active_date": dates(last),
                "merchant_category": _nullable(_CATEGORIES, pl.String()).gather(cat + 1),
                "payroll": acc.payroll[rows],
                "phone": self.ph.ids.gather(phone + 1),
            },
            schema=REGISTRY_SCHEMA,
        )
        return frame.sort("account")

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
                "scenario": pl.Series(LABELS).gather(np.repeat([x[2] for x in self._labels], sizes)),
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
    # a look-alike shop settles to its owner's personal card instead (a labelled case)
    owner = w.shop_owner[m]
    shop = owner >= 0
    ev.txn(
        w.times(rng, d + 1, _NIGHT), w.mer_col[m],
        np.where(shop, w.acc_p[np.maximum(owner, 0)], w.mer_bank[m]), net, _CH["online_banking"],
        phone=np.where(rng.random(m.size) < 0.5, w.mer_phone[m], -1),
        scen=np.where(shop, _SC["lookalike_shop_settlement"], -1), sid=w.shop_sid[m],
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
    outcome = _outcomes(rng, n, unanswered=0.10, rejected=0.02)
    duration = np.where(outcome == _OUT["answered"], duration, 0)
    ev.call(
        w.times(rng, rng.integers(0, w.days, n), _CALLS), w.phone[p], w.phone[to], duration,
        outcome=outcome,
    )  # fmt: skip

    # couriers and customer service calling persons: short calls, often virtual numbers
    p = np.repeat(np.arange(w.n_p), rng.poisson(w.cfg.service_calls_per_day * w.days, w.n_p))
    n = p.size
    duration = np.exp(rng.normal(math.log(40), 0.7, n)).clip(3, 900).astype(np.int64)
    # people let unknown numbers ring out more often than their family's
    outcome = _outcomes(rng, n, unanswered=0.2, rejected=0.05)
    duration = np.where(outcome == _OUT["answered"], duration, 0)
    ev.call(
        w.times(rng, rng.integers(0, w.days, n), _DAYTIME),
        w.svc_phone[rng.integers(0, w.svc_phone.size, n)], w.phone[p], duration, outcome=outcome,
    )  # fmt: skip


def _outcomes(rng: np.random.Generator, n: int, *, unanswered: float, rejected: float) -> Array:
    """Call outcomes: unanswered and rejected with these chances, the rest answered."""
    u = rng.random(n)
    out: Array = np.where(
        u < unanswered,
        _OUT["unanswered"],
        np.where(u < unanswered + rejected, _OUT["rejected"], _OUT["answered"]),
    )
    return out


# ---------------------------------------------------------------------------- planted scenarios

# population persons a case needs, and on average, per scenario (SCENARIOS order)
_MIN_PERSONS = (1, 8, 3, 3, 1, 1, 1, 1, 1, 1, 6, 8, 1)
_MEAN_PERSONS = (1, 20, 5, 4, 1, 1, 1, 2.5, 3, 2, 30, 40, 1.5)
_N_LEGACY = 6  # the original families: a config may weight just these


@dataclass
class _Plan:
    """Population persons of each label's cases (fraud: groups by scenario; look-alikes: one
    person at the centre of each case)."""

    groups: dict[str, list[Array]]


def _shares(budget: int, weights: Array) -> Array:
    """``budget`` split by ``weights`` into integers (largest remainders)."""
    raw = weights / weights.sum() * budget
    alloc: Array = np.floor(raw).astype(np.int64)
    alloc[np.argsort(alloc - raw, kind="stable")[: budget - int(alloc.sum())]] += 1
    return alloc


def _allocate(w: _World) -> _Plan:
    """Draw the persons of every planted case before ordinary life is generated (look-alike
    shops change how their merchant settles); the rest of the population stays free."""
    cfg = w.cfg
    plan = _Plan({s: [] for s in LABELS})
    perm = _rng(cfg.seed, "plant").permutation(w.n_p)
    weights = np.zeros(len(SCENARIOS))
    weights[: len(cfg.scenario_weights)] = cfg.scenario_weights
    budget = round(cfg.scenario_rate * w.n_p)
    alloc = np.zeros(len(SCENARIOS), dtype=np.int64)
    if budget:
        alloc = np.where(weights > 0, np.maximum(_shares(budget, weights), _MIN_PERSONS), 0)
    n_look = round(cfg.lookalike_rate * w.n_p)
    look_w = np.asarray(cfg.lookalike_weights, dtype=np.float64)
    look = np.zeros(len(LOOKALIKES), dtype=np.int64)
    if n_look and look_w.sum() > 0:
        look = np.where(look_w > 0, np.maximum(_shares(n_look, look_w), 1), 0)
    if alloc.sum() + look.sum() > w.n_p:
        raise ValueError(f"planted cases need {alloc.sum() + look.sum()} persons, population is {w.n_p}")
    first = 0
    for s, k, mean in zip(SCENARIOS, alloc.tolist(), _MEAN_PERSONS, strict=True):
        group, first = perm[first : first + k], first + k
        if k:
            plan.groups[s] = np.array_split(group, max(1, round(k / mean)))
    for s, k in zip(LOOKALIKES, look.tolist(), strict=True):
        group, first = perm[first : first + k], first + k
        plan.groups[s] = [group[i : i + 1] for i in range(k)]
    w.free = np.sort(perm[first:])
    _plan_shops(w, plan)
    return plan


def _plan_shops(w: _World, plan: _Plan) -> None:
    """Small population merchants whose takings settle to their owner's personal card (the
    owner is the look-alike's person); the most popular tenth of merchants are chains, left out."""
    S = _SC["lookalike_shop_settlement"]
    owners = plan.groups["lookalike_shop_settlement"]
    if not owners:
        return
    rng = _rng(w.cfg.seed, "plant/lookalike_shop_settlement/shops")
    popularity = np.diff(np.concatenate([[0.0], w.mer_cdf]))
    small = np.flatnonzero(popularity <= np.quantile(popularity, 0.9))
    shops = rng.choice(small, min(len(owners), small.size), replace=False)
    plan.groups["lookalike_shop_settlement"] = owners[: shops.size]
    for owner, m in zip(owners, shops.tolist(), strict=False):
        w.shop_owner[m] = int(owner[0])
        w.shop_sid[m] = w.next_sid()
        w.label(w.mer_col[m], S, int(w.shop_sid[m]), "lookalike")
        w.label(w.acc_p[int(owner[0])], S, int(w.shop_sid[m]), "lookalike")


def _plant(w: _World, ev: _Events, plan: _Plan) -> dict[str, int]:
    """Plant every case of the plan; returns the number of cases per label."""
    planters: dict[str, Callable[[_World, _Events, np.random.Generator, list[Array]], int]] = {
        "telecom_fraud": _telecom_fraud,
        "illegal_fundraising": _fundraising,
        "mule_ring": _mule_ring,
        "round_tripping": _round_tripping,
        "structuring": _structuring,
        "large_value_genuine": _large_value,
        "telecom_fraud_repeat": _telecom_fraud_repeat,
        "mule_split_forwarding": _split_forwarding,
        "rented_dormant_mule": _rented_dormant,
        "robocall": _robocall,
        "pyramid_scheme": _pyramid,
        "ponzi_exit": _ponzi_exit,
        "structuring_thresholds": _structuring_thresholds,
        "lookalike_shop_settlement": _shop_owner,
        "lookalike_salary_run": _salary_run,
        "lookalike_courier": _courier,
        "lookalike_family_call": _family_call,
        "lookalike_crowdfunding": _crowdfunding,
        "lookalike_dormant_reactivation": _dormant_reactivation,
        "lookalike_group_buy": _group_buy,
        "lookalike_home_purchase": _home_purchase,
    }
    cases = {s: 0 for s in LABELS}
    for s in LABELS:
        if plan.groups[s]:
            cases[s] = planters[s](w, ev, _rng(w.cfg.seed, f"plant/{s}"), plan.groups[s])
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
    """Cash deposits or withdrawals of 45,000-49,999.99 CNY over a few days at different
    branches, just under the 50,000 CNY cash reporting line; or transfers ten times that, just
    under a person's 500,000 CNY transfer line (a 49,000 CNY transfer is under no line)."""
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
                w.times(rng, day, _XFER), w.acc_p[s], payees, amount * 10, chan, dev=w.dev1[s],
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


# ---------------------------------------------------------------------------- shared parts of the new cases

# Fraud numbers: virtual operators, international and spoofed numbers, and SIM cards bought in
# others' names (ordinary mobile prefixes).
_FRAUD_CLS = (_CLS["virtual_operator"], _CLS["international"], _CLS["spoofed_suspect"], _CLS["mobile"])
_FRAUD_CLS_W = (0.4, 0.25, 0.15, 0.2)
_MULE_ROLES = ("mule", "mule_level2", "mule_level3")
# How each level of a gang gets money out: ATM, a payment-platform "merchant" (跑分), a crypto
# OTC trader's card (U商), a transfer abroad. Level-1 accounts rarely send abroad themselves.
_CASHOUT = ("atm", "payment", "otc", "overseas")
_CASHOUT_W = ((0.3, 0.4, 0.3, 0.0), (0.35, 0.3, 0.2, 0.15), (0.3, 0.25, 0.2, 0.25))
_ATM_DAY_LIMIT = 20_000 * CNY  # a debit card's daily ATM withdrawal limit
_MULE_CHANNELS = (_CH["mobile_app"], _CH["online_banking"], _CH["third_party_payment"])
# per-transaction limits persons set on mobile and online banking
_APP_LIMITS = (50_000 * CNY, 100_000 * CNY, 200_000 * CNY, 500_000 * CNY)
_APP_LIMITS_W = (0.3, 0.3, 0.25, 0.15)


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _yuan(rng: np.random.Generator, amount: float, *, whole: float = 0.8) -> int:
    """``amount`` yuan in fen as people type it: mostly whole hundreds or thousands."""
    y = max(1.0, amount)
    u = rng.random()
    if u < whole / 2 and y >= 2_000:
        return int(round(y, -3)) * CNY
    if u < whole and y >= 200:
        return int(round(y, -2)) * CNY
    return max(1, int(y * CNY))


def _at(w: _World, rng: np.random.Generator, day: int, lo_h: float, hi_h: float) -> int:
    """A time on window day ``day`` between local hours ``lo_h`` and ``hi_h``."""
    return w.t0 + day * DAY_MS + int(rng.uniform(lo_h, hi_h) * HOUR_MS)


def _minutes(rng: np.random.Generator, median: float, sigma: float, lo: float, hi: float) -> int:
    """A delay in ms: log-normal minutes around ``median``, clipped to ``[lo, hi]``."""
    return int(min(hi, max(lo, math.exp(rng.normal(math.log(median), sigma)))) * MINUTE_MS)


def _waking(w: _World, rng: np.random.Generator, t: int) -> int:
    """``t``, or the next morning when ``t`` falls in the local night (people pay awake)."""
    hour = (t - w.t0) % DAY_MS / HOUR_MS
    if 8 <= hour < 22.5:
        return t
    day = (t - w.t0) // DAY_MS + (1 if hour >= 22.5 else 0)
    return _at(w, rng, int(day), 8, 11)


def _open_counter(w: _World, ts: Any, chan: Any) -> Any:
    """``chan``, with a counter payment outside branch hours (09:00-17:00 local) made in the
    app instead (``ts``, ``chan``: scalars or arrays)."""
    hour = (np.asarray(ts) - w.t0) % DAY_MS // HOUR_MS
    closed = (hour < 9) | (hour >= 17)
    out = np.where((np.asarray(chan) == _CH["counter"]) & closed, _CH["mobile_app"], chan)
    return int(out) if out.ndim == 0 else out


def _bank_hours(w: _World, rng: np.random.Generator, t: int) -> int:
    """``t``, or the next time a branch counter is open (09:00-17:00 local)."""
    hour = (t - w.t0) % DAY_MS / HOUR_MS
    if 9 <= hour < 17:
        return t
    day = (t - w.t0) // DAY_MS + (1 if hour >= 17 else 0)
    return _at(w, rng, int(day), 9, 11)


def _fraud_phone(w: _World, rng: np.random.Generator) -> int:
    return int(w.ph.add(_pick(rng, _FRAUD_CLS, _FRAUD_CLS_W))[0])


def _spray(
    w: _World,
    ev: _Events,
    rng: np.random.Generator,
    caller: int,
    lo: int,
    hi: int,
    n: int,
    label: tuple[int, int],
) -> None:
    """A fraud number's other calls around a case: a dial list, many unanswered, a few short talks."""
    if n <= 0 or hi <= lo:
        return
    callees = np.where(rng.random(n) < 0.6, w.phone[rng.integers(0, w.n_p, n)], w.outside_phones(rng, n))
    outcome = _outcomes(rng, n, unanswered=rng.uniform(0.3, 0.7), rejected=rng.uniform(0.05, 0.15))
    dur = np.where(outcome == _OUT["answered"], rng.integers(3, 120, n), 0)
    ev.call(rng.integers(lo, hi, n), caller, callees, dur, outcome=outcome, scen=label[0], sid=label[1])


def _talk(
    w: _World,
    ev: _Events,
    rng: np.random.Generator,
    caller: int,
    callee: int,
    t_pay: int,
    label: tuple[int, int],
    *,
    lead: tuple[float, float, float] = (15, 2, 90),
    through: float = 0.6,
) -> None:
    """A fraudster's call that talks the victim into paying at ``t_pay``: it starts ``lead``
    (median, min, max minutes) before, and with chance ``through`` lasts past the payment (the
    victim pays while on the phone)."""
    start = t_pay - _minutes(rng, lead[0], 0.7, lead[1], lead[2])
    end = (
        t_pay + _minutes(rng, 15, 0.9, 1, 180)
        if rng.random() < through
        else t_pay - int(rng.uniform(0.05, 0.9) * (t_pay - start))
    )
    ev.call(start, caller, callee, max(20, (end - start) // SECOND_MS), scen=label[0], sid=label[1])


def _victim_pays(
    w: _World,
    ev: _Events,
    rng: np.random.Generator,
    v: int,
    t: int,
    payee: int,
    amount: int,
    label: tuple[int, int],
    *,
    memo: int = -1,
    limit: int = 200_000 * CNY,
) -> list[tuple[int, int]]:
    """Population person ``v`` pays ``amount`` to ``payee`` from ``t``: in the app, online, by a
    payment app or at the counter; above the app's per-transaction ``limit`` in several
    transfers a minute or two apart. Returns (time, amount) of each transfer."""
    chan = _pick(
        rng,
        (_CH["mobile_app"], _CH["online_banking"], _CH["third_party_payment"], _CH["counter"]),
        (0.72, 0.15, 0.06, 0.07),
    )
    chan = _open_counter(w, t, chan)
    if chan == _CH["counter"] or amount <= limit:
        parts = [amount]
    else:
        n = -(-amount // limit)
        parts = _split(rng, amount, n).tolist()
        while max(parts) > limit:
            n += 1
            parts = _split(rng, amount, n).tolist()
    times = t + np.cumsum(rng.integers(40_000, 180_000, len(parts))) - 40_000
    dev = (
        -1
        if chan == _CH["counter"]
        else int(w.dev2[v] if w.dev2[v] >= 0 and rng.random() < 0.3 else w.dev1[v])
    )
    ev.txn(
        times,
        w.acc_p[v],
        payee,
        np.asarray(parts),
        chan,
        dev=dev,
        phone=w.phone[v],
        memo=memo,
        scen=label[0],
        sid=label[1],
    )
    return list(zip(times.tolist(), parts, strict=True))


def _mule_age(rng: np.random.Generator) -> int:
    """Days a sold or lent account was open before its first job: often cards opened to be
    sold, some months or years old."""
    r = rng.random()
    if r < 0.5:
        return int(rng.integers(1, 91))
    if r < 0.8:
        return int(rng.integers(90, 1_096))
    return int(rng.integers(1_096, 3_651))


def _pieces(rng: np.random.Generator, total: int, k: int, alpha: float, limit: int, small: bool) -> list[int]:
    """``total`` in ``k`` or more pieces (uneven for small ``alpha``; none above ``limit``),
    all but the last rounded down to whole hundreds of yuan as typed; with ``small``, one piece
    of a few hundred to a few thousand yuan. Python lists: a case splits a few amounts at a
    time, where small numpy arrays cost more than they save."""
    k = min(max(k, -(-total // limit)), max(1, total // CNY))  # at least a yuan a piece
    weights = rng.dirichlet([alpha] * k).tolist() if k > 1 else [1.0]
    if small and k >= 2 and total > 20_000 * CNY:
        first = float(rng.uniform(100, 3_000)) * CNY / total
        rest = sum(weights[1:]) or 1.0
        weights = [first] + [x * (1 - first) / rest for x in weights[1:]]
    hundred = 100 * CNY
    parts = [int(total * x) for x in weights[:-1]]
    parts = [max(1, p // hundred * hundred if p > 2 * hundred else p) for p in parts]
    parts.append(total - sum(parts))
    if min(parts) <= 0 or max(parts) > limit:  # rare: even pieces under the limit instead
        k = max(1, -(-total // limit))
        parts = [total // k] * k
        parts[-1] += total - sum(parts)
    rng.shuffle(parts)
    return parts


class _Gang:
    """The accounts one gang moves a case's money through, and how it moves it.

    Level-1 mules receive from victims and pass the money on within minutes, whole or in
    pieces, to level-2 and level-3 mules (each keeping a cut of up to 3 %); a level with no
    deeper one (or, now and then, any level) cashes out: ATM withdrawals up to a card's daily
    limit, a payment-platform "merchant", a crypto OTC trader's card, a transfer abroad in USD.
    The gang works from its own phones (devices shared by its accounts). Accounts are made on
    first use, and labelled with their level.
    """

    def __init__(
        self,
        w: _World,
        ev: _Events,
        rng: np.random.Generator,
        label: tuple[int, int],
        day: int,
        *,
        split: tuple[float, float, float],
        pools: tuple[int, int],
        max_pieces: int = 8,
        small: float = 0.3,
        delay: tuple[float, float, float] = (3.0, 8.0, 15.0),
    ) -> None:
        self.w, self.ev, self.rng, self.label, self.day = w, ev, rng, label, day
        self.split, self.max_pieces, self.small, self.delay = split, max_pieces, small, delay
        self.size = (1_000, *pools)
        self.pool: list[list[tuple[int, int, int]]] = [[], [], []]
        self.devices = w.dev.add(int(rng.integers(1, 4)))
        self.limit: dict[int, int] = {}
        self.cashouts: dict[str, int] = {}
        self.atm_used: dict[tuple[int, int], int] = {}  # (account, window day) -> withdrawn

    def new_mule(self, level: int, who: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
        """A mule account at ``level`` (a new one unless ``who`` is given)."""
        w, rng = self.w, self.rng
        if who is None:
            opened = w.start_day + self.day - _mule_age(rng)
            who = w.new_person(rng, opened, payment=level > 0 and rng.random() < 0.15)
        self.pool[level].append(who)
        w.label(who[0], *self.label, _MULE_ROLES[level])
        self.limit[who[0]] = int(_pick(self.rng, _APP_LIMITS, _APP_LIMITS_W))
        return who

    def pick(self, level: int) -> tuple[int, int, int]:
        pool = self.pool[level]
        if len(pool) < self.size[level] and (not pool or self.rng.random() < 0.5):
            return self.new_mule(level)
        return pool[int(self.rng.integers(0, len(pool)))]

    def _send(self, who: tuple[int, int, int], t: int, payee: int, amount: int) -> None:
        """One transfer from mule ``who``, from one of the gang's phones."""
        rng = self.rng
        self.ev.txn(
            t,
            who[0],
            payee,
            amount,
            _pick(rng, _MULE_CHANNELS, (0.8, 0.15, 0.05)),
            dev=int(self.devices[int(rng.integers(0, self.devices.size))]),
            phone=who[1] if rng.random() < 0.9 else -1,
            scen=self.label[0],
            sid=self.label[1],
        )

    def forward(self, level: int, who: tuple[int, int, int], t: int, amount: int) -> None:
        """``who``, a mule at ``level``, received ``amount`` at ``t``: move it on, piece by piece
        a few seconds to minutes apart; a piece now and then straight to cash-out."""
        rng = self.rng
        t += _minutes(rng, self.delay[level], 0.8, 0.5, 240)
        rest = _cut(rng, amount, 0.0, 0.03)
        deeper = level < 2 and self.size[level + 1] > 0
        if not deeper or rng.random() < (0.05, 0.25, 1.0)[level]:
            self.cash_out(level, who, t, rest)
            return
        k = 1
        if rng.random() < self.split[level]:
            k = int(rng.integers(2, self.max_pieces + 1 if level == 0 else 5))
        limit = self.limit[who[0]]
        for part in _pieces(rng, rest, k, float(rng.uniform(0.3, 2.0)), limit, rng.random() < self.small):
            if rng.random() < 0.15:
                self.cash_out(level, who, t, part)
            else:
                nxt = self.pick(level + 1)
                self._send(who, t, nxt[0], part)
                self.forward(level + 1, nxt, t, part)
            t += int(rng.integers(15_000, 180_000))

    def _cashout_account(self, method: str) -> int:
        """The gang's account for a cash-out method (made on first use, labelled cashout)."""
        w, rng = self.w, self.rng
        if method not in self.cashouts:
            if method == "payment":
                acc = w.new_org(
                    rng,
                    w.start_day - int(rng.integers(30, 900)),
                    payment=True,
                    category=_CAT["virtual_goods"],
                )
            elif method == "otc":
                acc = w.new_person(rng, w.start_day - int(rng.integers(30, 2_000)))[0]
            else:
                acc = w.new_overseas(rng)
            w.label(acc, *self.label, "cashout")
            self.cashouts[method] = acc
        return self.cashouts[method]

    def cash_out(self, level: int, who: tuple[int, int, int], t: int, amount: int) -> None:
        rng = self.rng
        acc, phone, inst = who
        method = _pick(rng, _CASHOUT, _CASHOUT_W[level])
        if method == "atm" and (inst >= _I_PAY or amount < 100 * CNY):
            method = "payment"  # no ATM card on a payment-institution account; notes only
        if method == "atm":
            day = (t - self.w.t0) // DAY_MS
            left = _ATM_DAY_LIMIT - self.atm_used.get((acc, day), 0)
            whole = min(amount, left) // (100 * CNY) * (100 * CNY)
            self.atm_used[(acc, day)] = self.atm_used.get((acc, day), 0) + whole
            taken = 0
            while taken < whole:  # notes of up to 5,000 a withdrawal, a minute or two apart
                note = min(int(rng.integers(20, 51)) * 100 * CNY, whole - taken)
                term = int(self.w.atm[inst, int(rng.integers(0, self.w.n_term))])
                self.ev.txn(
                    t,
                    acc,
                    term,
                    note,
                    _CH["atm"],
                    cash=True,
                    phone=phone,
                    scen=self.label[0],
                    sid=self.label[1],
                )
                taken += note
                t += int(rng.integers(40_000, 150_000))
            amount -= taken
            if amount < 100 * CNY:
                return  # a little stays on the card
            method = "payment"  # the rest of the day's money another way
            t += _minutes(rng, 10, 0.6, 2, 60)
        payee = self._cashout_account(method)
        if method == "overseas":
            self.ev.txn(
                t,
                acc,
                payee,
                int(_usd_cents(amount)),
                _CH["online_banking"],
                cur=_USD,
                xb=True,
                dev=int(self.devices[0]),
                phone=phone,
                scen=self.label[0],
                sid=self.label[1],
            )
            return
        k = 1 if method == "otc" else int(rng.integers(1, 4))
        for part in _pieces(rng, amount, k, 2.0, self.limit.get(acc, _APP_LIMITS[-1]), False):
            self._send(who, t, payee, part)
            t += int(rng.integers(20_000, 120_000))


# ---------------------------------------------------------------------------- new fraud scenarios


def _telecom_fraud_repeat(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """A victim who keeps paying. After the first transfer the fraudster calls back (or stays
    on the line) and the victim pays again, minutes to days later, to the same "safe account" or
    to a new one the gang rotates in: police impersonation (large sums, savings then borrowed
    money), loan fraud (small "fees" growing each time), investment fraud (growing deposits over
    days, few calls) and refund fraud. A victim short of money takes an online loan first."""
    S = _SC["telecom_fraud_repeat"]
    kinds = ("impersonation", "loan", "investment", "refund")
    p_more = {"impersonation": 0.45, "loan": 0.35, "investment": 0.3, "refund": 0.5}  # geometric
    same_session = {"impersonation": 0.6, "loan": 0.5, "investment": 0.2, "refund": 0.6}
    first = {"impersonation": (10_000, 200_000), "loan": (500, 5_000), "investment": (1_000, 20_000),
             "refund": (1_000, 30_000)}  # fmt: skip
    growth = {"impersonation": (0.3, 1.5), "loan": (1.3, 3.0), "investment": (1.0, 3.0), "refund": (0.5, 2.0)}
    cap = {"impersonation": 500_000, "loan": 200_000, "investment": 500_000, "refund": 200_000}
    memos = {
        "impersonation": ((-1, _M["安全账户"], _M["转账"]), (0.6, 0.25, 0.15)),
        "loan": ((-1, _M["保证金"], _M["解冻费"], _M["贷款保证金"], _M["还款"]), (0.4, 0.2, 0.15, 0.15, 0.1)),
        "investment": ((-1, _M["投资款"], _M["理财"], _M["转账"]), (0.5, 0.2, 0.15, 0.15)),
        "refund": ((-1, _M["退款"], _M["转账"]), (0.7, 0.15, 0.15)),
    }
    for g in groups:
        v, sid = int(g[0]), w.next_sid()
        label = (S, sid)
        w.label(w.acc_p[v], S, sid, "victim")
        kind = _pick(rng, kinds, (0.35, 0.3, 0.2, 0.15))
        day0 = int(rng.integers(0, max(1, w.days - 1)))
        gang = _Gang(
            w,
            ev,
            rng,
            label,
            day0,
            split=(rng.uniform(0.2, 0.9), 0.4, 0.3),
            pools=(int(rng.integers(2, 6)), int(rng.integers(0, 3))),
        )
        numbers = [_fraud_phone(w, rng) for _ in range(int(rng.integers(1, 4)))]
        w.label(numbers, S, sid, "fraud_caller", phone=True)
        v_phone, limit = int(w.phone[v]), int(_pick(rng, _APP_LIMITS, _APP_LIMITS_W))
        m = min(12, 1 + int(rng.geometric(p_more[kind])))
        t = _at(w, rng, day0, 9, 21)
        _spray(w, ev, rng, numbers[0], t - 2 * DAY_MS, t + DAY_MS, int(rng.integers(0, 120)), label)
        if rng.random() < 0.5:  # an earlier grooming call
            ev.call(
                t - _minutes(rng, 600, 1.0, 60, 2_880),
                numbers[0],
                v_phone,
                int(rng.integers(60, 900)),
                scen=S,
                sid=sid,
            )
        payee: tuple[int, int, int] | None = None
        amount = _loguniform(rng, *first[kind])
        for i in range(m):
            new_session = i == 0 or rng.random() >= same_session[kind]
            if i > 0:
                amount = min(cap[kind], amount * rng.uniform(*growth[kind]))
                if new_session:
                    days_max = 10 if kind == "investment" else 5
                    t = _waking(w, rng, t + int(_loguniform(rng, 2, 24 * days_max) * HOUR_MS))
                else:
                    t += _minutes(rng, 12, 0.7, 2, 90)
            if new_session and (i == 0 or rng.random() < (0.3 if kind == "investment" else 0.9)):
                caller = numbers[int(rng.integers(0, len(numbers)))]
                _talk(w, ev, rng, caller, v_phone, t, label)
            if i > 0 and kind in ("loan", "impersonation") and rng.random() < 0.25:
                # the victim takes an online consumer loan to pay the next "fee"
                lender = w.new_org(
                    rng, w.start_day - int(rng.integers(1_000, 5_000)), payment=rng.random() < 0.5
                )
                w.label(lender, S, sid, "lender")
                loan = _yuan(rng, amount * rng.uniform(1.0, 1.3), whole=1.0)
                ev.txn(
                    t - _minutes(rng, 20, 0.7, 3, 120),
                    lender,
                    w.acc_p[v],
                    loan,
                    _CH["online_banking"],
                    memo=_M["贷款"],
                    scen=S,
                    sid=sid,
                )
            reuse = 0.55 if not new_session else 0.3
            if payee is None or rng.random() >= reuse:
                payee = gang.new_mule(0)
            memo = int(_pick(rng, *memos[kind]))
            for t_in, a_in in _victim_pays(
                w, ev, rng, v, t, payee[0], _yuan(rng, amount), label, memo=memo, limit=limit
            ):
                gang.forward(0, payee, t_in, a_in)
            t += 3 * MINUTE_MS
    return len(groups)


def _split_forwarding(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """A level-1 mule account that several victims pay over one to three days forwards every
    payment within minutes in two to eight pieces of uneven size (often one of a few hundred
    yuan: a test, a fee, a withdrawal) to the gang's level-2 accounts and straight to cash-out;
    level 2 splits again into level 3 or cashes out."""
    S = _SC["mule_split_forwarding"]
    for g in groups:
        sid = w.next_sid()
        label = (S, sid)
        day0 = int(rng.integers(0, max(1, w.days - 1)))
        active = int(rng.integers(1, 4))
        gang = _Gang(
            w,
            ev,
            rng,
            label,
            day0,
            split=(1.0, rng.uniform(0.3, 0.8), 0.3),
            pools=(int(rng.integers(2, 7)), int(rng.integers(0, 5))),
            max_pieces=8,
            small=0.5,
            delay=(rng.uniform(1.5, 6.0), 8.0, 15.0),
        )
        mules = [gang.new_mule(0) for _ in range(1 if rng.random() < 0.7 else 2)]
        number = _fraud_phone(w, rng)
        called = False
        for v in g.tolist():
            w.label(w.acc_p[v], S, sid, "victim")
            t = _at(w, rng, day0 + int(rng.integers(0, active)), 9, 21)
            if rng.random() < 0.7:  # telecom fraud; the rest were groomed in chat apps
                w.label(number, S, sid, "fraud_caller", phone=True)
                _talk(w, ev, rng, number, int(w.phone[v]), t, label)
                called = True
            amount = _loguniform(rng, 5_000, 300_000)
            for i in range(int(rng.integers(1, 4))):
                if i:
                    amount *= rng.uniform(0.3, 1.5)
                    t += _minutes(rng, 40, 1.2, 3, 1_440)
                mule = mules[int(rng.integers(0, len(mules)))]
                for t_in, a_in in _victim_pays(w, ev, rng, v, t, mule[0], _yuan(rng, amount), label):
                    gang.forward(0, mule, t_in, a_in)
        if called:
            _spray(
                w,
                ev,
                rng,
                number,
                w.t0 + day0 * DAY_MS,
                w.t0 + (day0 + active) * DAY_MS,
                int(rng.integers(20, 200)),
                label,
            )
    return len(groups)


def _rented_dormant(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """Old accounts, silent for months or years before the window, rented out (card, online
    banking and the SIM) and suddenly used: a tiny test transfer, then victims' money passed on
    within minutes for a few days, from the gang's phones. Victims of brushing, online-shopping
    refund, fake investment, romance and game-trading scams; most get no phone call at all
    (they were contacted in chat apps). Brushing victims first get a small "commission" back."""
    S = _SC["rented_dormant_mule"]
    kinds = ("brushing", "refund", "investment", "romance", "game")
    for g in groups:
        sid = w.next_sid()
        label = (S, sid)
        wake = int(rng.integers(0, max(1, w.days - 1)))
        active = int(rng.integers(1, 6))
        gang = _Gang(
            w,
            ev,
            rng,
            label,
            wake,
            split=(rng.uniform(0.2, 0.8), 0.4, 0.3),
            pools=(int(rng.integers(2, 5)), int(rng.integers(0, 3))),
        )
        dormant = []
        for _ in range(1 if rng.random() < 0.75 else 2):
            opened = w.start_day - int(rng.integers(730, 4_380))
            last = max(opened + 30, w.start_day - int(rng.integers(180, 1_800)))
            dormant.append(gang.new_mule(0, w.new_person(rng, opened, last_active=last)))
        t_wake = _at(w, rng, wake, 8, 20)
        for d in dormant:  # the gang checks the card works: a tiny transfer in or out
            test = int(rng.integers(1, 1_000))
            lvl2 = gang.pick(1)
            if rng.random() < 0.5:
                gang._send(lvl2, t_wake, d[0], test)
            else:
                gang._send(d, t_wake, lvl2[0], test)
        number = -1
        for v in g.tolist():
            w.label(w.acc_p[v], S, sid, "victim")
            kind = _pick(rng, kinds, (0.4, 0.2, 0.2, 0.1, 0.1))
            t = _waking(w, rng, t_wake + int(_loguniform(rng, 0.3, 24 * active) * HOUR_MS))
            if rng.random() < (0.8 if kind == "refund" else 0.1):
                if number < 0:
                    number = _fraud_phone(w, rng)
                    w.label(number, S, sid, "fraud_caller", phone=True)
                _talk(w, ev, rng, number, int(w.phone[v]), t, label, lead=(15, 5, 40), through=0.4)
            mule = dormant[int(rng.integers(0, len(dormant)))]
            if kind == "brushing":  # a small task paid back with commission, then bigger ones
                small = _yuan(rng, _loguniform(rng, 100, 1_000))
                for t_in, a_in in _victim_pays(w, ev, rng, v, t, mule[0], small, label):
                    gang.forward(0, mule, t_in, a_in)
                t += _minutes(rng, 12, 0.6, 3, 40)
                gang._send(gang.pick(1), t, int(w.acc_p[v]), int(small * rng.uniform(1.05, 1.2)))
                amount, steps, grow = _loguniform(rng, 1_000, 5_000), int(rng.integers(1, 5)), (2.0, 6.0)
            else:
                amount, steps, grow = _loguniform(rng, 2_000, 100_000), int(rng.integers(1, 5)), (1.0, 2.5)
            for i in range(steps):
                if i:
                    amount *= rng.uniform(*grow)
                t = _waking(w, rng, t + _minutes(rng, 30, 1.0, 5, 1_440))
                for t_in, a_in in _victim_pays(
                    w, ev, rng, v, t, mule[0], _yuan(rng, min(amount, 300_000)), label
                ):
                    gang.forward(0, mule, t_in, a_in)
    return len(groups)


def _robocall(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """A gang's auto-dialler: fresh numbers, one after another as each is cut off, dialling
    hundreds to thousands of distinct numbers on their first day and fewer after; most calls
    ring out or are rejected, most answered ones last seconds (a recording), a few callees talk
    to a person (press 1) and some of those pay, often after a call back from another number."""
    S = _SC["robocall"]
    classes = (_CLS["virtual_operator"], _CLS["mobile"], _CLS["international"], _CLS["spoofed_suspect"])
    for g in groups:
        sid = w.next_sid()
        label = (S, sid)
        d0 = int(rng.integers(0, max(1, w.days - 2)))
        day = d0
        spells: list[tuple[int, int, int]] = []  # (number, first day, last day)
        for _ in range(int(rng.integers(1, 5))):
            number = int(w.ph.add(_pick(rng, classes, (0.4, 0.25, 0.2, 0.15)))[0])
            w.label(number, S, sid, "robocaller", phone=True)
            life = int(rng.integers(1, 5))
            n0, decay = _loguniform(rng, 150, 2_500), rng.uniform(0.2, 0.6)
            unans, rej = rng.uniform(0.55, 0.85), rng.uniform(0.05, 0.15)
            for k in range(life):
                n = max(1, round(n0 * decay**k))
                inside = rng.random(n) < 0.6
                pop = w.phone[rng.choice(w.n_p, min(int(inside.sum()), w.n_p), replace=False)]
                callees = w.outside_phones(rng, n)
                callees[np.flatnonzero(inside)[: pop.size]] = pop
                outcome = _outcomes(rng, n, unanswered=unans, rejected=rej)
                r = rng.random(n)
                talk = np.where(
                    r < 0.7,
                    rng.integers(1, 16, n),
                    np.where(r < 0.95, rng.integers(15, 61, n), rng.integers(60, 901, n)),
                )
                dur = np.where(outcome == _OUT["answered"], talk, 0)
                ts = w.t0 + (day + k) * DAY_MS + rng.integers(9 * HOUR_MS, 21 * HOUR_MS, n)
                ev.call(ts, number, callees, dur, outcome=outcome, scen=S, sid=sid)
            spells.append((number, day, day + life - 1))
            day += life if rng.random() < 0.7 else max(1, life - 1)  # the next number takes over
        gang = _Gang(
            w,
            ev,
            rng,
            label,
            d0,
            split=(rng.uniform(0.2, 0.9), 0.4, 0.3),
            pools=(int(rng.integers(1, 5)), int(rng.integers(0, 3))),
        )
        mule = gang.new_mule(0)
        live = [s for s in spells if s[1] < w.days] or spells[:1]
        for v in g.tolist():
            w.label(w.acc_p[v], S, sid, "victim")
            number, lo, hi = live[int(rng.integers(0, len(live)))]
            t = _at(w, rng, int(rng.integers(lo, min(hi, w.days - 1) + 1)), 9, 20)
            ev.call(t, number, w.phone[v], int(rng.integers(180, 1_200)), scen=S, sid=sid)  # pressed 1
            t += _minutes(rng, 40, 0.9, 10, 360)
            if rng.random() < 0.5:  # a person calls back from another number
                back = _fraud_phone(w, rng)
                w.label(back, S, sid, "fraud_caller", phone=True)
                _talk(w, ev, rng, back, int(w.phone[v]), t, label)
            amount = _loguniform(rng, 3_000, 200_000)
            for i in range(int(rng.integers(1, 4))):
                if i:
                    amount *= rng.uniform(0.5, 2.0)
                    t += _minutes(rng, 20, 1.0, 3, 600)
                if i and rng.random() < 0.3:
                    mule = gang.new_mule(0)
                for t_in, a_in in _victim_pays(w, ev, rng, v, t, mule[0], _yuan(rng, amount), label):
                    gang.forward(0, mule, t_in, a_in)
    return len(groups)


_PYRAMID_FEES = (3_800, 6_980, 9_800, 12_800, 19_800, 36_800, 69_800)  # yuan per unit ("一份")


def _pyramid(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """传销: members join by paying a fixed entry fee (one to three units) over the weeks, as
    recruiters bring them in. Platform schemes take the fee into a company account that pays a
    referral bonus to the recruiter and level bonuses up the line (at once or in daily or weekly
    settlements) and sweeps the rest to the controller; chain schemes (the "1040" kind) pay the
    recruiter, who keeps a share and forwards the rest up within hours, level by level, to the
    top, which pays bonuses down to recruiters with large lines."""
    S = _SC["pyramid_scheme"]
    fee_memos = ((-1, _M["入会费"], _M["会员费"], _M["加盟费"], _M["报单"]), (0.4, 0.15, 0.15, 0.15, 0.15))
    bonus_memos = ((-1, _M["奖金"], _M["返利"], _M["提成"]), (0.3, 0.3, 0.2, 0.2))
    for g in groups:
        sid, k = w.next_sid(), g.size
        fee = int(_pick(rng, _PYRAMID_FEES, (0.2, 0.15, 0.15, 0.1, 0.15, 0.15, 0.1))) * CNY
        platform = rng.random() < 0.5
        ctrl = w.new_person(rng, w.start_day - int(rng.integers(365, 3_650)))
        w.label(ctrl[0], S, sid, "controller")
        collector = -1
        if platform:
            collector = w.new_org(rng, w.start_day - int(rng.integers(30, 720)), payment=rng.random() < 0.3)
            w.label(collector, S, sid, "collector")
        # the recruitment tree: each member recruited by an earlier one (busy recruiters more)
        cs = int(rng.integers(0, max(1, w.days // 4)))
        join = cs + np.sort(rng.random(k) ** 0.8) * (w.days - cs - 0.5)
        seeds = int(rng.integers(1, 4))
        parent = np.full(k, -1, dtype=np.int64)
        children = np.zeros(k, dtype=np.int64)
        for i in range(seeds, k):
            wts = 1.0 + children[:i]
            parent[i] = int(rng.choice(i, p=wts / wts.sum()))
            children[parent[i]] += 1
        join_ts = w.t0 + (join * DAY_MS).astype(np.int64)
        join_ts = np.array([_waking(w, rng, int(x)) for x in join_ts])
        # moved to the morning, a join may pass a later one: recruits join after their recruiter
        join_ts = np.maximum.accumulate(join_ts) + np.arange(k)
        units = _codes(rng, (1, 2, 3), (0.8, 0.15, 0.05), k)
        w.label(w.acc_p[g[children > 0]], S, sid, "recruiter")
        w.label(w.acc_p[g[children == 0]], S, sid, "member")
        accounts = np.append(w.acc_p[g], ctrl[0])  # index -1: the controller
        pay = functools.partial(_member_pays, w, ev, rng, (S, sid))

        def acc(i: int, accounts: Array = accounts) -> int:
            return int(accounts[i])

        # platform: fees paid in (time, amount), bonuses paid at once (time, amount), and bonuses
        # due (time of the join that earned it, member, amount), settled periodically
        fees_in: list[tuple[int, int]] = []
        paid_at_once: list[tuple[int, int]] = []
        dues: list[tuple[int, int, int]] = []
        settle = _pick(rng, ("instant", "daily", "weekly"), (0.3, 0.4, 0.3))
        for i in np.argsort(join_ts, kind="stable").tolist():
            t, amount, person = int(join_ts[i]), fee * int(units[i]), int(g[i])
            memo = int(_pick(rng, *fee_memos))
            if platform:
                pay(t, acc(i), collector, amount, memo, person)
                fees_in.append((t, amount))
                up, level, rate = int(parent[i]), 0, rng.uniform(0.1, 0.3)
                while up >= 0 and level < 6:
                    due = int(amount * (rate if level == 0 else rng.uniform(0.02, 0.1)))
                    if settle == "instant":
                        t_b = t + _minutes(rng, 3, 0.8, 0.5, 30)
                        ev.txn(
                            t_b,
                            collector,
                            acc(up),
                            due,
                            _CH["online_banking"],
                            memo=int(_pick(rng, *bonus_memos)),
                            scen=S,
                            sid=sid,
                        )
                        paid_at_once.append((t, due))  # owed from the fee's time
                    else:
                        dues.append((t, up, due))
                    up, level = int(parent[up]), level + 1
            else:  # up the chain: each level keeps a share and forwards the rest promptly
                up = int(parent[i])
                pay(t, acc(i), acc(up), amount, memo, person)
                while up >= 0:
                    amount = int(amount * (1 - rng.uniform(0.1, 0.3)))
                    t += _minutes(rng, 40, 1.0, 5, 360)
                    nxt = int(parent[up])
                    pay(t, acc(up), acc(nxt), amount, -1, int(g[up]))
                    up = nxt
        period = {"daily": 1, "weekly": 7, "instant": 1}[settle]
        settled, next_due = 0, 0
        fees_by, at_once_by = _running_totals(fees_in), _running_totals(paid_at_once)  # in time order
        for d in range(cs + period, w.days, period):  # settlements and sweeps, evenings
            t = _at(w, rng, d, 20, 22.5)
            if platform:  # what joins before this evening earned, and the money in so far
                pending: dict[int, int] = {}
                while next_due < len(dues) and dues[next_due][0] < t:  # dues are in join order
                    _, m, a = dues[next_due]
                    pending[m] = pending.get(m, 0) + a
                    next_due += 1
                for j, (m, a) in enumerate(sorted((m, a) for m, a in pending.items() if a > 0)):
                    ev.txn(
                        t + j * 20_000,
                        collector,
                        acc(m),
                        a,
                        _CH["online_banking"],
                        memo=int(_pick(rng, *bonus_memos)),
                        scen=S,
                        sid=sid,
                    )
                    settled += a
                inflow = fees_by(t)
                out = settled + at_once_by(t)
                sweep = int((inflow - out) * rng.uniform(0.4, 0.8))
                if sweep > 100 * CNY:
                    ev.txn(t + HOUR_MS, collector, ctrl[0], sweep, _CH["online_banking"], scen=S, sid=sid)
                    settled += sweep
            elif (d - cs) % 7 == 0:  # weekly, the top pays recruiters with large lines so far
                joined = join_ts < t
                lines = np.bincount(parent[joined & (parent >= 0)], minlength=k)
                big = np.flatnonzero((lines >= 2) & joined)
                if big.size:
                    amounts = (lines[big] * fee * rng.uniform(0.05, 0.15, big.size)).astype(np.int64)
                    ev.txn(
                        t + np.arange(big.size) * 30_000,
                        ctrl[0],
                        w.acc_p[g[big]],
                        amounts,
                        _CH["mobile_app"],
                        phone=ctrl[1],
                        memo=int(_pick(rng, *bonus_memos)),
                        scen=S,
                        sid=sid,
                    )
    return len(groups)


def _running_totals(items: list[tuple[int, int]]) -> Callable[[int], int]:
    """For (time, amount) pairs in time order: the total of those before a time."""
    times = np.array([t for t, _ in items], dtype=np.int64)
    totals = np.concatenate([[0], np.cumsum([a for _, a in items], dtype=np.int64)])
    return lambda t: int(totals[np.searchsorted(times, t)])


def _member_pays(
    w: _World,
    ev: _Events,
    rng: np.random.Generator,
    label: tuple[int, int],
    t: int,
    payer: int,
    payee: int,
    amount: int,
    memo: int,
    person: int,
) -> None:
    """A pyramid member (population ``person``, or -1 for the controller) pays a fee or a share."""
    chan = _pick(rng, (_CH["mobile_app"], _CH["online_banking"], _CH["counter"]), (0.7, 0.15, 0.15))
    if chan == _CH["counter"] and _bank_hours(w, rng, t) != t:
        chan = _CH["mobile_app"]  # branches are closed
    dev = -1 if chan == _CH["counter"] or person < 0 else int(w.dev1[person])
    phone = -1 if person < 0 else int(w.phone[person])
    ev.txn(t, payer, payee, amount, chan, dev=dev, phone=phone, memo=memo, scen=label[0], sid=label[1])


def _ponzi_exit(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """A Ponzi scheme's last weeks: investors keep paying in (tens of thousands to a million),
    "interest" goes to earlier investors until, days before the collapse, the collector moves
    the pool out in large transfers to the controllers' personal cards (and relatives'), who
    send it abroad in USD, draw cash at the counter or pass it between themselves."""
    S = _SC["ponzi_exit"]
    invest = np.array([_M[m] for m in INVEST_MEMOS])
    returns = np.array([_M[m] for m in RETURN_MEMOS])
    for g in groups:
        sid, k = w.next_sid(), g.size
        org = rng.random() < 0.7
        if org:
            collector = w.new_org(rng, w.start_day - int(rng.integers(90, 1_500)))
            c_phone, c_chan, c_dev, c_limit = -1, _CH["online_banking"], -1, 5_000_000 * CNY
        else:
            collector, c_phone, _ = w.new_person(rng, w.start_day - int(rng.integers(90, 3_000)))
            c_chan, c_dev, c_limit = _CH["mobile_app"], int(w.dev.add()[0]), 500_000 * CNY
        w.label(collector, S, sid, "collector")
        ctrls = [
            w.new_person(rng, w.start_day - int(rng.integers(365, 3_650)))
            for _ in range(int(rng.integers(2, 6)))
        ]
        w.label([c[0] for c in ctrls], S, sid, "controller")
        cs = int(rng.integers(0, max(1, int(w.days * 0.3))))
        collapse = int(rng.integers(min(w.days - 1, cs + max(3, int(w.days * 0.4))), w.days))
        exit_day = max(cs + 2, collapse - int(rng.integers(1, 8)))
        t_exit = _at(w, rng, exit_day, 9, 16)
        # investments, each investor one to three, until the collapse
        who = np.repeat(np.arange(k), _codes(rng, (1, 2, 3), (0.6, 0.3, 0.1), k))
        n = who.size
        ts = np.sort(w.times(rng, cs + rng.integers(0, collapse + 1 - cs, n), _XFER))
        big = rng.random(n) < 0.1
        amount = np.exp(
            np.where(
                big,
                rng.uniform(math.log(300_000), math.log(1_000_000), n),
                rng.uniform(math.log(10_000), math.log(300_000), n),
            )
        )
        amount = (np.round(amount, -3) * CNY).astype(np.int64)
        chan = _codes(rng, (_CH["mobile_app"], _CH["online_banking"], _CH["counter"]), (0.5, 0.3, 0.2), n)
        chan = _open_counter(w, ts, chan)
        dev, _ = _person_cols(w, rng, g[who], chan)
        ev.txn(
            ts,
            w.acc_p[g[who]],
            collector,
            amount,
            chan,
            dev=dev,
            phone=w.phone[g[who]],
            memo=np.where(rng.random(n) < 0.8, invest[rng.integers(0, invest.size, n)], -1),
            scen=S,
            sid=sid,
        )
        w.label(w.acc_p[g[np.unique(who)]], S, sid, "investor")
        out_ts: list[int] = []
        out_amt: list[int] = []
        balance = functools.partial(_pool, ts, amount, out_ts, out_amt)

        # "interest" to earlier investors, monthly rate 1-3 %, until shortly before the exit
        period = int(_pick(rng, (7, 10, 15), (0.4, 0.3, 0.3)))
        rate = rng.uniform(0.01, 0.03) * period / 30
        for d in range(cs + period, exit_day, period):
            t = _at(w, rng, d, 10, 12)
            paid = ts < t - 6 * HOUR_MS
            principal = np.bincount(who[paid], weights=amount[paid], minlength=k)
            payees = np.flatnonzero(principal > 0)
            ret = (principal[payees] * rate).astype(np.int64)
            ok = (ret > 0) & (np.cumsum(ret) <= balance(t))
            payees, ret = payees[ok], ret[ok]
            if payees.size:
                times = t + np.cumsum(rng.integers(5_000, 60_000, payees.size))
                ev.txn(
                    times,
                    collector,
                    w.acc_p[g[payees]],
                    ret,
                    c_chan,
                    dev=c_dev,
                    phone=c_phone,
                    memo=returns[rng.integers(0, returns.size, payees.size)],
                    scen=S,
                    sid=sid,
                )
                out_ts += times.tolist()
                out_amt += ret.tolist()
        # the exit: the pool to the controllers' cards in large transfers over a few days
        t = t_exit
        end = w.t0 + (collapse + 1) * DAY_MS
        while t < end:
            avail = balance(t)
            if avail > 50_000 * CNY:
                a = int(
                    min(c_limit, avail * rng.uniform(0.3, 0.9), _loguniform(rng, 100_000, 2_000_000) * CNY)
                )
                a = max(a // (10_000 * CNY) * (10_000 * CNY), min(avail, 10_000 * CNY))
                ctrl = ctrls[int(rng.integers(0, len(ctrls)))]
                ev.txn(t, collector, ctrl[0], a, c_chan, dev=c_dev, phone=c_phone, scen=S, sid=sid)
                out_ts.append(t)
                out_amt.append(a)
                _controller_moves(w, ev, rng, ctrl, ctrls, t, a, (S, sid))
            t = _waking(w, rng, t + _minutes(rng, 180, 1.0, 10, 2_880))
    return len(groups)


def _pool(in_ts: Array, in_amt: Array, out_ts: list[int], out_amt: list[int], t: int) -> int:
    """What a collector holds at ``t``: money in before it, less money out before it."""
    out = sum(a for x, a in zip(out_ts, out_amt, strict=True) if x < t)
    return int(in_amt[in_ts < t].sum()) - out


def _controller_moves(
    w: _World,
    ev: _Events,
    rng: np.random.Generator,
    ctrl: tuple[int, int, int],
    ctrls: list[tuple[int, int, int]],
    t: int,
    amount: int,
    label: tuple[int, int],
) -> None:
    """A controller moves what the collector sent: abroad in USD (pieces up to 50,000 USD), cash
    at the counter (appointments for large sums), or to another controller's card."""
    S, sid = label
    acc, phone, inst = ctrl
    t += _minutes(rng, 120, 1.2, 5, 2_880)
    how = _pick(rng, ("abroad", "cash", "relative", "keep"), (0.45, 0.15, 0.25, 0.15))
    if how == "abroad":
        dest = w.new_overseas(rng)
        w.label(dest, S, sid, "cashout")
        cents = int(_usd_cents(int(amount * rng.uniform(0.6, 1.0))))
        parts = np.asarray(_pieces(rng, cents, 1, 2.0, 50_000 * 100, False))
        times = t + np.cumsum(rng.integers(60_000, 600_000, parts.size)) - 60_000
        ev.txn(
            times, acc, dest, parts, _CH["online_banking"], cur=_USD, xb=True, phone=phone, scen=S, sid=sid
        )
    elif how == "cash":
        cash = min(amount, int(_loguniform(rng, 50_000, 500_000)) // 1_000 * 1_000 * CNY)
        branch = int(w.ctr[inst, int(rng.integers(0, w.n_term))])
        ev.txn(
            _bank_hours(w, rng, t), acc, branch, cash, _CH["counter"], cash=True, phone=phone, scen=S, sid=sid
        )
    elif how == "relative":
        other = ctrls[int(rng.integers(0, len(ctrls)))]
        if other[0] != acc:
            ev.txn(
                t,
                acc,
                other[0],
                int(amount * rng.uniform(0.5, 1.0)),
                _CH["mobile_app"],
                phone=phone,
                scen=S,
                sid=sid,
            )


# Reporting lines (PBOC Order [2016] No. 3 Art. 5), in minor units of the currency: the line a
# structurer stays under. Cross-border person transfers: 200,000 CNY or 10,000 USD.
_LINES = {
    ("cash", _CNY): 50_000 * CNY, ("cash", _USD): 10_000 * 100,
    ("person_domestic", _CNY): 500_000 * CNY, ("person_domestic", _USD): 100_000 * 100,
    ("person_cross_border", _CNY): 200_000 * CNY, ("person_cross_border", _USD): 10_000 * 100,
    ("organisation", _CNY): 2_000_000 * CNY, ("organisation", _USD): 200_000 * 100,
}  # fmt: skip


def _under(rng: np.random.Generator, line: int, n: int) -> Array:
    """``n`` amounts just under ``line``: 0.05 % to 15 % below it, mostly in round thousands or
    hundreds of the currency, never at or over it."""
    gap = np.exp(rng.uniform(math.log(0.0005), math.log(0.15), n))
    raw = (line * (1 - gap)).astype(np.int64)
    r = rng.random(n)
    thousand, hundred = 1_000 * 100, 100 * 100
    out: Array = np.where(
        r < 0.5, raw // thousand * thousand, np.where(r < 0.8, raw // hundred * hundred, raw)
    )
    out = np.where(out >= line, line - 1, out)
    return np.maximum(out, 1)


def _schedule(rng: np.random.Generator, days: int) -> Array:
    """Window days of a structurer's pieces: on consecutive days (skipping weekends at times),
    every few days, or on one weekday for weeks."""
    how = _pick(rng, ("daily", "spread", "weekly"), (0.45, 0.35, 0.2))
    if how == "weekly" and days >= 14:
        start = int(rng.integers(0, 7))
        out = np.arange(start, days, 7)[: int(rng.integers(2, 6))]
    elif how == "spread":
        out = np.cumsum(rng.integers(1, 5, int(rng.integers(3, 11))))
        out = out - out[0] + int(rng.integers(0, max(1, days - out[-1] + out[0])))
    else:
        out = np.arange(int(rng.integers(3, 16)))
        out += int(rng.integers(0, max(1, days - out[-1])))
    out = out[out < days]
    return out if out.size else np.array([days - 1])


def _day_pieces(rng: np.random.Generator, day: Array, line: int) -> Array:
    """An amount under ``line`` per piece; the two pieces of one day share one under-line total."""
    out = _under(rng, line, day.size)
    second = np.flatnonzero(np.concatenate([[False], day[1:] == day[:-1]]))
    total = out[second - 1]
    first = np.maximum((total * rng.uniform(0.3, 0.7, second.size)).astype(np.int64) // 10_000 * 10_000, 1)
    out[second - 1], out[second] = first, total - first
    return out


def _structuring_thresholds(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """Splitting under every reporting line, one piece a day (or two that stay under it) across
    days and weeks: cash in CNY under 50,000 and in USD under 10,000; person transfers under
    500,000 CNY (or 100,000 USD) to own or a partner's accounts; a family's remittances abroad
    each under 10,000 USD (or 200,000 CNY); an organisation's transfers under 2,000,000 CNY or,
    abroad, under 200,000 USD."""
    S = _SC["structuring_thresholds"]
    families = ("cash_cny", "cash_usd", "person_domestic", "person_cross_border", "organisation")
    for g in groups:
        sid = w.next_sid()
        family = _pick(rng, families, (0.3, 0.1, 0.2, 0.25, 0.15))
        persons = g.tolist()
        day = _schedule(rng, w.days)
        twice = rng.random(day.size) < 0.2
        day = np.repeat(day, np.where(twice, 2, 1))
        n = day.size

        amounts = functools.partial(_day_pieces, rng, day)
        if family in ("cash_cny", "cash_usd"):
            s = persons[0]
            w.label(w.acc_p[s], S, sid, "structurer")
            cur = _CNY if family == "cash_cny" else _USD
            amount = amounts(_LINES[("cash", cur)])
            deposit = family == "cash_usd" or rng.random() < 0.55
            atm = deposit and cur == _CNY and rng.random() < 0.3  # a cash-recycling machine
            term = (w.atm if atm else w.ctr)[w.inst_p[s], rng.integers(0, w.n_term, n)]
            hours = _DAYTIME if atm else _BANK
            chan = _CH["atm"] if atm else _CH["counter"]
            if deposit:
                ev.txn(
                    w.times(rng, day, hours),
                    term,
                    w.acc_p[s],
                    amount,
                    chan,
                    cur=cur,
                    cash=True,
                    scen=S,
                    sid=sid,
                )
            else:
                ev.txn(
                    w.times(rng, day, hours),
                    w.acc_p[s],
                    term,
                    amount,
                    chan,
                    cur=cur,
                    cash=True,
                    phone=w.phone[s],
                    scen=S,
                    sid=sid,
                )
        elif family == "person_domestic":
            s = persons[0]
            w.label(w.acc_p[s], S, sid, "structurer")
            cur = _USD if rng.random() < 0.15 else _CNY
            cps = [
                w.new_person(rng, w.start_day - int(rng.integers(30, 5_000)))[0]
                for _ in range(int(rng.integers(1, 4)))
            ]
            payee = np.asarray(cps)[rng.integers(0, len(cps), n)]
            w.label(np.unique(payee), S, sid, "counterparty")
            chans = _codes(
                rng, (_CH["online_banking"], _CH["mobile_app"], _CH["counter"]), (0.5, 0.3, 0.2), n
            )
            dev, phone = _person_cols(w, rng, np.full(n, s), chans)
            ev.txn(
                w.times(rng, day, _BANK),
                w.acc_p[s],
                payee,
                amounts(_LINES[("person_domestic", cur)]),
                chans,
                cur=cur,
                dev=dev,
                phone=phone,
                scen=S,
                sid=sid,
            )
        elif family == "person_cross_border":  # "ants moving house": each family member under the line
            dest = w.new_overseas(rng)
            w.label(dest, S, sid, "counterparty")
            cur = _USD if rng.random() < 0.8 else _CNY
            # on each day some of the family each send one remittance under their own line
            days = np.unique(day)
            senders = [rng.permutation(persons)[: int(rng.integers(1, len(persons) + 1))] for _ in days]
            day = np.repeat(days, [x.size for x in senders])
            who = np.concatenate(senders)
            n = day.size
            w.label(w.acc_p[np.unique(who)], S, sid, "structurer")
            chans = _codes(rng, (_CH["online_banking"], _CH["mobile_app"]), (0.6, 0.4), n)
            dev, phone = _person_cols(w, rng, who, chans)
            ev.txn(
                w.times(rng, day, _XFER),
                w.acc_p[who],
                dest,
                _under(rng, _LINES[("person_cross_border", cur)], n),
                chans,
                cur=cur,
                xb=True,
                dev=dev,
                phone=phone,
                memo=_M["学费"] if rng.random() < 0.3 else -1,
                scen=S,
                sid=sid,
            )
        else:
            org = w.new_org(rng, w.start_day - int(rng.integers(200, 5_000)))
            w.label(org, S, sid, "structurer")
            abroad = rng.random() < 0.3
            cur = _USD if abroad else _CNY
            cps = [
                w.new_overseas(rng) if abroad else w.new_org(rng, w.start_day - int(rng.integers(100, 5_000)))
                for _ in range(int(rng.integers(1, 4)))
            ]
            payee = np.asarray(cps)[rng.integers(0, len(cps), n)]
            w.label(np.unique(payee), S, sid, "counterparty")
            ev.txn(
                w.times(rng, day, _BANK),
                org,
                payee,
                amounts(_LINES[("organisation", cur)]),
                _CH["online_banking"],
                cur=cur,
                xb=abroad,
                memo=_pick(rng, (_M["货款"], _M["往来款"], _M["工程款"], -1), (0.4, 0.2, 0.2, 0.2)),
                scen=S,
                sid=sid,
            )
    return len(groups)


# ---------------------------------------------------------------------------- benign look-alikes

_COURIER_HOURS = _cdf((0, 0, 0, 0, 0, 0, 0, 0.5, 4, 8, 9, 8, 5, 6, 8, 9, 8, 6, 4, 2, 1, 0.3, 0, 0))
_RIDER_HOURS = _cdf((0, 0, 0, 0, 0, 0, 0, 0.5, 1, 2, 5, 10, 10, 5, 2, 2, 3, 7, 10, 8, 4, 2, 0.5, 0))


def _shop_owner(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """A small shop (its collection account at a payment institution or acquirer) settles each
    day's takings to the owner's personal card; the owner sometimes buys at the shop (stock for
    home, testing the QR code), pays wholesale suppliers from the card every week or so and draws
    cash. The settlements themselves are made with the ordinary merchant settlements."""
    S = _SC["lookalike_shop_settlement"]
    shop_of = {int(o): m for m, o in enumerate(w.shop_owner.tolist()) if o >= 0}
    for g in groups:
        p = int(g[0])
        m = shop_of[p]
        sid = int(w.shop_sid[m])
        n = int(rng.poisson(2.5 * w.days / 30))
        if n:
            ts = w.times(rng, rng.integers(0, w.days, n), _SHOP)
            amount = (np.exp(rng.normal(math.log(40), 0.9, n)).clip(5, 800) * CNY).astype(np.int64)
            ev.txn(
                ts,
                w.acc_p[p],
                w.mer_col[m],
                amount,
                _CH["qr"],
                dev=w.dev1[p],
                phone=w.phone[p],
                scen=S,
                sid=sid,
            )
        suppliers = [
            w.new_org(rng, w.start_day - int(rng.integers(365, 5_000)), category=_CAT["wholesale"])
            for _ in range(int(rng.integers(1, 4)))
        ]
        w.label(suppliers, S, sid, "lookalike_party")
        n = int(rng.poisson(w.days / 7 * rng.uniform(0.7, 2.0)))
        if n:
            chan = _codes(rng, (_CH["mobile_app"], _CH["online_banking"]), (0.7, 0.3), n)
            amount = np.exp(rng.normal(math.log(4_000), 0.8, n)).clip(300, 60_000)
            ev.txn(
                w.times(rng, rng.integers(0, w.days, n), _XFER),
                w.acc_p[p],
                np.asarray(suppliers)[rng.integers(0, len(suppliers), n)],
                (np.round(amount) * CNY).astype(np.int64),
                chan,
                dev=w.dev1[p],
                phone=w.phone[p],
                memo=_codes(rng, (_M["货款"], -1), (0.6, 0.4), n),
                scen=S,
                sid=sid,
            )
        n = int(rng.poisson(2 * w.days / 30))
        if n:
            ev.txn(
                w.times(rng, rng.integers(0, w.days, n), _DAYTIME),
                w.acc_p[p],
                w.atm[w.inst_p[p], rng.integers(0, w.n_term, n)],
                rng.integers(5, 31, n) * 100 * CNY,
                _CH["atm"],
                cash=True,
                phone=w.phone[p],
                scen=S,
                sid=sid,
            )
    return len(groups)


def _salary_run(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """A small firm pays the same staff every month: from its account by a payroll batch (all
    within a minute or two, memo 工资 mostly), or, in three firms of ten, from the boss's
    personal card one transfer after another after the company paid the card the total. Some
    pay twice a month or add a bonus, commission or expenses run; the firm's clients pay it
    invoices through the month."""
    S = _SC["lookalike_salary_run"]
    for g in groups:
        boss, sid = int(g[0]), w.next_sid()
        staff = w.free_persons(rng, int(np.clip(rng.lognormal(math.log(10), 0.8), 3, 80)))
        if staff.size == 0:
            continue
        personal = rng.random() < 0.3
        firm = w.new_org(
            rng,
            w.start_day - int(rng.integers(365, 5_500)),
            payroll=not personal,
            phone=int(w.ph.add(_CLS["landline"])[0]),
        )
        if personal:
            payer, chan, dev, phone = (
                int(w.acc_p[boss]),
                _CH["mobile_app"],
                int(w.dev1[boss]),
                int(w.phone[boss]),
            )
            w.label(payer, S, sid, "lookalike")
            w.label(firm, S, sid, "lookalike_party")
            memos: tuple[tuple[int, ...], tuple[float, ...]] = ((-1, _M["工资"]), (0.7, 0.3))
        else:
            payer, chan, dev, phone = firm, _CH["online_banking"], -1, -1
            w.label(firm, S, sid, "lookalike")
            memos = ((_M["工资"], _M["salary"], -1), (0.6, 0.05, 0.35))
            clients = [
                w.new_org(rng, w.start_day - int(rng.integers(365, 7_000)))
                for _ in range(int(rng.integers(1, 5)))
            ]
            w.label(clients, S, sid, "lookalike_party")
            n = int(rng.integers(1, 6))
            ev.txn(
                w.times(rng, rng.integers(0, w.days, n), _BANK),
                np.asarray(clients)[rng.integers(0, len(clients), n)],
                firm,
                (np.exp(rng.normal(math.log(80_000), 0.8, n)) // 100 * 100 * CNY).astype(np.int64),
                _CH["online_banking"],
                memo=_M["货款"],
                scen=S,
                sid=sid,
            )
        base = np.exp(rng.normal(math.log(6_000), 0.45, staff.size)).clip(2_500, 40_000)
        doms = [int(_pick(rng, (5, 10, 15, 20, 25, 28), (0.15, 0.25, 0.25, 0.1, 0.1, 0.15)))]
        if rng.random() < 0.15:
            doms.append(doms[0] + 14 if doms[0] <= 14 else doms[0] - 14)  # twice a month
        pay_days = sorted(int(d) for dom in doms for d in w.monthly(np.array([dom]))[1])
        for run, day in enumerate(pay_days):
            if run and rng.random() < 0.3:  # someone joined
                staff = np.concatenate([staff, w.free_persons(rng, 1)])
                base = np.append(base, rng.lognormal(math.log(5_000), 0.3))
            n = staff.size
            amount = base * rng.normal(1.0, 0.03, n) / len(doms)
            amount = np.where(rng.random(n) < 0.6, np.round(amount), np.round(amount, 2))
            t = _at(w, rng, day, 9, 17 if not personal else 22)
            gaps = rng.integers(1_000, 6_000, n) if not personal else rng.integers(20_000, 180_000, n)
            if personal:  # the company pays the boss's card the total first
                ev.txn(
                    t - _minutes(rng, 300, 1.0, 10, 2_880),
                    firm,
                    payer,
                    int(amount.sum() * rng.uniform(1.0, 1.3) * CNY),
                    _CH["online_banking"],
                    memo=_pick(rng, (_M["往来款"], -1), (0.4, 0.6)),
                    scen=S,
                    sid=sid,
                )
            ev.txn(
                t + np.cumsum(gaps),
                payer,
                w.acc_p[staff],
                (amount * CNY).astype(np.int64),
                chan,
                dev=dev,
                phone=phone,
                memo=int(_pick(rng, *memos)),  # a payroll file has one memo
                scen=S,
                sid=sid,
            )
        if rng.random() < 0.3:  # a bonus, commission or expenses run mid-month
            some = staff[rng.random(staff.size) < rng.uniform(0.3, 1.0)]
            if some.size:
                day = int(rng.integers(0, w.days))
                extra = np.exp(rng.normal(math.log(1_500), 0.8, some.size)).clip(100, 20_000).astype(np.int64)
                ev.txn(
                    _at(w, rng, day, 9, 18) + np.cumsum(rng.integers(1_000, 60_000, some.size)),
                    payer,
                    w.acc_p[some],
                    extra * CNY,
                    chan,
                    dev=dev,
                    phone=phone,
                    memo=_pick(rng, (_M["奖金"], _M["提成"], _M["报销"], -1), (0.3, 0.2, 0.3, 0.2)),
                    scen=S,
                    sid=sid,
                )
    return len(groups)


def _courier(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """A courier (30-100 calls a working day) or a food-delivery rider (15-60, at meal times)
    calls the customers of the day from their own mobile or a platform's privacy number: mostly
    answered and short ("your parcel is downstairs"), some unanswered, a few rejected; one day off
    a week; some regular customers every few days."""
    S = _SC["lookalike_courier"]
    for g in groups:
        p, sid = int(g[0]), w.next_sid()
        number = int(w.phone[p]) if rng.random() < 0.6 else int(w.ph.add(_CLS["virtual_operator"])[0])
        if number == w.phone[p] and w.phone_cls[p] not in (_CLS["mobile"], _CLS["virtual_operator"]):
            number = int(w.ph.add(_CLS["mobile"])[0])  # a home landline or a foreign SIM: a work mobile
        w.label(number, S, sid, "lookalike_caller", phone=True)
        courier = rng.random() < 0.5
        per_day = rng.uniform(30, 100) if courier else rng.uniform(15, 60)
        off = int(rng.integers(0, 7))
        days = np.arange(w.days)
        days = days[(days % 7 != off) & (rng.random(w.days) > 0.05)]
        count = rng.poisson(per_day, days.size)
        day = np.repeat(days, count)
        n = day.size
        if n == 0:
            continue
        regulars = w.phone[rng.choice(w.n_p, min(w.n_p, int(rng.integers(20, 61))), replace=False)]
        r = rng.random(n)
        callees = np.where(
            r < 0.15,
            regulars[rng.integers(0, regulars.size, n)],
            np.where(r < 0.8, w.phone[rng.integers(0, w.n_p, n)], w.outside_phones(rng, n)),
        )
        callees = np.where(callees == number, w.phone[(p + 1) % w.n_p], callees)
        answered = rng.uniform(0.75, 0.92)
        outcome = _outcomes(rng, n, unanswered=(1 - answered) * 0.8, rejected=(1 - answered) * 0.2)
        dur = np.where(outcome == _OUT["answered"], np.exp(rng.normal(math.log(20), 0.6, n)).clip(3, 180), 0)
        ts = w.times(rng, day, _COURIER_HOURS if courier else _RIDER_HOURS)
        ev.call(ts, number, callees, dur.astype(np.int64), outcome=outcome, scen=S, sid=sid)
    return len(groups)


def _family_call(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """A relative calls (a child, a parent, a sibling) and minutes to hours later a family
    transfer follows: living costs, tuition, a medical bill, a loan. Some relatives call from a
    new number; a child studying abroad calls from an international number and is sent USD."""
    S = _SC["lookalike_family_call"]
    memos = (
        (_M["生活费"], _M["学费"], _M["医药费"], _M["借款"], _M["红包"], -1),
        (0.25, 0.1, 0.1, 0.15, 0.05, 0.35),
    )
    for g in groups:
        p, sid = int(g[0]), w.next_sid()
        w.label(w.acc_p[p], S, sid, "lookalike")
        for _ in range(1 if rng.random() < 0.75 else 2):
            rel = int(w.family[p, int(rng.integers(0, w.n_family[p]))])
            variant = _pick(rng, ("domestic", "abroad", "new_number"), (0.7, 0.2, 0.1))
            if variant == "abroad":
                caller = int(w.ph.add(_CLS["international"])[0])
                payee = w.new_overseas(rng)
                w.label(payee, S, sid, "lookalike_party")
            else:
                caller = int(w.phone[rel]) if variant == "domestic" else int(w.ph.add(_CLS["mobile"])[0])
                payee = int(w.acc_p[rel])
            w.label(caller, S, sid, "lookalike_caller", phone=True)
            t_call = _at(w, rng, int(rng.integers(0, w.days)), 8, 22)
            talk = _minutes(rng, 6, 0.8, 1, 60) // SECOND_MS
            if rng.random() < 0.8:
                ev.call(t_call, caller, w.phone[p], talk, scen=S, sid=sid)
            else:  # the payer rings back
                ev.call(t_call, w.phone[p], caller, talk, scen=S, sid=sid)
            t = _waking(w, rng, t_call + _minutes(rng, 20, 1.0, 3, 240))
            chan = _pick(rng, (_CH["mobile_app"], _CH["online_banking"], _CH["counter"]), (0.8, 0.15, 0.05))
            chan = _open_counter(w, t, chan)
            dev = -1 if chan == _CH["counter"] else int(w.dev1[p])
            if variant == "abroad":
                ev.txn(
                    t,
                    w.acc_p[p],
                    payee,
                    int(_loguniform(rng, 1_000, 20_000)) * 100,
                    chan,
                    cur=_USD,
                    xb=True,
                    dev=dev,
                    phone=w.phone[p],
                    memo=_pick(rng, (_M["学费"], _M["tuition"], _M["生活费"], -1), (0.3, 0.2, 0.3, 0.2)),
                    scen=S,
                    sid=sid,
                )
            else:
                amount = _yuan(rng, _loguniform(rng, 3_000, 200_000), whole=0.9)
                for k in range(1 if rng.random() < 0.8 else 2):
                    ev.txn(
                        t + k * _minutes(rng, 3, 0.5, 1, 20),
                        w.acc_p[p],
                        payee,
                        amount,
                        chan,
                        dev=dev,
                        phone=w.phone[p],
                        memo=_pick(rng, *memos),
                        scen=S,
                        sid=sid,
                    )
    return len(groups)


_DONATIONS = (10, 20, 50, 100, 200, 500, 1_000, 2_000)
_DONATIONS_W = (0.05, 0.1, 0.2, 0.3, 0.15, 0.12, 0.06, 0.02)


def _crowdfunding(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """Money raised for a family member's medical bills: friends, colleagues and strangers who
    saw the link donate small round sums, most in the first two days; relatives send more; a
    crowdfunding platform pays the raised sum in tranches after checks; the family pays the
    hospital large amounts as the bills come."""
    S = _SC["lookalike_crowdfunding"]
    for g in groups:
        p, sid = int(g[0]), w.next_sid()
        w.label(w.acc_p[p], S, sid, "lookalike")
        d0 = int(rng.integers(0, max(1, w.days - 3)))
        start = _at(w, rng, d0, 9, 21)
        donors = w.free_persons(rng, int(np.clip(rng.lognormal(math.log(30), 0.6), 10, 120)))
        n = donors.size
        received = 0
        if n:
            ts = start + (rng.exponential(1.0, n).clip(0, 10) * DAY_MS).astype(np.int64)
            ts = np.array([_waking(w, rng, int(x)) for x in ts])
            amount = np.asarray(_DONATIONS)[_draw(rng, _cdf(_DONATIONS_W), n)] * CNY
            chan = _codes(rng, (_CH["mobile_app"], _CH["third_party_payment"]), (0.6, 0.4), n)
            dev, phone = _person_cols(w, rng, donors, chan)
            ev.txn(
                ts,
                w.acc_p[donors],
                w.acc_p[p],
                amount,
                chan,
                dev=dev,
                phone=phone,
                memo=_codes(rng, (_M["捐款"], _M["爱心捐款"], -1), (0.3, 0.2, 0.5), n),
                scen=S,
                sid=sid,
            )
            received += int(amount.sum())
        k = int(rng.integers(1, 4))
        rel = w.family[p, rng.integers(0, w.n_family[p], k)]
        amount = (np.exp(rng.uniform(math.log(2_000), math.log(50_000), k)) // 100 * 100 * CNY).astype(
            np.int64
        )
        ev.txn(
            start + rng.integers(HOUR_MS, 3 * DAY_MS, k),
            w.acc_p[rel],
            w.acc_p[p],
            amount,
            _CH["mobile_app"],
            dev=w.dev1[rel],
            phone=w.phone[rel],
            memo=_M["医药费"],
            scen=S,
            sid=sid,
        )
        received += int(amount.sum())
        if rng.random() < 0.6:  # through a platform
            platform = w.new_org(
                rng,
                w.start_day - int(rng.integers(1_000, 3_000)),
                payment=True,
                category=_CAT["crowdfunding_platform"],
            )
            w.label(platform, S, sid, "lookalike_party")
            k = int(rng.integers(1, 4))
            tranche = (np.exp(rng.uniform(math.log(10_000), math.log(200_000), k)) * CNY).astype(np.int64)
            ts = np.sort(start + rng.integers(3 * DAY_MS, 12 * DAY_MS, k))
            ev.txn(ts, platform, w.acc_p[p], tranche, _CH["online_banking"], memo=_M["捐款"], scen=S, sid=sid)
            received += int(tranche.sum())
        hospital = w.new_org(rng, w.start_day - int(rng.integers(3_000, 15_000)), category=_CAT["hospital"])
        w.label(hospital, S, sid, "lookalike_party")
        k = int(rng.integers(1, 5))
        bills = _split(rng, max(k * 1_000 * CNY + 1, int(received * rng.uniform(0.6, 1.2))), k)
        ts = np.sort(start + rng.integers(6 * HOUR_MS, 14 * DAY_MS, k))
        chan = _codes(rng, (_CH["mobile_app"], _CH["counter"], _CH["online_banking"]), (0.5, 0.3, 0.2), k)
        chan = _open_counter(w, ts, chan)
        dev, phone = _person_cols(w, rng, np.full(k, p), chan)
        ev.txn(
            ts,
            w.acc_p[p],
            hospital,
            bills,
            chan,
            dev=dev,
            phone=phone,
            memo=_codes(rng, (_M["医药费"], _M["手术费"], -1), (0.4, 0.2, 0.4), k),
            scen=S,
            sid=sid,
        )
    return len(groups)


def _dormant_reactivation(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """An owner wakes an account of theirs that slept for months or years (at another bank than
    their everyday card): back home, they put cash in and spend from it for a while; or a
    compensation, insurance or housing-fund payout lands in it and they move most of it to their
    everyday card within hours or days; or they empty it to close it."""
    S = _SC["lookalike_dormant_reactivation"]
    for g in groups:
        p, sid = int(g[0]), w.next_sid()
        opened = w.start_day - int(rng.integers(1_095, 5_475))
        last = max(opened + 30, w.start_day - int(rng.integers(180, 3_000)))
        inst = (int(w.inst_p[p]) + int(rng.integers(1, len(_BANKS)))) % len(_BANKS)
        phone = int(w.phone[p]) if rng.random() < 0.7 else int(w.ph.add(_CLS["mobile"])[0])
        acc = int(w.acc.add(_Accounts.PERSON, inst, opened, phone=phone, last_active=last)[0])
        w.label(acc, S, sid, "lookalike")
        day = int(rng.integers(0, max(1, w.days - 2)))
        t = _at(w, rng, day, 9, 17)
        main, dev = int(w.acc_p[p]), int(w.dev1[p])
        variant = _pick(rng, ("return", "windfall", "close"), (0.35, 0.35, 0.3))
        if variant == "return":
            top_up = int(rng.integers(10, 201)) * 100 * CNY
            if rng.random() < 0.5:
                ev.txn(
                    t,
                    w.ctr[inst, int(rng.integers(0, w.n_term))],
                    acc,
                    top_up,
                    _CH["counter"],
                    cash=True,
                    scen=S,
                    sid=sid,
                )
            else:
                ev.txn(t, main, acc, top_up, _CH["mobile_app"], dev=dev, phone=w.phone[p], scen=S, sid=sid)
            n = int(rng.poisson(10))
            if n:
                d = day + rng.integers(0, max(1, w.days - day), n)
                amount = (np.exp(rng.normal(math.log(60), 0.9, n)).clip(2, 2_000) * CNY).astype(np.int64)
                amount = np.minimum(amount, top_up // max(1, n))
                chan = _codes(rng, (_CH["qr"], _CH["third_party_payment"]), (0.6, 0.4), n)
                ev.txn(
                    np.maximum(w.times(rng, d, _SHOP), t + MINUTE_MS),
                    acc,
                    w.mer_col[_draw(rng, w.mer_cdf, n)],
                    np.maximum(amount, CNY),
                    chan,
                    dev=dev,
                    phone=phone,
                    scen=S,
                    sid=sid,
                )
        elif variant == "windfall":
            payer = w.new_org(rng, w.start_day - int(rng.integers(2_000, 10_000)))
            w.label(payer, S, sid, "lookalike_party")
            payout = int(_loguniform(rng, 20_000, 2_000_000)) * CNY
            ev.txn(
                t,
                payer,
                acc,
                payout,
                _CH["online_banking"],
                memo=_pick(rng, (_M["补偿款"], -1), (0.5, 0.5)),
                scen=S,
                sid=sid,
            )
            moved = int(payout * rng.uniform(0.8, 1.0)) // (100 * CNY) * (100 * CNY)
            limit = int(_pick(rng, _APP_LIMITS, _APP_LIMITS_W))
            parts = np.asarray(_pieces(rng, moved, 1, 2.0, limit, False) if moved > 0 else [], dtype=np.int64)
            t_out = _waking(w, rng, t + _minutes(rng, 240, 1.5, 10, 4_320))
            times = t_out + np.cumsum(rng.integers(30_000, 300_000, parts.size)) - 30_000
            ev.txn(times, acc, main, parts, _CH["mobile_app"], dev=dev, phone=phone, scen=S, sid=sid)
        else:
            balance = int(_loguniform(rng, 1_000, 200_000)) * CNY
            counter = rng.random() < 0.4
            ev.txn(
                t,
                acc,
                main,
                balance,
                _CH["counter"] if counter else _CH["mobile_app"],
                dev=-1 if counter else dev,
                phone=phone,
                scen=S,
                sid=sid,
            )
    return len(groups)


def _group_buy(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """A neighbourhood group-buy organiser (团长): every few days neighbours send small sums
    for fruit, vegetables or meat through the day; the organiser pays the supplier the round's
    total less a small margin that evening or the next morning, and refunds what ran out."""
    S = _SC["lookalike_group_buy"]
    for g in groups:
        p, sid = int(g[0]), w.next_sid()
        w.label(w.acc_p[p], S, sid, "lookalike")
        hood = w.free_persons(rng, int(np.clip(rng.lognormal(math.log(50), 0.5), 20, 150)))
        if hood.size < 3:
            continue
        if rng.random() < 0.6:
            supplier = w.new_org(
                rng,
                w.start_day - int(rng.integers(365, 5_000)),
                payment=rng.random() < 0.3,
                category=_CAT["wholesale"],
            )
        else:  # a farmer's own card
            supplier = w.new_person(rng, w.start_day - int(rng.integers(365, 8_000)))[0]
        w.label(supplier, S, sid, "lookalike_party")
        step = int(rng.integers(2, 5))
        for day in range(int(rng.integers(0, step)), w.days, step):
            k = max(3, int(rng.binomial(hood.size, rng.uniform(0.1, 0.5))))
            buyers = hood[rng.choice(hood.size, min(k, hood.size), replace=False)]
            k = buyers.size
            amount = (np.exp(rng.normal(math.log(60), 0.6, k)).clip(15, 300)).astype(np.int64) * CNY
            chan = _codes(rng, (_CH["mobile_app"], _CH["third_party_payment"]), (0.5, 0.5), k)
            dev, phone = _person_cols(w, rng, buyers, chan)
            ts = w.times(rng, np.full(k, day), _XFER)
            ev.txn(
                ts,
                w.acc_p[buyers],
                w.acc_p[p],
                amount,
                chan,
                dev=dev,
                phone=phone,
                memo=_codes(rng, (_M["团购"], -1), (0.3, 0.7), k),
                scen=S,
                sid=sid,
            )
            t = (
                max(int(ts.max()), _at(w, rng, day, 20, 23))
                if rng.random() < 0.4
                else _at(w, rng, day + 1, 7, 10)
            )
            ev.txn(
                t,
                w.acc_p[p],
                supplier,
                int(amount.sum() * rng.uniform(0.9, 0.97)),
                _CH["mobile_app"],
                dev=w.dev1[p],
                phone=w.phone[p],
                memo=_pick(rng, (_M["货款"], _M["团购"], -1), (0.4, 0.2, 0.4)),
                scen=S,
                sid=sid,
            )
            if rng.random() < 0.1:
                r = rng.choice(k, min(k, int(rng.integers(1, 4))), replace=False)
                ev.txn(
                    t + _minutes(rng, 30, 0.8, 2, 240) + np.arange(r.size) * 30_000,
                    w.acc_p[p],
                    w.acc_p[buyers[r]],
                    amount[r],
                    _CH["mobile_app"],
                    dev=w.dev1[p],
                    phone=w.phone[p],
                    memo=_M["退款"],
                    scen=S,
                    sid=sid,
                )
    return len(groups)


def _home_purchase(w: _World, ev: _Events, rng: np.random.Generator, groups: list[Array]) -> int:
    """A family pools a home's down payment: parents and relatives each send the buyer tens of
    thousands to a million over a week (often after a call), and within hours or a day or two
    of the last one the buyer pays the developer's escrow account, or the seller, most of it in
    one to three large transfers."""
    S = _SC["lookalike_home_purchase"]
    for g in groups:
        p, sid = int(g[0]), w.next_sid()
        w.label(w.acc_p[p], S, sid, "lookalike")
        helpers = np.unique(w.family[p, : int(w.n_family[p])])[: int(rng.integers(1, 5))]
        d_pay = int(rng.integers(min(3, w.days - 3), w.days - 2))
        days = np.clip(d_pay - rng.integers(0, 8, helpers.size), 0, d_pay)
        amount = (
            np.round(np.exp(rng.uniform(math.log(50_000), math.log(1_000_000), helpers.size)), -4) * CNY
        ).astype(np.int64)
        ts = np.array([_at(w, rng, int(d), 9, 20) for d in days])
        for h, t in zip(helpers.tolist(), ts.tolist(), strict=True):
            if rng.random() < 0.5:
                w.label(w.phone[h], S, sid, "lookalike_caller", phone=True)
                ev.call(
                    t - _minutes(rng, 30, 1.0, 2, 600),
                    w.phone[h],
                    w.phone[p],
                    _minutes(rng, 8, 0.7, 1, 60) // 1_000,
                    scen=S,
                    sid=sid,
                )
        chan = _codes(
            rng, (_CH["online_banking"], _CH["mobile_app"], _CH["counter"]), (0.5, 0.3, 0.2), helpers.size
        )
        chan = _open_counter(w, ts, chan)
        dev, phone = _person_cols(w, rng, helpers, chan)
        memo = _codes(rng, (_M["首付"], _M["购房款"], -1), (0.4, 0.2, 0.4), helpers.size)
        ev.txn(
            ts, w.acc_p[helpers], w.acc_p[p], amount, chan, dev=dev, phone=phone, memo=memo, scen=S, sid=sid
        )
        if rng.random() < 0.6:
            payee = w.new_org(
                rng, w.start_day - int(rng.integers(1_000, 7_000)), category=_CAT["real_estate"]
            )
        else:
            payee = w.new_person(rng, w.start_day - int(rng.integers(1_000, 8_000)))[0]
        w.label(payee, S, sid, "lookalike_party")
        down = int((amount.sum() * rng.uniform(1.0, 1.5)) // (10_000 * CNY) * (10_000 * CNY))
        k = int(rng.integers(1, 4))
        parts = _split(rng, down, k) // (1_000 * CNY) * (1_000 * CNY)
        parts[-1] = down - parts[:-1].sum()
        t = _waking(w, rng, int(ts.max()) + _minutes(rng, 180, 1.2, 20, 1_440))
        chan_pay = _open_counter(w, t, _pick(rng, (_CH["online_banking"], _CH["counter"]), (0.6, 0.4)))
        ev.txn(
            t + np.cumsum(rng.integers(60_000, 600_000, k)) - 60_000,
            w.acc_p[p],
            payee,
            parts,
            chan_pay,
            dev=-1 if chan_pay == _CH["counter"] else w.dev1[p],
            phone=w.phone[p],
            memo=_pick(rng, (_M["首付"], _M["购房款"]), (0.6, 0.4)),
            scen=S,
            sid=sid,
        )
    return len(groups)


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


def _bits(packed: Array, f: tuple[int, int]) -> Array:
    """Bit field ``f`` = (shift, width) of non-negative int64 array ``packed``."""
    out: Array = np.right_shift(packed, f[0])
    np.bitwise_and(out, (1 << f[1]) - 1, out=out)
    return out


def _assemble(w: _World, ev: _Events) -> pl.DataFrame:
    """The event frame in stream order, identifiers and vocabularies looked up from codes."""
    # each table's identifiers from a stream of its own: a scenario that adds a phone changes
    # phone numbers' digits, not device ids or which payments carry the payee's phone
    seed = w.cfg.seed
    w.acc.finalize(_rng(seed, "account ids"))
    w.ph.finalize(_rng(seed, "phone numbers"))
    w.dev.finalize(_rng(seed, "device ids"))
    if len(_MEMOS) >= 1 << _F_MEMO[1] or len(LABELS) >= 1 << _F_SCEN[1]:
        raise RuntimeError("internal error: vocabulary outgrew its bit field")
    ts, kind, ab, dp, value, codes = ev.columns()
    w.note_actors(kind, ab, codes)
    if (value < 0).any() or (value[kind == 1] <= 0).any():
        raise RuntimeError("internal error: non-positive amount or negative duration generated")
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
    payee_phone = _payee_phones(w, _rng(seed, "payee phones"), a, b, txn)
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
        "payee_phone": lambda: phones.gather(payee_phone),
        "memo": lambda: by_low16(vocab(_MEMOS), _F_MEMO).gather(low16),
        "caller_number": lambda: phones.gather(a, call),
        "callee_number": lambda: phones.gather(b, call),
        "duration_seconds": lambda: _ints(value, call),
        "call_outcome": lambda: vocab(CALL_OUTCOMES).gather(_bits(codes, _F_OUT)),
        "caller_class": lambda: by_entity(vocab(NUMBER_CLASSES), w.ph.cls).gather(a, call),
        "scenario": lambda: _Column(pl.Series(["", *LABELS])).gather(_bits(codes, _F_SCEN)),
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


# Chance that the payer's institution knows (and sends) the payee's phone: its own customer's
# phone on file, or, for a person payee at another institution, a transfer to a phone number.
_PAYEE_PHONE_SAME_INST = 0.9
_PAYEE_PHONE_OTHER_INST = 0.05


def _payee_phones(w: _World, rng: np.random.Generator, a: Array, b: Array, txn: Array) -> Array:
    """Per row the payee's phone on file (index + 1, 0 = null) where the payer's bank knows it."""
    rows = np.flatnonzero(txn)
    payer, payee = a[rows] - 1, b[rows] - 1  # a and b are indices + 1
    phone = w.acc.phone[payee]
    same = w.acc.inst[payer] == w.acc.inst[payee]
    person = w.acc.party[payee] == _PERSON
    chance = np.where(same, _PAYEE_PHONE_SAME_INST, np.where(person, _PAYEE_PHONE_OTHER_INST, 0.0))
    maybe = np.flatnonzero((phone >= 0) & (chance > 0))  # terminals have no phone on file
    known = maybe[rng.random(maybe.size) < chance[maybe]]
    out = np.zeros(a.size, dtype=np.int64)
    out[rows[known]] = phone[known] + 1
    return out


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
