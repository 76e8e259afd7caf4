"""The report ledger: every transaction the engine screened in the last N local days, columnar.

A large-value report (PBOC Order [2016] No. 3, Art. 5) lists every transaction that makes up a
customer's same-day total, not only the one at which the total crossed the line (which is all
the live ``large_value`` flag can mark). So the engine appends each transaction it screens here,
under its lock, in one vectorised write per batch; a day's report is computed on demand, off the
lock, by the offline report's own grouping (``screening.offline.reports.large_value_rows``).

Layout: one segment per local day; a segment is a list of chunks, each an int64 matrix of
:data:`ROW_COLUMNS` and an object array holding the request's transaction id strings (the
strings the request already brought: no Python object is made per transaction). Chunks are
append-only and never move, so a reader that took ``(chunks, n)`` under the engine's lock reads
rows ``[0, n)`` without it while screening keeps appending behind them.

Bounds: the horizon is the ``days`` local days ending at the newest day recorded, starting no
earlier than the first day recorded (a day before it was never screened here, so its report
would be incomplete). Days that fall out of the horizon are dropped whole. When ``max_rows``
would be exceeded, the oldest day is dropped early and the horizon then starts after it. A
transaction whose day is before the horizon when it arrives is not recorded (counted in
``late``): no report of that day can be made any more.
"""

from __future__ import annotations

import datetime as dt
import itertools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from features.layout import EventCol, TxnFlag
from features.state import TIME_MAX_MS, TIME_MIN_MS
from screening.model import TxnColumns, TxnInput

__all__ = ["ROW_COLUMNS", "Ledger", "LedgerCapture", "LedgerSnapshot", "LedgerView", "day_of",
           "day_text", "parse_day", "replayed", "transactions_frame"]

# Row columns. INST packs the payer's institution id + 1 (low 32 bits) and the payee's (high
# bits); 0 means not given (or more distinct institutions than the ledger names).
SEQ, TS, PAYER, PAYEE, FEN, FLAGS, CUR, INST = range(8)
ROW_COLUMNS = ("seq", "event_time_ms", "payer", "payee", "amount_fen", "flags", "currency",
               "institutions")
# the event columns copied, as two contiguous runs (a fancy index costs microseconds per call)
_EV_TS, _EV_AMOUNT = EventCol.TS, EventCol.AMOUNT
assert (EventCol.A, EventCol.B, EventCol.FLAGS) == (_EV_TS + 1, _EV_TS + 2, _EV_AMOUNT + 1)
assert (PAYER, PAYEE, FLAGS) == (TS + 1, TS + 2, FEN + 1)
_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_CHUNK_MIN, _CHUNK_MAX = 1 << 10, 1 << 16
_MAX_INSTITUTIONS = 65_536  # distinct institution names kept (more: recorded as not given)
_MAX_CURRENCIES = 4_096
_MAX_NAME_KEYS = 65_536  # (currency, institution, institution) combinations remembered
_LOW32 = (1 << 32) - 1
# every transaction flag the encoder may set (derived, so a new flag cannot be forgotten here)
_KNOWN_FLAGS = sum(v for k, v in vars(TxnFlag).items() if k.isupper() and isinstance(v, int))
_DAY_MIN, _DAY_MAX = TIME_MIN_MS // _DAY_MS - 1, TIME_MAX_MS // _DAY_MS + 1
_NO_DAY = -(2**40)  # "none" in the saved meta (below any day a time can have)
_ROW = struct.Struct(f"={len(ROW_COLUMNS)}q")  # one row, native int64 as numpy holds it
_ROW_BYTES = _ROW.size


def day_of(ms: int, tz_offset_hours: int) -> int:
    """The local day (days since 1970-01-01 at UTC + offset) of epoch milliseconds ``ms``."""
    return (ms + tz_offset_hours * _HOUR_MS) // _DAY_MS


def day_text(day: int) -> str:
    """``day`` (days since 1970-01-01) as YYYY-MM-DD."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def parse_day(text: str) -> int | None:
    """YYYY-MM-DD as days since 1970-01-01; None when it is not such a date."""
    if len(text) != 10:
        return None
    try:
        return (dt.date.fromisoformat(text) - dt.date(1970, 1, 1)).days
    except ValueError:
        return None


class _Names:
    """A small string table (institutions, currencies): name -> id, at most ``cap`` names."""

    def __init__(self, cap: int, names: Sequence[str] = ()) -> None:
        self.cap = cap
        self.names = list(names)
        self._ids = {n: i for i, n in enumerate(self.names)}

    def id1(self, name: str) -> int:
        """The id + 1 of ``name`` (interned now if new); 0 for "" and past the cap."""
        found = self._ids.get(name)
        if found is not None:
            return found + 1
        if not name or len(self.names) >= self.cap:
            return 0
        self._ids[name] = len(self.names)
        self.names.append(name)
        return len(self.names)


class _Segment:
    """One local day's rows: chunks of growing size, append-only."""

    __slots__ = ("base", "cap", "ids", "n", "raw", "rows")

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.ids: list[np.ndarray] = []
        self.n = 0
        self.cap = 0
        self.base = 0  # rows before the last chunk
        self.raw = memoryview(b"")  # the last chunk's bytes (one-row writes)

    def grow(self) -> None:
        size = min(_CHUNK_MAX, _CHUNK_MIN << len(self.rows))
        chunk = np.empty((size, len(ROW_COLUMNS)), dtype=np.int64)
        self.rows.append(chunk)
        self.ids.append(np.empty(size, dtype=object))
        self.base = self.cap
        self.cap += size
        self.raw = chunk.data.cast("B")

    def put(self, block: np.ndarray, ids: Sequence[str]) -> None:
        k = block.shape[0]
        done = 0
        while done < k:
            if self.n == self.cap:
                self.grow()
            chunk = self.rows[-1]
            pos = self.n - (self.cap - chunk.shape[0])
            take = min(k - done, chunk.shape[0] - pos)
            chunk[pos:pos + take] = block[done:done + take]
            self.ids[-1][pos:pos + take] = ids[done:done + take] if done or take < k else ids
            self.n += take
            done += take


@dataclass(frozen=True)
class LedgerSnapshot:
    """A ledger as saved: rows of every day (days ascending), per-day row counts, the scalars.

    ``meta`` is [timezone offset hours, newest day, first day, lost through day, late count]
    (``_NO_DAY`` for a day not set); ``days`` is [day, rows] per day; ``rows`` the int64 matrix
    of :data:`ROW_COLUMNS`; ``ids`` the transaction ids of the rows.
    """

    meta: np.ndarray
    days: np.ndarray
    rows: np.ndarray
    ids: list[str]
    institutions: list[str]
    currencies: list[str]


@dataclass(frozen=True)
class LedgerView:
    """One day's rows as taken under the engine's lock: read them with :meth:`frame` off it."""

    day: int
    horizon: tuple[int, int] | None  # (first, last) reportable day; None: nothing recorded yet
    covered: bool  # False: the day is before the horizon (its rows are gone or never came)
    tz_offset_hours: int
    chunks: tuple[np.ndarray, ...]
    ids: tuple[np.ndarray, ...]
    n: int
    institutions: list[str]  # append-only lists: read only the first n_institutions
    n_institutions: int
    currencies: list[str]
    n_currencies: int

    def uncovered(self) -> str:
        """Why the day is not covered, for the caller (names the day and the horizon)."""
        if self.horizon is None or self.covered:
            return ""
        start, end = self.horizon
        if start > end:
            return (f"{day_text(self.day)} cannot be reported: the ledger holds no complete day "
                    f"now (days up to {day_text(start - 1)} went early at [ledger] max_rows)")
        return (f"{day_text(self.day)} is before the ledger's horizon {day_text(start)} to "
                f"{day_text(end)}: the local days it holds every transaction of")

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, ids) of the day, copied out of the chunks."""
        rows, ids, left = [], [], self.n
        for chunk, names in zip(self.chunks, self.ids, strict=True):
            take = min(left, chunk.shape[0])
            rows.append(chunk[:take])
            ids.append(names[:take])
            left -= take
        if not rows:
            return np.empty((0, len(ROW_COLUMNS)), dtype=np.int64), np.empty(0, dtype=object)
        return np.concatenate(rows), np.concatenate(ids)

    def frame(self, account_name: Callable[[int], str]) -> pl.DataFrame:
        """The day's transactions as ``large_value_rows`` reads them (first of each id)."""
        return transactions_frame(*self.columns(), account_name, self.institutions[:self.n_institutions],
                                  self.currencies[:self.n_currencies])


def transactions_frame(rows: np.ndarray, ids: np.ndarray, account_name: Callable[[int], str],
                       institutions: Sequence[str], currencies: Sequence[str]) -> pl.DataFrame:
    """Ledger rows as the checked-transactions frame the report grouping reads
    (``screening.offline.reports.TRANSACTION_COLUMNS``), in screening order, each id once."""
    accounts = np.concatenate([rows[:, PAYER], rows[:, PAYEE]])
    uniq, where = np.unique(accounts, return_inverse=True)
    names = pl.Series([account_name(int(i)) for i in uniq.tolist()], dtype=pl.String)
    n = rows.shape[0]
    flags = rows[:, FLAGS]

    def party(person: int, terminal: int) -> pl.Series:
        kind = np.where(flags & terminal, 2, np.where(flags & person, 0, 1))
        return pl.Series(kind, dtype=pl.Int64).replace_strict(
            {0: "person", 1: "organisation", 2: "cash_terminal"}, return_dtype=pl.String)

    frame = pl.DataFrame({
        "seq": rows[:, SEQ],
        "event_id": pl.Series(ids.tolist(), dtype=pl.String),
        "event_time": pl.Series(rows[:, TS], dtype=pl.Int64).cast(pl.Datetime("ms"))
        .dt.replace_time_zone("UTC"),
        "payer_account": names.gather(where[:n]),
        "payer_party_type": party(TxnFlag.PAYER_PERSON, TxnFlag.PAYER_TERMINAL),
        "payer_institution": _named(institutions, rows[:, INST] & _LOW32),
        "payee_account": names.gather(where[n:]),
        "payee_party_type": party(TxnFlag.PAYEE_PERSON, TxnFlag.PAYEE_TERMINAL),
        "payee_institution": _named(institutions, rows[:, INST] >> 32),
        "amount_fen": rows[:, FEN],
        "currency": _named(currencies, rows[:, CUR]),
        "cash": (flags & TxnFlag.CASH) != 0,
        "cross_border": (flags & TxnFlag.CROSS_BORDER) != 0,
    })
    # an id screened again after the idempotency memory forgot it counts once, as offline
    return frame.sort("seq").filter(pl.col("event_id").is_first_distinct()).drop("seq")


def _named(names: Sequence[str], id1: np.ndarray) -> pl.Series:
    """Names of ids + 1; null for 0 (not given)."""
    table = pl.Series([None, *names], dtype=pl.String)
    return table.gather(id1)


class Ledger:
    """Every screened transaction of the last ``days`` local days (see the module docstring).

    Not thread-safe on its own: the engine appends and takes views under its lock.
    """

    def __init__(self, *, days: int, max_rows: int, tz_offset_hours: int) -> None:
        self.days = days
        self.max_rows = max_rows
        self.tz_offset_hours = tz_offset_hours
        self._tz_ms = tz_offset_hours * _HOUR_MS
        self._segments: dict[int, _Segment] = {}
        self.rows = 0
        self.newest: int | None = None  # the newest local day recorded
        self.first: int | None = None  # the day of the first row recorded
        self.lost_through = _NO_DAY  # days up to this one lost rows to max_rows
        self.late = 0  # transactions not recorded: their day was before the horizon
        self._start = _NO_DAY  # start(), kept current by _advance and _room
        self._institutions = _Names(_MAX_INSTITUTIONS)
        self._currencies = _Names(_MAX_CURRENCIES)
        # (currency, payer institution, payee institution) -> (currency code, institution codes)
        self._names: dict[tuple[str, str, str], tuple[int, int]] = {}

    # ------------------------------------------------------------------ writing
    def append(self, ev: np.ndarray, seq0: int, batch: Sequence[TxnInput] | TxnColumns) -> None:
        """Record the screened ``batch`` (kernel event rows ``ev``, decision numbers from ``seq0``)."""
        if not isinstance(batch, TxnColumns):
            batch = TxnColumns.from_inputs(batch)
        k = len(batch)
        names = self._names
        currency, payer_inst, payee_inst = batch.currency, batch.payer_institution, \
            batch.payee_institution
        if k == 1:  # ScreenTransaction and ScreenStream: plain Python is cheaper than numpy calls
            key = (currency[0], payer_inst[0], payee_inst[0])
            e = ev[0].tolist()
            ts = e[_EV_TS]
            day = (ts + self._tz_ms) // _DAY_MS
            if self.newest is None or day > self.newest:
                self._advance(day, day)
            if (self.rows < self.max_rows and day >= self._start) or self._room(day, 1):
                seg = self._segments.get(day)
                if seg is None:
                    seg = self._segments[day] = _Segment()
                cur, inst = names.get(key) or self._codes(key)
                if seg.n == seg.cap:
                    seg.grow()
                pos = seg.n - seg.base
                # struct into the chunk's bytes: a numpy row write costs several times more
                _ROW.pack_into(seg.raw, pos * _ROW_BYTES, seq0, ts, e[_EV_TS + 1], e[_EV_TS + 2],
                               e[_EV_AMOUNT], e[_EV_AMOUNT + 1], cur, inst)
                seg.ids[-1][pos] = batch.transaction_id[0]
                seg.n += 1
                self.rows += 1
            return
        if k == 0:
            return
        block = np.empty((k, len(ROW_COLUMNS)), dtype=np.int64)
        block[:, SEQ] = np.arange(seq0, seq0 + k)
        block[:, TS:FEN] = ev[:, _EV_TS:_EV_TS + 3]
        block[:, FEN:CUR] = ev[:, _EV_AMOUNT:_EV_AMOUNT + 2]
        codes_of = [names.get(key) or self._codes(key)
                    for key in zip(currency, payer_inst, payee_inst, strict=True)]
        # fromiter over the flattened pairs: np.array of a list of tuples is ~3x slower
        block[:, CUR:] = np.fromiter(itertools.chain.from_iterable(codes_of), dtype=np.int64,
                                     count=2 * k).reshape(k, 2)
        ids = batch.transaction_id
        days = (block[:, TS] + self._tz_ms) // _DAY_MS
        lo, hi = int(days.min()), int(days.max())
        self._advance(lo, hi)
        if lo == hi:
            self._put(lo, block, ids)
            return
        for day in np.unique(days).tolist():
            where = np.flatnonzero(days == day)
            self._put(day, block[where], [ids[i] for i in where.tolist()])

    def _codes(self, key: tuple[str, str, str]) -> tuple[int, int]:
        """(currency id + 1, both institutions' ids + 1 packed) of (currency, payer institution,
        payee institution), remembered."""
        currency, payer_inst, payee_inst = key
        out = (self._currencies.id1(currency),
               self._institutions.id1(payer_inst) | self._institutions.id1(payee_inst) << 32)
        if len(self._names) < _MAX_NAME_KEYS:
            self._names[key] = out
        return out

    def _advance(self, lo: int, hi: int) -> None:
        if self.newest is None:
            self.newest, self.first = hi, lo
        elif hi > self.newest:
            self.newest = hi
            start = hi - self.days + 1
            for old in [d for d in self._segments if d < start]:
                self.rows -= self._segments.pop(old).n
        self._start = self.start()

    def _room(self, day: int, k: int) -> bool:
        """Make room for ``k`` rows of ``day``; False (counted late) when the day is not kept."""
        while self.rows + k > self.max_rows and day >= self.start():
            # drop the oldest day held; a row older than all of them cannot be kept either
            oldest = min(min(self._segments, default=day), day)
            self.lost_through = max(self.lost_through, oldest)
            self._start = self.start()
            seg = self._segments.pop(oldest, None)
            self.rows -= seg.n if seg is not None else 0
        if day < self._start:
            self.late += k
            return False
        return True

    def _put(self, day: int, block: np.ndarray, ids: Sequence[str]) -> None:
        k = block.shape[0]
        if not self._room(day, k):
            return
        seg = self._segments.get(day)
        if seg is None:
            seg = self._segments[day] = _Segment()
        seg.put(block, ids)
        self.rows += k

    # ------------------------------------------------------------------ reading
    def start(self) -> int:
        """The first reportable day (only meaningful once something was recorded)."""
        if self.newest is None or self.first is None:
            return _NO_DAY
        return max(self.newest - self.days + 1, self.first, self.lost_through + 1)

    def horizon(self) -> tuple[int, int] | None:
        """(first, last) day the ledger can report; None while nothing was recorded."""
        if self.newest is None:
            return None
        return self.start(), self.newest

    def view(self, day: int) -> LedgerView:
        """The rows of local ``day`` as they are now (O(chunks): call under the engine's lock).

        A day after the newest, or any day while nothing was recorded, is covered and empty;
        a day before the horizon is not covered.
        """
        seg = self._segments.get(day)
        covered = self.newest is None or day >= self.start()
        return LedgerView(
            day=day, horizon=self.horizon(), covered=covered, tz_offset_hours=self.tz_offset_hours,
            chunks=tuple(seg.rows) if seg is not None and covered else (),
            ids=tuple(seg.ids) if seg is not None and covered else (),
            n=seg.n if seg is not None and covered else 0,
            institutions=self._institutions.names, n_institutions=len(self._institutions.names),
            currencies=self._currencies.names, n_currencies=len(self._currencies.names))

    def nbytes(self) -> int:
        """Bytes of the row chunks and id slots (not the id strings themselves)."""
        return sum(c.nbytes + i.nbytes for s in self._segments.values()
                   for c, i in zip(s.rows, s.ids, strict=True))

    # ------------------------------------------------------------------ saving
    def capture(self) -> LedgerCapture:
        """Every day's rows as they are now (cheap: call under the engine's lock); its
        :meth:`LedgerCapture.saved` copies them off the lock."""
        # days before the horizon are gone: saved as lost, so that a ledger restored with more
        # [ledger] days does not claim them
        lost = self.lost_through if self.newest is None else max(self.lost_through,
                                                                 self.newest - self.days)
        return LedgerCapture(
            meta=np.array([self.tz_offset_hours, _NO_DAY if self.newest is None else self.newest,
                           _NO_DAY if self.first is None else self.first, lost, self.late],
                          dtype=np.int64),
            views=tuple(self.view(day) for day in sorted(self._segments)),
            institutions=self._institutions.names[:], currencies=self._currencies.names[:])

    @classmethod
    def restored(cls, snap: LedgerSnapshot, *, days: int, max_rows: int, tz_offset_hours: int,
                 n_accounts: int) -> tuple[Ledger, list[str]]:
        """A ledger holding ``snap`` under these settings, every value checked first.

        Raises ValueError naming the part on anything this build would not compute or answer
        with. Returns the ledger and notes on what the settings dropped: days beyond ``days``,
        the oldest days past ``max_rows``, or the whole ledger when the time zone changed.
        """
        out = cls(days=days, max_rows=max_rows, tz_offset_hours=tz_offset_hours)
        meta, day_rows, rows = snap.meta, snap.days, snap.rows
        if meta.dtype != np.int64 or meta.shape != (5,):
            raise ValueError(f"ledger.meta: {meta.dtype}{list(meta.shape)}, expected int64[5]")
        tz, newest, first, lost, late = (int(v) for v in meta.tolist())
        if not -14 <= tz <= 14 or not 0 <= late <= 2**62:
            raise ValueError(f"ledger.meta: time zone {tz}, late {late}")
        for name, value in (("newest", newest), ("first", first), ("lost", lost)):
            if value != _NO_DAY and not _DAY_MIN <= value <= _DAY_MAX:
                raise ValueError(f"ledger.meta: {name} day {value} outside years 1 to 9999")
        if (newest == _NO_DAY) != (first == _NO_DAY) or (newest != _NO_DAY and first > newest):
            raise ValueError(f"ledger.meta: first day {first}, newest {newest}")
        if day_rows.dtype != np.int64 or day_rows.ndim != 2 or day_rows.shape[1] != 2:
            raise ValueError(f"ledger.days: {day_rows.dtype}{list(day_rows.shape)}, expected int64[n, 2]")
        if rows.dtype != np.int64 or rows.ndim != 2 or rows.shape[1] != len(ROW_COLUMNS):
            raise ValueError(f"ledger.rows: {rows.dtype}{list(rows.shape)}, expected "
                             f"int64[n, {len(ROW_COLUMNS)}]")
        counts = day_rows[:, 1]
        if (counts < 1).any() or int(counts.sum()) != rows.shape[0] or len(snap.ids) != rows.shape[0]:
            raise ValueError(f"ledger.days: row counts {counts.tolist()[:8]} do not add up to the "
                             f"{rows.shape[0]} rows and {len(snap.ids)} ids")
        keys = day_rows[:, 0]
        if keys.size and (np.any(np.diff(keys) <= 0) or newest == _NO_DAY or int(keys[-1]) > newest):
            raise ValueError("ledger.days: days not ascending, or after the newest day")
        _check_names(snap.institutions, "ledger.names institutions", _MAX_INSTITUTIONS)
        _check_names(snap.currencies, "ledger.names currencies", _MAX_CURRENCIES)
        _check_rows(rows, snap.ids, n_accounts, len(snap.institutions), len(snap.currencies))
        row_days = (rows[:, TS] + tz * _HOUR_MS) // _DAY_MS
        if not np.array_equal(row_days, np.repeat(keys, counts)):
            raise ValueError("ledger.rows: a row's time is not on its day")
        notes: list[str] = []
        if tz != tz_offset_hours:
            notes.append(f"the checkpoint's report ledger counts days at UTC{tz:+d}, the policy "
                         f"at UTC{tz_offset_hours:+d}: the ledger starts empty")
            return out, notes
        out._institutions = _Names(_MAX_INSTITUTIONS, snap.institutions)
        out._currencies = _Names(_MAX_CURRENCIES, snap.currencies)
        if newest == _NO_DAY:
            return out, notes
        out.newest, out.first, out.lost_through, out.late = newest, first, lost, late
        start = out._start = out.start()
        bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
        kept = [(int(d), a, b) for d, a, b in zip(keys.tolist(), bounds[:-1], bounds[1:], strict=True)
                if d >= start]
        if len(kept) < keys.size:
            notes.append(f"report ledger: {keys.size - len(kept)} day(s) before the last "
                         f"{days} ([ledger] days) not loaded")
        while kept and sum(b - a for _, a, b in kept) > max_rows:
            day, _, _ = kept.pop(0)
            out.lost_through = max(out.lost_through, day)
            out._start = out.start()
            notes.append(f"report ledger: day {day_text(day)} dropped ([ledger] max_rows = "
                         f"{max_rows}): it can no longer be reported")
        ids = np.array(snap.ids, dtype=object)
        for day, a, b in kept:
            seg = out._segments[day] = _Segment()
            seg.put(rows[a:b], list(ids[a:b]))
            out.rows += b - a
        return out, notes


@dataclass(frozen=True)
class LedgerCapture:
    """What :meth:`Ledger.capture` took under the lock: the scalars and a view of every day."""

    meta: np.ndarray
    views: tuple[LedgerView, ...]
    institutions: list[str]
    currencies: list[str]

    def saved(self) -> LedgerSnapshot:
        """Copy the captured rows into a snapshot (off the engine's lock)."""
        parts = [v.columns() for v in self.views if v.n]
        return LedgerSnapshot(
            meta=self.meta,
            days=np.array([[v.day, v.n] for v in self.views if v.n], dtype=np.int64).reshape(-1, 2),
            rows=(np.concatenate([r for r, _ in parts]) if parts
                  else np.empty((0, len(ROW_COLUMNS)), dtype=np.int64)),
            ids=[s for _, i in parts for s in i.tolist()],
            institutions=self.institutions, currencies=self.currencies)


def replayed(events: np.ndarray, txn: pl.DataFrame, *, tz_offset_hours: int,
             days: int) -> LedgerSnapshot:
    """The ledger a server holds after screening a replayed history (start warm).

    ``events`` are the replay's kernel rows of its transactions, in screening order, with their
    decision numbers (event row indexes) in column KIND; ``txn`` their frame rows
    (``event_id``, ``currency``, ``payer_institution``, ``payee_institution``). Keeps the last
    ``days`` local days, as the live ledger does.
    """
    n = events.shape[0]
    rows = np.empty((n, len(ROW_COLUMNS)), dtype=np.int64)
    rows[:, SEQ] = events[:, EventCol.KIND]
    rows[:, TS:FEN] = events[:, _EV_TS:_EV_TS + 3]
    rows[:, FEN:CUR] = events[:, _EV_AMOUNT:_EV_AMOUNT + 2]
    currencies = txn.get_column("currency").unique(maintain_order=True).to_list()[:_MAX_CURRENCIES]
    sides = pl.concat([txn.get_column("payer_institution"), txn.get_column("payee_institution")])
    institutions = [i for i in sides.drop_nulls().unique(maintain_order=True).to_list()
                    if i][:_MAX_INSTITUTIONS]

    def codes(col: str, names: list[str]) -> np.ndarray:
        out: np.ndarray = txn.get_column(col).replace_strict(
            {name: i + 1 for i, name in enumerate(names)}, default=0,
            return_dtype=pl.Int64).to_numpy()
        return out

    rows[:, CUR] = codes("currency", currencies)
    rows[:, INST] = (codes("payer_institution", institutions)
                     | codes("payee_institution", institutions) << 32)
    ids = txn.get_column("event_id").to_list()
    meta = np.array([tz_offset_hours, _NO_DAY, _NO_DAY, _NO_DAY, 0], dtype=np.int64)
    if not n:
        return LedgerSnapshot(meta, np.empty((0, 2), dtype=np.int64), rows, [], institutions,
                              currencies)
    day = (rows[:, TS] + tz_offset_hours * _HOUR_MS) // _DAY_MS
    newest, first = int(day.max()), int(day[0])
    keep = np.flatnonzero(day >= max(newest - days + 1, first))
    order = keep[np.argsort(day[keep], kind="stable")]
    kept_days, counts = np.unique(day[order], return_counts=True)
    meta[1:4] = newest, first, newest - days
    return LedgerSnapshot(meta=meta, days=np.stack([kept_days, counts], axis=1).astype(np.int64),
                          rows=rows[order], ids=[ids[i] for i in order.tolist()],
                          institutions=institutions, currencies=currencies)


def _check_names(names: Sequence[object], where: str, cap: int) -> None:
    if len(names) > cap or not all(isinstance(n, str) and n for n in names) \
            or len(set(names)) != len(names):
        raise ValueError(f"{where}: more than {cap}, empty, repeated or not strings")


def _check_rows(rows: np.ndarray, ids: Sequence[object], n_accounts: int, n_institutions: int,
                n_currencies: int) -> None:
    """Values the report computes with or answers with: refuse what it could not."""
    if not rows.shape[0]:
        return
    col = {name: rows[:, i] for i, name in enumerate(ROW_COLUMNS)}

    def bad(name: str, ok: np.ndarray | bool, what: str) -> None:
        if not np.all(ok):
            raise ValueError(f"ledger.rows: {name} {what}")

    bad("seq", (col["seq"] >= 0) & (col["seq"] <= 2**62), "outside [0, 2**62]")
    bad("event_time_ms", (col["event_time_ms"] >= TIME_MIN_MS) & (col["event_time_ms"] <= TIME_MAX_MS),
        "outside years 1 to 9999")
    for side in ("payer", "payee"):
        bad(side, (col[side] >= 0) & (col[side] < n_accounts), "is not a known account")
    bad("amount_fen", (col["amount_fen"] >= 1) & (col["amount_fen"] <= 2**53), "outside [1, 2**53]")
    flags = col["flags"]

    def has(bit: int) -> np.ndarray:
        out: np.ndarray = (flags & bit) != 0
        return out

    both = (has(TxnFlag.PAYER_PERSON) & has(TxnFlag.PAYER_TERMINAL)) | (
        has(TxnFlag.PAYEE_PERSON) & has(TxnFlag.PAYEE_TERMINAL))
    bad("flags", ((flags & ~_KNOWN_FLAGS) == 0) & ~both, "unknown bits, or a side both a person "
        "and a cash terminal")
    bad("currency", (col["currency"] >= 1) & (col["currency"] <= n_currencies), "is not a named currency")
    inst = col["institutions"]
    bad("institutions", (inst >= 0) & ((inst & _LOW32) <= n_institutions)
        & ((inst >> 32) <= n_institutions), "is not a named institution")
    if not all(isinstance(i, str) and 0 < len(i) <= 1024 and ";" not in i for i in ids):
        raise ValueError("ledger.ids: an id is empty, longer than 1024 characters or holds ';'")
