"""Numba kernels: streaming features per account and phone number, and rule evaluation.

Private. Every kernel here is plain loops over preallocated arrays; the public drivers in
``features.state`` and ``features.pipeline`` check shapes and dtypes and allocate. The
plain-Python twins live in ``tests/reference.py`` and a hypothesis test holds them equal.

All layout constants live in this file (not imported from another module) so that numba's
on-disk cache, which is keyed on this file, can never run a kernel compiled against an old layout.

Time is int64 epoch milliseconds; money is int64 minor units (CNY fen). Window counters are
time buckets (mergeable: a window is the sum of its buckets) so that another store can hold the
same counters without changing what a feature means.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from features._jit import helper, inlined, kernel

# ---------------------------------------------------------------- sentinels and units
NO_TIME = np.int64(-(2**62))  # "never": unknown opened date, never seen, no risky call
EMPTY_EPOCH = np.int64(-(2**62))
DAY_MS = 86_400_000
MINUTE_MS = 60_000
RING_EPOCH_S = 946_684_800  # ring timestamps are int32 seconds since 2000-01-01 (good to 2068)
FAR_MINUTES = 1e9  # "minutes since" when there is no such event

# ---------------------------------------------------------------- windows (time buckets)
# 1 min in 6 x 10 s, 1 h in 6 x 10 min, 24 h in 12 x 2 h, 7 d in 7 x 1 day (local days).
WIN_NAMES = ("1m", "1h", "24h", "7d")
WIN_WIDTH_MS = (10_000, 600_000, 7_200_000, 86_400_000)
WIN_NB = (6, 6, 12, 7)
WIN_OFF = (0, 6, 12, 24)
WIN_SPAN_S = (60, 3_600, 86_400, 604_800)
NW = 4
NBUCKET = 31
# after the buckets, one running total per window: the sum of that window's live buckets,
# so a window read at the newest time is one load instead of a loop over its buckets
TOT_OFF = 31
# Sums of money (fen) saturate here instead of wrapping past int64 (``_sat_add``); an amount is
# at most this (``screening.convert``), so a sum of two never overflows before the check.
SUM_MAX = 2**62
NSLOT = 35
# State arrays are [entity, slot, channel] so that one bucket's channels share a cache line, and
# every bucket carries a tag: the epoch it was last written in. A bucket whose tag is not its
# epoch is stale and counts as zero, so passing over idle time clears nothing but the totals
# (a quiet account's next event touches ~6 cache lines instead of rewriting all its buckets).
# Tags are int32: the epoch's low 31 bits (10 s epochs wrap after 680 years); -1 is "never".
TAG_MASK = 0x7FFFFFFF
TAG_EMPTY = -1
W_1M, W_1H, W_24H, W_7D = 0, 1, 2, 3

# ---------------------------------------------------------------- account state layout
# count channels (int32) and sum channels (int64, fen) per bucket
AC_OUT, AC_IN, AC_NEAR, AC_INVEST_IN, AC_PAYBACK, AC_NEAR_IN = 0, 1, 2, 3, 4, 5
N_ACC_COUNT = 6
AS_OUT, AS_IN = 0, 1
N_ACC_SUM = 2
# rings of the K most recent distinct counterparties: [entity, direction, slot, (id, time_s)]
RING_K = 16
R_OUT, R_IN = 0, 1
# int64 scalars
SC_OPENED, SC_FIRST, SC_LAST, SC_WATCH = 0, 1, 2, 3
# per local day and direction: day, cash, transfers (all non-cash), cross-border, domestic transfers
SC_DAY_OUT, SC_DAY_IN = 4, 9
DAY_CASH, DAY_XFER, DAY_XB, DAY_DOMESTIC = 1, 2, 3, 4
SC_N_OUT, SC_N_IN = 14, 15
# Decision memory (case state): what earlier decisions concluded about the account, each until a
# time (0: never). A suspected victim is protected; a suspected mule has a level (1: received
# fraud money or was seen passing it on, 2: received from a level-1 mule); a suspected collector
# ran a fundraising pattern. Feedback from a bank or the police confirms (CONFIRMED_UNTIL) or
# clears (CLEARED_UNTIL: marks neither read nor set) what the decisions concluded.
SC_VICTIM_UNTIL, SC_MULE_UNTIL, SC_MULE_LEVEL, SC_COLLECTOR_UNTIL = 16, 17, 18, 19
SC_CONFIRMED_UNTIL, SC_CLEARED_UNTIL = 20, 21
# From the account registry: last activity before the service saw it (NO_TIME: unknown), profile
# bits, the phone on file (a phone id, -1: none). SC_WAKE: when it woke from dormancy (NO_TIME).
SC_LAST_ACTIVE, SC_PROFILE, SC_PHONE, SC_WAKE = 22, 23, 24, 25
N_ACC_SCALAR = 26
PROF_KNOWN, PROF_MERCHANT, PROF_PAYROLL, PROF_ORGANISATION = 1, 2, 4, 8
# the latest transaction of the account named it an organisation (the registry's word is
# PROF_ORGANISATION); one naming it a person takes this back
PROF_SEEN_ORGANISATION = 16
# SC_OPENED holds the registry's opening date (a transaction reporting a later one takes it back)
PROF_REG_OPENED = 32
# everything the account has done here is a tiny transfer with a person (a bought or rented
# account is tested so before use): set by its first transaction, taken back by a payment out
# that is not one, or money in from an organisation, a terminal or abroad (a salary, a deposit)
PROF_TRIAL = 64
# the latest transaction of the account named it a cash terminal (an ATM, a counter's till):
# where a suspect withdrew cash is no mule
PROF_SEEN_TERMINAL = 128
# SC_PHONE was learned from the account's own payments (their payer's phone), not the registry:
# the registry's phone wins, and the payee-phone features read only the registry's or the one a
# transaction names
PROF_PHONE_SEEN = 256
# what a transaction contradicting the registry entry's owner (TF_*_FOREIGN) does not take
PROF_REGISTRY = PROF_MERCHANT | PROF_PAYROLL | PROF_ORGANISATION
# float64 scalars: EWMA of log(amount) of outgoing transfers
FL_MEAN, FL_VAR = 0, 1
N_ACC_FLOAT = 2

# ---------------------------------------------------------------- phone / device state layout
PC_CALLS_OUT, PC_SHORT_OUT, PC_CALLS_IN, PC_ANSWERED_OUT = 0, 1, 2, 3
N_PHONE_COUNT = 4
PS_TALK_OUT = 0
N_PHONE_SUM = 1
PSC_FIRST, PSC_LAST, PSC_WATCH, PSC_RISKY_TS, PSC_RISKY_SCORE, PSC_RISKY_CALLER_WATCH = (
    0, 1, 2, 3, 4, 5,
)
# the number's own calls were warned or blocked until this time (0: never): a risky number
PSC_RISKY_NUMBER_UNTIL = 6
# the latest incoming call: start, end (start + talk time once ended; start + the risky-call
# lookback while it has not ended), and INCALL_* bits of what it was
PSC_INCALL_START, PSC_INCALL_END, PSC_INCALL_FLAGS, PSC_INCALL_CALLER = 7, 8, 9, 10
N_PHONE_SCALAR = 11
INCALL_UNKNOWN, INCALL_RISKY = 1, 2
# the two numbers had never spoken before this call (whether or not in the learning period)
INCALL_FIRST = 4
DSC_WATCH, DSC_LAST = 0, 1
N_DEVICE_SCALAR = 2

# ---------------------------------------------------------------- events (one int64 row each)
# EV_E: the payee's phone of a transaction (-1: unknown)
EV_KIND, EV_TS, EV_A, EV_B, EV_C, EV_D, EV_AMOUNT, EV_FLAGS, EV_AUX1, EV_AUX2, EV_AUX3, EV_E = range(12)
N_EV = 12
KIND_TXN, KIND_CALL = 1, 2
# transaction flags
TF_CASH, TF_XBORDER, TF_MEMO_INVEST, TF_PAYER_PERSON, TF_PAYEE_PERSON = 1, 2, 4, 8, 16
# the party is the cash side of a deposit or withdrawal (an ATM or a counter), not a customer
TF_PAYER_TERMINAL, TF_PAYEE_TERMINAL = 32, 64
# the amount lies just under the reporting line of its family (cash, person domestic or
# cross-border transfer, organisation; CNY or foreign currency): set by the encoder
TF_NEAR_LINE = 128
# the memo holds words of impersonation fraud ("safe account", "unfreezing fee", ...): the encoder
TF_MEMO_FRAUD = 256
# the transaction names another institution for the payer / payee than the one that owns the
# account's registry entry: the encoder sets it, and the entry's word about that party (profile
# bits, opening date, last activity, phone on file) is not taken for this transaction
TF_PAYER_FOREIGN, TF_PAYEE_FOREIGN = 512, 1024
# call flags: NEW = first report of this call (count it); ENDED = duration known
CF_NEW, CF_ENDED = 1, 2
# call outcomes (EV_AUX3 of a call; same numbers as the proto enum CallOutcome). LEGACY: not
# given: duration 0 is ringing, > 0 answered and ended.
OUT_LEGACY, OUT_RINGING, OUT_ANSWERED, OUT_UNANSWERED, OUT_REJECTED, OUT_BLOCKED = 0, 1, 2, 3, 4, 5
# number classes (same numbers as the proto enum NumberClass)
NC_INTERNATIONAL, NC_VIRTUAL, NC_SPOOFED = 4, 3, 5

# ---------------------------------------------------------------- pair table (relationships)
PAIR_EMPTY = np.int64(-1)
# PAIR_STOP: a payment of a to b was held or stopped at the stored time (decision memory);
# PAIR_WARN: a payment of a to b was warned about as fraud (a rule marked a as a victim); with
# a == b: the latest such payment b received (b cannot pay itself, so the key is free)
PAIR_TXN, PAIR_CALL, PAIR_STOP, PAIR_WARN = 0, 1, 2, 3
# state-wide scalars (``meta``): relationships in the pair table, the earliest event time seen
META_PAIRS, META_FIRST_TS = 0, 1
N_META = 2

# ---------------------------------------------------------------- params
# (the structuring band is applied by the encoder: TF_NEAR_LINE)
P_TZ_MS, P_SHORT_CALL_S, P_RISKY_LOOKBACK_MS, P_MARK_MIN_CALL_ACTION, P_EWMA_ALPHA_PPM = 0, 1, 2, 3, 4
# decision memory: how long a victim is protected, a mule or collector suspected, a number risky;
# the learning period (entities first seen within it of the state's first event have no known
# age); the inactivity that makes an account dormant; how far mule suspicion follows the money
# and the payers (7 d) beyond which a payee is a hub it does not follow to
P_PROTECT_MS, P_MULE_MS, P_COLLECTOR_MS, P_RISKY_NUMBER_MS = 5, 6, 7, 8
P_LEARN_MS, P_DORMANT_MS, P_MULE_MAX_LEVEL, P_HUB_PAYERS = 9, 10, 11, 12
# a new suspected mule's payees of this last while are where the money went: they become suspects
P_FOLLOW_MS = 13
# how long a payer whose payment was stopped (STOP_PAYMENT or FREEZE) is protected: the evidence
# was strong and the fraudster comes back for weeks (P_PROTECT_MS after a warning or a hold)
P_PROTECT_STOP_MS = 14
# the largest transfer that tests an account (PROF_TRIAL), fen
P_TEST_TRANSFER_MAX = 15
N_PARAM = 16

# ---------------------------------------------------------------- transaction features
F_AMOUNT, F_CASH, F_XBORDER, F_CHANNEL, F_MEMO_INVEST = 0, 1, 2, 3, 4
F_FIRST_TIME_PAYEE, F_REVERSE_EDGE, F_PAYER_IS_PERSON, F_PAYEE_IS_PERSON = 5, 6, 7, 8
F_PAYER_WATCH, F_PAYEE_WATCH, F_DEVICE_WATCH, F_PHONE_WATCH = 9, 10, 11, 12
F_RISKY_CALL_RECENT, F_RISKY_CALL_MIN, F_RISKY_CALL_CALLER_WATCH, F_RISKY_CALL_SCORE = 13, 14, 15, 16
F_PAYER_AGE_DAYS, F_PAYEE_AGE_DAYS = 17, 18
F_PAYER_Z, F_PAYER_RATIO, F_PAYER_HIST, F_PAYEE_HIST = 19, 20, 21, 22
F_PAYER_PASS_1H, F_PAYER_PASS_24H = 23, 24
F_PAYER_NEAR_24H, F_PAYER_NEAR_7D = 25, 26
F_PAYEE_INVEST_24H, F_PAYEE_INVEST_7D, F_PAYER_PAYBACK_7D = 27, 28, 29
F_PAYER_DAY_CASH, F_PAYER_DAY_XFER, F_PAYER_DAY_XB = 30, 31, 32
F_PAYEE_DAY_CASH, F_PAYEE_DAY_XFER, F_PAYEE_DAY_XB = 33, 34, 35
# windowed counts/sums: base + ((party*2 + dir)*2 + stat)*4 + window
F_WIN_BASE = 36
# distinct counterparties for windows 1h, 24h, 7d: base + (party*2 + dir)*3 + (window-1)
F_DIST_BASE = 68
F_PAYER_TERMINAL, F_PAYEE_TERMINAL, F_PAYEE_NEAR_24H, F_PAYEE_NEAR_7D = 80, 81, 82, 83
# features computed outside these kernels (the graph detectors), copied in before the rules
F_PAYER_DAY_DOMESTIC, F_PAYEE_DAY_DOMESTIC = 84, 85
F_EXTRA_BASE = 86
N_EXTRA = 19  # = graph._kernels.N_X (a test holds them equal)
# decision memory and counter-evidence (after the graph slots, so numbered from their end)
F_MEMORY_BASE = F_EXTRA_BASE + N_EXTRA
(F_PAYER_VICTIM, F_PAYEE_STOPPED, F_PAYER_MULE, F_PAYEE_MULE,
 F_PAYER_COLLECTOR, F_PAYEE_COLLECTOR, F_PAYER_CONFIRMED, F_PAYEE_CONFIRMED,
 F_PAYER_CLEARED, F_PAYEE_CLEARED, F_PAYER_DORMANT_DAYS, F_PAYEE_DORMANT_DAYS,
 F_PAYER_WOKE_DAYS, F_PAYER_MERCHANT, F_PAYEE_MERCHANT, F_PAYER_PAYROLL,
 F_PAYER_ON_CALL, F_PAYER_ON_CALL_UNKNOWN, F_PAYER_ON_CALL_RISKY,
 F_PAYEE_PHONE_RISKY, F_PAYEE_PHONE_CONTACT, F_NEAR_LINE, F_OBSERVED_DAYS,
 F_PAYEE_WOKE_DAYS, F_PAYER_LAST_CALLER_RISKY, F_MEMO_FRAUD,
 F_PAYER_INVEST_7D, F_PAYER_LAST_CALL_MIN, F_PAYER_LAST_CALL_TALK_S,
 F_PAYER_LAST_CALL_RISKY, F_PAYEE_WARNED, F_PAYER_TRIAL_DAYS,
 F_PAYEE_TRIAL_DAYS, F_PAYER_IN_PERSONS_1H, F_PAYER_IN_PERSONS_24H,
 F_PAYER_INTERVENED_MIN, F_PAYEE_PHONE_KNOWN, F_PAYER_IN_STRANGERS_1H,
 F_PAYER_IN_STRANGERS_24H, F_PAYER_LAST_CALL_FIRST,
 F_PAYEE_IS_LAST_CALLER, F_PAYER_TALKS_WITH_PAYEE,
 F_PAYER_WARNED_IN_MIN, F_PAYEE_PHONE_IS_PAYER_PHONE,
 F_PAYER_IN_COVER_7D) = range(F_MEMORY_BASE, F_MEMORY_BASE + 45)
N_TXN_FEATURE = F_MEMORY_BASE + 45
FAR_DAYS = 1e6  # "days since" when there is no such event
# an age not known (first seen in the learning period): NaN, so that no condition on it holds
# (an unknown age is neither young nor established)
UNKNOWN_AGE = math.nan
# a payment this soon after an incoming call ended still counts as made "on the call"; a call
# that rang and was never reported ended counts as going on for INCALL_OPEN_MS
INCALL_SLACK_MS = 120_000
INCALL_OPEN_MS = 3_600_000

# ---------------------------------------------------------------- call features
CF_DURATION, CF_CLASS, CF_INTL, CF_VIRTUAL, CF_SPOOFED = 0, 1, 2, 3, 4
CF_CALLER_WATCH, CF_CALLEE_WATCH, CF_FIRST_CONTACT, CF_CALLER_AGE_DAYS = 5, 6, 7, 8
CF_CALLS_1M, CF_CALLS_1H, CF_CALLS_24H, CF_SHORT_1H, CF_SHORT_24H = 9, 10, 11, 12, 13
CF_SHORT_RATIO_1H, CF_SHORT_RATIO_24H, CF_DIST_1H, CF_DIST_24H = 14, 15, 16, 17
CF_TALK_24H, CF_CALLEE_CALLS_IN_24H, CF_RINGING = 18, 19, 20
CF_OUTCOME, CF_ANSWERED_1H, CF_UNANSWERED_RATIO_1H, CF_UNANSWERED_RATIO_24H = 21, 22, 23, 24
CF_CALLER_RISKY_NUMBER, CF_OBSERVED_DAYS, CF_UNANSWERED_RATIO_7D, CF_MEAN_TALK_7D = 25, 26, 27, 28
N_CALL_FEATURE = 29

# ---------------------------------------------------------------- account snapshot (QueryAccount)
# windowed: ((dir*2 + stat)*4 + window) for dir in out/in, stat in count/sum -> 16
S_DIST_BASE = 16  # (dir*3 + window-1) -> 6
S_NEAR_24H, S_NEAR_7D, S_INVEST_24H, S_INVEST_7D, S_PAYBACK_7D = 22, 23, 24, 25, 26
S_PASS_1H, S_PASS_24H, S_AGE_DAYS, S_N_OUT, S_N_IN, S_WATCH = 27, 28, 29, 30, 31, 32
S_EWMA_MEAN_FEN, S_NEAR_IN_24H, S_NEAR_IN_7D = 33, 34, 35
S_VICTIM, S_MULE, S_COLLECTOR, S_CONFIRMED, S_CLEARED = 36, 37, 38, 39, 40
N_SNAPSHOT = 41

# ---------------------------------------------------------------- rules and decisions
OP_GE, OP_GT, OP_LE, OP_LT, OP_EQ, OP_NE = 0, 1, 2, 3, 4, 5
MAX_COND = 12  # conditions per rule (counter-evidence adds conditions, not rules)
RI_NCOND, RI_ACTION, RI_SCORE, RI_FLAGS, RI_MARKS, RI_COND = 0, 1, 2, 3, 4, 5
N_RULE_INT = RI_COND + 2 * MAX_COND
# a decision's reasons are bits of two int64 words (63 bits each, the sign bit unused): rule r
# is bit r of D_REASONS, rule 63 + r bit r of D_REASONS_HIGH
REASON_WORD = 63
MAX_RULES = 2 * REASON_WORD
D_ACTION, D_REASONS, D_SCORE, D_FLAGS, D_MARKS, D_REASONS_HIGH = 0, 1, 2, 3, 4, 5
N_DEC = 6
ACTION_ALLOW = 1  # proto Action / CallAction numbering: ALLOW=1 and up
ACTION_WARN, ACTION_HOLD, ACTION_STOP = 2, 3, 4
CALL_ACTION_BLOCK = 3
# What a fired rule concludes about the parties (a rule's ``marks``); D_MARKS of a decision is
# the union, plus MK_PAYEE_MULE_HOP when the suspicion followed the money from a mule payer.
# MK_RISKY_CONTACT (a call rule's): its callee counts as having just spoken with a risky number,
# as after a warned call, though the call itself is answered below mark_callee_at.
MK_PAYER_VICTIM, MK_PAYEE_MULE, MK_PAYER_MULE, MK_PAYER_COLLECTOR, MK_PAYEE_COLLECTOR = 1, 2, 4, 8, 16
MK_RISKY_NUMBER, MK_PAYEE_MULE_HOP, MK_RISKY_CONTACT = 32, 64, 128


# ================================================================= prefetch
# A batch knows its next events, whose state rows are scattered over the arrays: asking for
# their cache lines a few events ahead overlaps those misses with the work on this event.
PREFETCH_AHEAD = 8


def _prefetch_typer(typingctx: object, arr: types.Type, idx: types.Type) -> object:
    """Typing and code of ``_prefetch(arr, idx)``."""
    if not isinstance(arr, types.Array) or arr.layout != "C" or not isinstance(idx, types.Integer):
        return None
    sig = types.void(arr, idx)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        i = context.cast(builder, args[1], idxty, types.intp)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
        # (address, 1 = for a write, 3 = keep in all cache levels, 1 = data cache)
        builder.call(fn, [builder.bitcast(builder.gep(ary.data, [i]), i8p), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


# Hint the CPU to fetch (for writing) the cache line of ``arr.flat[idx]``; changes nothing else.
_prefetch: Any = intrinsic(_prefetch_typer)


# ================================================================= time buckets
# Integer division by a constant compiles to a multiply and a shift; by a value read from a
# tuple at run time it is a real division (tens of cycles). So the bucket epochs and slots of an
# event are computed once, with literal divisors, and passed down as tuples.
@helper
def _epochs(ts: int, tz: int) -> tuple[int, int, int, int]:
    """Bucket epoch of ``ts`` in each window (local time for the day buckets)."""
    t = ts + tz
    return t // 10_000, t // 600_000, t // 7_200_000, t // 86_400_000


@helper
def _slots(ep: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Bucket slot of each window's epoch (WIN_OFF + epoch % WIN_NB)."""
    return ep[0] % 6, 6 + ep[1] % 6, 12 + ep[2] % 12, 24 + ep[3] % 7


@helper
def _sat_add(a: int, b: int) -> int:
    """``a + b`` for sums of money (both in 0..SUM_MAX), saturating at SUM_MAX: int64 would wrap
    to a negative sum that no "sum >= line" condition meets."""
    return a + b if a <= SUM_MAX - b else SUM_MAX


@helper
def _advance(cnt: np.ndarray, amt: np.ndarray, tag: np.ndarray, head: np.ndarray, e: int,
             ep: tuple[int, int, int, int]) -> None:
    """Move every window's head to ``ep``, retiring the live buckets it passes over from the totals."""
    ncc = cnt.shape[2]
    nsc = amt.shape[2]
    for w in range(NW):
        h = head[e, w]
        if ep[w] <= h:
            continue
        nb = WIN_NB[w]
        off = WIN_OFF[w]
        tot = TOT_OFF + w
        if ep[w] - h >= nb:
            for c in range(ncc):
                cnt[e, tot, c] = 0
            for c in range(nsc):
                amt[e, tot, c] = 0
        else:
            for k in range(h + 1, ep[w] + 1):
                s = off + k % nb
                if tag[e, s] == (k - nb) & TAG_MASK:  # written in a live epoch that now leaves the window
                    for c in range(ncc):
                        cnt[e, tot, c] -= cnt[e, s, c]
                    for c in range(nsc):
                        if amt[e, tot, c] < SUM_MAX:  # exact below the cap
                            amt[e, tot, c] -= amt[e, s, c]
            # a total at the cap is not the sum of its buckets: add up those still in the window
            for c in range(nsc):
                if amt[e, tot, c] >= SUM_MAX:
                    total = 0
                    for k in range(ep[w] - nb + 1, ep[w] + 1):
                        s = off + k % nb
                        if tag[e, s] == k & TAG_MASK:
                            total = _sat_add(total, amt[e, s, c])
                    amt[e, tot, c] = total
        head[e, w] = ep[w]


@helper
def _bucket_add(
    cnt: np.ndarray, amt: np.ndarray, tag: np.ndarray, head: np.ndarray, e: int,
    ep: tuple[int, int, int, int], sl: tuple[int, int, int, int],
    cmask: int, s0: int, s1: int,
) -> None:
    """Count one event in every count channel set in ``cmask``; add ``s0``/``s1`` to sum channels 0/1.

    Heads are already advanced. One pass over the windows for all channels of the event.
    """
    ncc = cnt.shape[2]
    nsc = amt.shape[2]
    for w in range(NW):
        if head[e, w] - ep[w] >= WIN_NB[w]:
            continue  # older than the ring holds
        s = sl[w]
        t = TOT_OFF + w
        et = ep[w] & TAG_MASK
        if tag[e, s] != et:  # stale bucket: it held an epoch that left the window
            for c in range(ncc):
                cnt[e, s, c] = 0
            for c in range(nsc):
                amt[e, s, c] = 0
            tag[e, s] = et
        for c in range(ncc):
            x = (cmask >> c) & 1
            cnt[e, s, c] += x
            cnt[e, t, c] += x
        amt[e, s, 0] = _sat_add(amt[e, s, 0], s0)
        amt[e, t, 0] = _sat_add(amt[e, t, 0], s0)
        if nsc > 1:
            amt[e, s, 1] = _sat_add(amt[e, s, 1], s1)
            amt[e, t, 1] = _sat_add(amt[e, t, 1], s1)


@helper
def _win_sum(arr: np.ndarray, tag: np.ndarray, head: np.ndarray, e: int, ch: int, w: int,
             ep: tuple[int, int, int, int]) -> int:
    """Sum of channel ``ch`` over the window ``w`` ending in epoch ``ep[w]`` (bucket granularity)."""
    h = head[e, w]
    if ep[w] == h:
        return arr[e, TOT_OFF + w, ch]  # the common case: the window ends in the newest bucket
    nb = WIN_NB[w]
    off = WIN_OFF[w]
    lo = max(ep[w] - nb + 1, h - nb + 1)
    hi = min(ep[w], h)
    total = 0
    for k in range(lo, hi + 1):
        s = off + k % nb
        if tag[e, s] == k & TAG_MASK:
            total = _sat_add(total, arr[e, s, ch])
    return total


# ================================================================= recent-counterparty rings
@helper
def _ring_touch(ring: np.ndarray, e: int, d: int, cp: int, ts: int) -> None:
    """Record ``cp`` as a counterparty at ``ts``: refresh it, or replace the stalest entry."""
    t = ts // 1000 - RING_EPOCH_S
    victim = 0
    victim_t = np.int64(2**40)
    for k in range(RING_K):
        c = ring[e, d, k, 0]
        if c == cp:
            if t > ring[e, d, k, 1]:
                ring[e, d, k, 1] = t
            return
        kt = np.int64(ring[e, d, k, 1]) if c >= 0 else np.int64(-(2**40))
        if kt < victim_t:
            victim_t = kt
            victim = k
    if t < victim_t:
        return  # a late event older than every entry of a full ring: not among the K most recent
    ring[e, d, victim, 0] = cp
    ring[e, d, victim, 1] = t


@helper
def _ring_distinct(ring: np.ndarray, e: int, d: int, ts: int, span_s: int) -> int:
    """Distinct counterparties seen in (ts - span, ts]; saturates at RING_K."""
    t = ts // 1000 - RING_EPOCH_S
    n = 0
    for k in range(RING_K):
        if ring[e, d, k, 0] >= 0:
            kt = ring[e, d, k, 1]
            if kt > t - span_s and kt <= t:
                n += 1
    return n


@helper
def _ring_distinct3(ring: np.ndarray, e: int, d: int, ts: int) -> tuple[int, int, int]:
    """Distinct counterparties in the 1 h, 24 h and 7 d windows ending at ts, in one pass."""
    t = ts // 1000 - RING_EPOCH_S
    n1 = 0
    n24 = 0
    n7 = 0
    for k in range(RING_K):
        if ring[e, d, k, 0] >= 0:
            kt = ring[e, d, k, 1]
            if kt <= t:
                age = t - kt
                if age < WIN_SPAN_S[W_7D]:
                    n7 += 1
                    if age < WIN_SPAN_S[W_24H]:
                        n24 += 1
                        if age < WIN_SPAN_S[W_1H]:
                            n1 += 1
    return n1, n24, n7


# ================================================================= pair table
# One int64 row per slot, (key, last seen ms): a lookup touches one cache line, not two.
@helper
def _pair_key(kind: int, a: int, b: int) -> int:
    return (kind << 62) | (a << 31) | b


@helper
def _pair_hash(key: int) -> int:
    h = key * -7046029254386353131  # 0x9E3779B97F4A7C15 as int64; wraps
    return h ^ (h >> 29)


@helper
def _pair_slot(pt: np.ndarray, key: int) -> int:
    """Slot holding ``key``, or the empty slot where it would go (linear probing)."""
    mask = pt.shape[0] - 1
    s = _pair_hash(key) & mask
    while True:
        k = pt[s, 0]
        if k == key or k == PAIR_EMPTY:  # noqa: SIM109 - plain compares compile to two branches
            return s
        s = (s + 1) & mask


@helper
def _pair_seen(pt: np.ndarray, kind: int, a: int, b: int) -> bool:
    return pt[_pair_slot(pt, _pair_key(kind, a, b)), 0] != PAIR_EMPTY


@helper
def _contacts(pt: np.ndarray, p: int, q: int) -> bool:
    """Phones ``p`` and ``q`` (ids, -1: unknown) are two numbers that ever spoke, either way."""
    return (p >= 0 and q >= 0 and p != q
            and (_pair_seen(pt, PAIR_CALL, p, q) or _pair_seen(pt, PAIR_CALL, q, p)))


@helper
def _pair_put_at(pt: np.ndarray, meta: np.ndarray, s: int, key: int, ts: int) -> None:
    """Record ``key`` at ``ts`` in slot ``s`` (from ``_pair_slot``, no insert since)."""
    if pt[s, 0] == PAIR_EMPTY:
        pt[s, 0] = key
        pt[s, 1] = ts
        meta[0] += 1
    elif ts > pt[s, 1]:
        pt[s, 1] = ts


@kernel
def _pair_forget(pt: np.ndarray, kind: int, a: int, b: int) -> int:
    """Make pair (kind, a, b) look last seen long ago (a lookup still finds the slot: open
    addressing cannot empty one); returns 1 when it was there. A payment warning forgotten takes
    the payee's warned inflow with it when that payment was its latest (the same time)."""
    s = _pair_slot(pt, _pair_key(kind, a, b))
    if pt[s, 0] == PAIR_EMPTY:
        return 0
    if kind == PAIR_WARN and a != b and pt[s, 1] != NO_TIME:
        own = _pair_slot(pt, _pair_key(PAIR_WARN, b, b))
        if pt[own, 0] != PAIR_EMPTY and pt[own, 1] == pt[s, 1]:
            pt[own, 1] = NO_TIME
    pt[s, 1] = NO_TIME
    return 1


@kernel
def _pair_rehash(pt: np.ndarray, new_pt: np.ndarray, min_ts: int) -> int:
    """Copy live pairs (last seen at or after ``min_ts``) into a fresh table; returns the count."""
    n = 0
    for s in range(pt.shape[0]):
        k = pt[s, 0]
        if k != PAIR_EMPTY and pt[s, 1] >= min_ts:
            t = _pair_slot(new_pt, k)
            new_pt[t, 0] = k
            new_pt[t, 1] = pt[s, 1]
            n += 1
    return n


# ================================================================= rules
@helper
def _eval_rules(rules_i: np.ndarray, rules_f: np.ndarray, feat: np.ndarray, fr: int,
                dec: np.ndarray, dr: int) -> None:
    """Decide row ``fr`` of ``feat`` into row ``dr`` of ``dec``: every rule whose conditions all
    hold fires; the strongest action wins, scores combine noisy-OR. (Rows, not views: a view
    costs two atomic reference-count updates per call.)"""
    action = ACTION_ALLOW
    bits = 0
    high = 0
    flags = 0
    marks = 0
    miss = 1.0
    for r in range(rules_i.shape[0]):
        ok = True
        for c in range(rules_i[r, RI_NCOND]):
            v = feat[fr, rules_i[r, RI_COND + 2 * c]]
            op = rules_i[r, RI_COND + 2 * c + 1]
            thr = rules_f[r, c]
            if op == OP_GE:
                ok = v >= thr
            elif op == OP_GT:
                ok = v > thr
            elif op == OP_LE:
                ok = v <= thr
            elif op == OP_LT:
                ok = v < thr
            elif op == OP_EQ:
                ok = v == thr
            else:
                ok = v != thr
            if not ok:
                break
        if ok:
            if r < REASON_WORD:
                bits |= 1 << r
            else:
                high |= 1 << (r - REASON_WORD)
            if rules_i[r, RI_ACTION] > action:
                action = int(rules_i[r, RI_ACTION])
            flags |= rules_i[r, RI_FLAGS]
            marks |= rules_i[r, RI_MARKS]
            miss *= 1.0 - rules_i[r, RI_SCORE] / 100.0
    dec[dr, D_ACTION] = action
    dec[dr, D_REASONS] = bits
    dec[dr, D_REASONS_HIGH] = high
    dec[dr, D_SCORE] = int((1.0 - miss) * 100.0 + 0.5)
    dec[dr, D_FLAGS] = flags
    dec[dr, D_MARKS] = marks



@kernel
def _decide_rows(rules_i: np.ndarray, rules_f: np.ndarray, feat: np.ndarray,
                 dec: np.ndarray) -> None:
    """Decide every row of ``feat`` with one rule table: a shadow policy's rules on the features
    the active policy's decisions were made from (no state is read or written)."""
    for i in range(feat.shape[0]):
        _eval_rules(rules_i, rules_f, feat, i, dec, i)


# ================================================================= per-event updates
@helper
def _seen(sc: np.ndarray, e: int, first: int, last: int, ts: int) -> None:
    if sc[e, first] == NO_TIME or ts < sc[e, first]:
        sc[e, first] = ts
    if ts > sc[e, last]:
        sc[e, last] = ts


@helper
def _watched(until: int, ts: int) -> float:
    return 1.0 if until > ts else 0.0


@helper
def _learning(first: int, meta: np.ndarray, params: np.ndarray) -> bool:
    """First seen within the learning period: on a server that started empty everything is
    new at first, so such an entity's age is not known."""
    return first != NO_TIME and first < meta[META_FIRST_TS] + params[P_LEARN_MS]


@helper
def _age_days(sc: np.ndarray, e: int, ts: int, meta: np.ndarray, params: np.ndarray,
              foreign: bool) -> float:
    """Days since the account was opened (else first seen here); ``foreign``: not by the
    registry's opening date."""
    base = sc[e, SC_OPENED]
    if foreign and sc[e, SC_PROFILE] & PROF_REG_OPENED:
        base = NO_TIME
    if base == NO_TIME:
        base = sc[e, SC_FIRST]
        if _learning(base, meta, params):
            return UNKNOWN_AGE
    return (ts - base) / DAY_MS


@helper
def _cleared(sc: np.ndarray, e: int, ts: int) -> bool:
    return sc[e, SC_CLEARED_UNTIL] > ts


@helper
def _marked(sc: np.ndarray, e: int, col: int, ts: int) -> float:
    """1 while a decision-memory mark holds and feedback has not cleared the account."""
    return 1.0 if sc[e, col] > ts and sc[e, SC_CLEARED_UNTIL] <= ts else 0.0


@helper
def _mule_level(sc: np.ndarray, e: int, ts: int) -> int:
    """0: not suspected; 1: confirmed or a level-1 suspect; 2: received from a level-1 mule."""
    if sc[e, SC_CLEARED_UNTIL] > ts:
        return 0
    if sc[e, SC_CONFIRMED_UNTIL] > ts:
        return 1
    if sc[e, SC_MULE_UNTIL] > ts:
        return int(sc[e, SC_MULE_LEVEL])
    return 0


@helper
def _suspect_mule(sc: np.ndarray, e: int, level: int, ts: int, params: np.ndarray) -> bool:
    """Suspect ``e`` at ``level`` (the lower level wins); True when it was not suspected yet.

    Where a mule's money went (level 2 and beyond) never makes a protected victim a suspect: the
    gang pays victims too (a brushing scam's "commission", a "refund" to keep them paying)."""
    if sc[e, SC_CLEARED_UNTIL] > ts or (level >= 2 and sc[e, SC_VICTIM_UNTIL] > ts):
        return False
    cur = int(sc[e, SC_MULE_LEVEL]) if sc[e, SC_MULE_UNTIL] > ts else 0
    if cur == 0 or level < cur:
        sc[e, SC_MULE_LEVEL] = level
    until = ts + params[P_MULE_MS]
    if until > sc[e, SC_MULE_UNTIL]:
        sc[e, SC_MULE_UNTIL] = until
    return cur == 0


@helper
def _profile(sc: np.ndarray, e: int, foreign: bool) -> int:
    """The account's PROF_* bits; ``foreign``: without the registry entry's."""
    bits = sc[e, SC_PROFILE]
    return bits & ~PROF_REGISTRY if foreign else bits


@helper
def _persons_paid_in(sc: np.ndarray, ring: np.ndarray, pt: np.ndarray, e: int, phone: int,
                     ts: int) -> tuple[int, int, int, int]:
    """Distinct counterparties that paid ``e`` in the hour and the day ending at ts and are not
    organisations (by the registry or their latest transaction): a mule passes on strangers'
    money, a boss paying the staff from a personal card, or a victim paying a loan on, passes on
    a firm's. Then the same, less those whose phone ``e``'s phone (``phone``) ever spoke with: a
    family pooling a down payment passes on relatives' money; a victim is a stranger to the
    mule. An account on the same phone counts as a stranger: one phone behind several accounts
    passing money between them is how a gang runs its mules. Returns (persons 1 h, persons 24 h,
    strangers 1 h, strangers 24 h)."""
    t = ts // 1000 - RING_EPOCH_S
    n1 = 0
    n24 = 0
    s1 = 0
    s24 = 0
    for k in range(RING_K):
        cp = ring[e, R_IN, k, 0]
        if cp >= 0:
            kt = ring[e, R_IN, k, 1]
            if kt <= t and t - kt < WIN_SPAN_S[W_24H] and not sc[cp, SC_PROFILE] & (
                    PROF_ORGANISATION | PROF_SEEN_ORGANISATION):
                hour = t - kt < WIN_SPAN_S[W_1H]
                n24 += 1
                if hour:
                    n1 += 1
                if not _contacts(pt, sc[cp, SC_PHONE], phone):
                    s24 += 1
                    if hour:
                        s1 += 1
    return n1, n24, s1, s24


@helper
def _intervened_minutes(sc: np.ndarray, ring: np.ndarray, pt: np.ndarray, a: int, ts: int) -> float:
    """Minutes since the protected payer's latest payment held or stopped for fraud (the
    decision memory's PAIR_STOP), looked up for its RING_K most recent payees: the scam is
    still going on minutes after an intervention (the fraudster names the next account), life
    goes on hours later. FAR_MINUTES when the payer is not protected, or none is found."""
    if _marked(sc, a, SC_VICTIM_UNTIL, ts) == 0.0:
        return FAR_MINUTES
    latest = NO_TIME
    for k in range(RING_K):
        cp = ring[a, R_OUT, k, 0]
        if cp >= 0:
            s = _pair_slot(pt, _pair_key(PAIR_STOP, a, cp))
            if pt[s, 0] != PAIR_EMPTY and latest < pt[s, 1] <= ts:
                latest = pt[s, 1]
    if latest == NO_TIME:
        return FAR_MINUTES
    return (ts - latest) / MINUTE_MS


@helper
def _warned_inflow_minutes(sc: np.ndarray, pt: np.ndarray, a: int, ts: int) -> float:
    """Minutes since account ``a`` last received a payment its payer was warned about as fraud
    (decision memory: PAIR_WARN of the account with itself); FAR_MINUTES when none is
    remembered, or the account is cleared."""
    s = _pair_slot(pt, _pair_key(PAIR_WARN, a, a))
    if pt[s, 0] == PAIR_EMPTY or pt[s, 1] == NO_TIME or pt[s, 1] > ts or _cleared(sc, a, ts):
        return FAR_MINUTES
    return (ts - pt[s, 1]) / MINUTE_MS


@helper
def _trial_days(sc: np.ndarray, e: int, ts: int) -> float:
    """Days since the test transfer of an account that has done nothing else (FAR_DAYS: not so)."""
    return _days_since(sc[e, SC_FIRST], ts) if sc[e, SC_PROFILE] & PROF_TRIAL else FAR_DAYS


@helper
def _trial_update(sc: np.ndarray, a: int, b: int, amount: int, fl: int, most: int) -> None:
    """PROF_TRIAL of payer ``a`` and payee ``b`` after this transaction (before its counts)."""
    home = (fl & TF_PAYER_PERSON) != 0 and (fl & (TF_CASH | TF_XBORDER)) == 0
    tiny = home and (fl & TF_PAYEE_PERSON) != 0 and amount <= most
    if tiny and sc[a, SC_N_OUT] + sc[a, SC_N_IN] == 0:
        sc[a, SC_PROFILE] |= PROF_TRIAL
    elif not tiny:
        sc[a, SC_PROFILE] &= ~PROF_TRIAL
    if tiny and sc[b, SC_N_OUT] + sc[b, SC_N_IN] == 0:
        sc[b, SC_PROFILE] |= PROF_TRIAL
    elif not home:
        # a person's payment in, of any size, leaves it (the victims pay the tested account)
        sc[b, SC_PROFILE] &= ~PROF_TRIAL


@helper
def _mule_ok(sc: np.ndarray, ring: np.ndarray, e: int, ts: int, params: np.ndarray,
             foreign: bool) -> bool:
    """May ``e`` be made a mule: a person's account (not an organisation or a merchant), not a
    hub (many payers in 7 d); ``foreign``: whatever its registry entry says."""
    return (not _profile(sc, e, foreign) & (PROF_MERCHANT | PROF_ORGANISATION | PROF_SEEN_ORGANISATION)
            and _ring_distinct(ring, e, R_IN, ts, WIN_SPAN_S[W_7D]) <= params[P_HUB_PAYERS])


@helper
def _follow_money(sc: np.ndarray, ring: np.ndarray, pt: np.ndarray, e: int, ts: int,
                  params: np.ndarray) -> None:
    """``e`` just became a level-1 suspect: the accounts it paid within P_FOLLOW_MS before now
    (its recent payees) are where the money it received went; they become level-2 suspects.

    Not an account that paid ``e`` before: money paid back to its own payer (a Ponzi's
    "returns" to its investors, a refund) is not money moved on; nor a cash terminal."""
    if params[P_MULE_MAX_LEVEL] < 2:
        return
    t = ts // 1000 - RING_EPOCH_S
    span = params[P_FOLLOW_MS] // 1000
    for k in range(RING_K):
        cp = ring[e, R_OUT, k, 0]
        if cp >= 0 and cp != e:
            kt = ring[e, R_OUT, k, 1]
            if (kt <= t and t - kt <= span and not sc[cp, SC_PROFILE] & PROF_SEEN_TERMINAL
                    and _mule_ok(sc, ring, cp, ts, params, False)
                    and not _pair_seen(pt, PAIR_TXN, cp, e)):
                _suspect_mule(sc, cp, 2, ts, params)


@helper
def _extend(sc: np.ndarray, e: int, col: int, until: int) -> None:
    if until > sc[e, col]:
        sc[e, col] = until


@helper
def _dormant_ms(sc: np.ndarray, e: int, prev_last: int, ts: int, foreign: bool) -> int:
    """How long the account had been inactive before ``ts``: since the later of its previous
    event here and the registry's last activity (not with ``foreign``); 0 when neither is
    known."""
    last = prev_last
    reg = sc[e, SC_LAST_ACTIVE]
    if not foreign and reg != NO_TIME and (last == NO_TIME or reg > last):
        last = reg
    if last == NO_TIME or last >= ts:
        return 0
    return ts - last


@helper
def _days_since(t: int, ts: int) -> float:
    return (ts - t) / DAY_MS if t != NO_TIME and t <= ts else FAR_DAYS


@helper
def _ratio(num: int, den: int) -> float:
    return num / den if den > 0 else 0.0


@helper
def _day_part(amount: int, flags: int, k: int) -> int:
    """What one transaction adds to day sum ``k`` (as ``_day_add`` adds it)."""
    if k == DAY_CASH:
        return amount if flags & TF_CASH else 0
    if k == DAY_XFER:
        return 0 if flags & TF_CASH else amount
    if k == DAY_XB:
        return amount if flags & TF_XBORDER else 0
    return 0 if flags & (TF_CASH | TF_XBORDER) else amount  # DAY_DOMESTIC


@helper
def _day_add(sc: np.ndarray, e: int, ts: int, tz: int, day_col: int, amount: int, flags: int) -> None:
    """Per-local-day sums for large-value reporting: cash, transfers, cross-border, domestic."""
    day = (ts + tz) // DAY_MS
    if day < sc[e, day_col]:
        return
    if day > sc[e, day_col]:
        sc[e, day_col] = day
        for k in range(DAY_CASH, DAY_DOMESTIC + 1):
            sc[e, day_col + k] = 0
    for k in range(DAY_CASH, DAY_DOMESTIC + 1):
        part = _day_part(amount, flags, k)
        if part:
            sc[e, day_col + k] = _sat_add(sc[e, day_col + k], part)


@helper
def _day_get(sc: np.ndarray, e: int, ts: int, tz: int, day_col: int, k: int, amount: int,
             flags: int) -> float:
    """Day sum ``k`` of the local day of ``ts`` after the transaction (``amount``, ``flags``) was
    added. A late transaction of an earlier day than the newest seen is not added (that day's
    sums are gone): its own part then, which its day's sum holds at least, so a payment over a
    reporting line is flagged whenever it arrives."""
    if sc[e, day_col] == (ts + tz) // DAY_MS:
        return float(sc[e, day_col + k])
    return float(_day_part(amount, flags, k))


# ``_txn`` and ``_call`` are kernels of their own for numba's front end, not ``helper``s inlined
# into ``_process`` in numba's IR: its passes (liveness, SSA, typing) cost more than linearly in
# a function's size, and with both inlined ``_process`` was most of the first start's compile.
# ``inlined`` has LLVM inline them into ``_process`` afterwards (``features._llvm_inline``), so
# the machine code is one function again, without a call and its argument passing per event.
@inlined
def _txn(
    ev: np.ndarray, i: int,
    a_cnt: np.ndarray, a_amt: np.ndarray, a_tag: np.ndarray, a_head: np.ndarray,
    a_ring: np.ndarray, a_sc: np.ndarray, a_fl: np.ndarray, p_sc: np.ndarray, d_sc: np.ndarray,
    pt: np.ndarray, meta: np.ndarray, params: np.ndarray, need: np.ndarray, f: np.ndarray, r: int,
) -> None:
    ts = ev[i, EV_TS]
    a = ev[i, EV_A]
    b = ev[i, EV_B]
    ph = ev[i, EV_C]
    dv = ev[i, EV_D]
    amount = ev[i, EV_AMOUNT]
    fl = ev[i, EV_FLAGS]
    tz = params[P_TZ_MS]
    ep = _epochs(ts, tz)
    sl = _slots(ep)
    f[r, :] = 0.0

    # a transaction naming another institution for a party than its registry entry's owner
    # does not take the entry's word about it
    fa = (fl & TF_PAYER_FOREIGN) != 0
    fb = (fl & TF_PAYEE_FOREIGN) != 0
    dorm_a = _dormant_ms(a_sc, a, a_sc[a, SC_LAST], ts, fa)
    dorm_b = _dormant_ms(a_sc, b, a_sc[b, SC_LAST], ts, fb)
    if dorm_a >= params[P_DORMANT_MS] and params[P_DORMANT_MS] > 0:
        a_sc[a, SC_WAKE] = ts
    if dorm_b >= params[P_DORMANT_MS] and params[P_DORMANT_MS] > 0:
        a_sc[b, SC_WAKE] = ts
    _seen(a_sc, a, SC_FIRST, SC_LAST, ts)
    _seen(a_sc, b, SC_FIRST, SC_LAST, ts)
    # seen as an organisation, or as a person (then not so any more: one payment naming an
    # account an organisation made it immune to mule marks for good)
    if not fl & (TF_PAYER_PERSON | TF_PAYER_TERMINAL):
        a_sc[a, SC_PROFILE] |= PROF_SEEN_ORGANISATION
    elif fl & TF_PAYER_PERSON:
        a_sc[a, SC_PROFILE] &= ~PROF_SEEN_ORGANISATION
    if not fl & (TF_PAYEE_PERSON | TF_PAYEE_TERMINAL):
        a_sc[b, SC_PROFILE] |= PROF_SEEN_ORGANISATION
    elif fl & TF_PAYEE_PERSON:
        a_sc[b, SC_PROFILE] &= ~PROF_SEEN_ORGANISATION
    # the same for a cash terminal: the latest transaction's word
    if fl & TF_PAYER_TERMINAL:
        a_sc[a, SC_PROFILE] |= PROF_SEEN_TERMINAL
    else:
        a_sc[a, SC_PROFILE] &= ~PROF_SEEN_TERMINAL
    if fl & TF_PAYEE_TERMINAL:
        a_sc[b, SC_PROFILE] |= PROF_SEEN_TERMINAL
    else:
        a_sc[b, SC_PROFILE] &= ~PROF_SEEN_TERMINAL
    # the payer's phone, learned from its payments where the registry names none (the latest
    # payment's word; not from a payment naming another institution than the registry's)
    if ph >= 0 and not fa and (a_sc[a, SC_PHONE] < 0 or a_sc[a, SC_PROFILE] & PROF_PHONE_SEEN):
        a_sc[a, SC_PHONE] = ph
        a_sc[a, SC_PROFILE] |= PROF_PHONE_SEEN
    # an opening date a transaction reports counts when it is the latest known: any payment
    # naming an older one made a new account "old" for everyone after it (new-account rules
    # silent); the registry's word (set_account_profile) is taken as it is
    if ev[i, EV_AUX1] != NO_TIME and ev[i, EV_AUX1] > a_sc[a, SC_OPENED]:
        a_sc[a, SC_OPENED] = ev[i, EV_AUX1]
        a_sc[a, SC_PROFILE] &= ~PROF_REG_OPENED
    if ev[i, EV_AUX2] != NO_TIME and ev[i, EV_AUX2] > a_sc[b, SC_OPENED]:
        a_sc[b, SC_OPENED] = ev[i, EV_AUX2]
        a_sc[b, SC_PROFILE] &= ~PROF_REG_OPENED

    # --- features that look at the state before this transaction
    f[r, F_AMOUNT] = amount
    f[r, F_CASH] = 1.0 if fl & TF_CASH else 0.0
    f[r, F_XBORDER] = 1.0 if fl & TF_XBORDER else 0.0
    f[r, F_CHANNEL] = ev[i, EV_AUX3]
    f[r, F_MEMO_INVEST] = 1.0 if fl & TF_MEMO_INVEST else 0.0
    f[r, F_MEMO_FRAUD] = 1.0 if fl & TF_MEMO_FRAUD else 0.0
    f[r, F_PAYER_IS_PERSON] = 1.0 if fl & TF_PAYER_PERSON else 0.0
    f[r, F_PAYEE_IS_PERSON] = 1.0 if fl & TF_PAYEE_PERSON else 0.0
    f[r, F_PAYER_TERMINAL] = 1.0 if fl & TF_PAYER_TERMINAL else 0.0
    f[r, F_PAYEE_TERMINAL] = 1.0 if fl & TF_PAYEE_TERMINAL else 0.0
    f[r, F_NEAR_LINE] = 1.0 if fl & TF_NEAR_LINE else 0.0
    f[r, F_OBSERVED_DAYS] = (ts - meta[META_FIRST_TS]) / DAY_MS
    # --- decision memory and what the registry says
    f[r, F_PAYER_VICTIM] = _marked(a_sc, a, SC_VICTIM_UNTIL, ts)
    stop = _pair_slot(pt, _pair_key(PAIR_STOP, a, b))
    if (pt[stop, 0] != PAIR_EMPTY and pt[stop, 1] <= ts and ts - pt[stop, 1] <= params[P_PROTECT_MS]
            and not _cleared(a_sc, a, ts)):
        f[r, F_PAYEE_STOPPED] = 1.0
    warned = _pair_slot(pt, _pair_key(PAIR_WARN, a, b))
    if (pt[warned, 0] != PAIR_EMPTY and pt[warned, 1] <= ts
            and ts - pt[warned, 1] <= params[P_PROTECT_MS] and not _cleared(a_sc, a, ts)):
        f[r, F_PAYEE_WARNED] = 1.0
    if need[F_PAYER_INTERVENED_MIN]:
        f[r, F_PAYER_INTERVENED_MIN] = _intervened_minutes(a_sc, a_ring, pt, a, ts)
    if need[F_PAYER_WARNED_IN_MIN]:
        f[r, F_PAYER_WARNED_IN_MIN] = _warned_inflow_minutes(a_sc, pt, a, ts)
    f[r, F_PAYER_MULE] = _mule_level(a_sc, a, ts)
    f[r, F_PAYEE_MULE] = _mule_level(a_sc, b, ts)
    f[r, F_PAYER_COLLECTOR] = _marked(a_sc, a, SC_COLLECTOR_UNTIL, ts)
    f[r, F_PAYEE_COLLECTOR] = _marked(a_sc, b, SC_COLLECTOR_UNTIL, ts)
    f[r, F_PAYER_CONFIRMED] = _watched(a_sc[a, SC_CONFIRMED_UNTIL], ts)
    f[r, F_PAYEE_CONFIRMED] = _watched(a_sc[b, SC_CONFIRMED_UNTIL], ts)
    f[r, F_PAYER_CLEARED] = _watched(a_sc[a, SC_CLEARED_UNTIL], ts)
    f[r, F_PAYEE_CLEARED] = _watched(a_sc[b, SC_CLEARED_UNTIL], ts)
    f[r, F_PAYER_DORMANT_DAYS] = dorm_a / DAY_MS
    f[r, F_PAYEE_DORMANT_DAYS] = dorm_b / DAY_MS
    f[r, F_PAYER_WOKE_DAYS] = _days_since(a_sc[a, SC_WAKE], ts)
    f[r, F_PAYEE_WOKE_DAYS] = _days_since(a_sc[b, SC_WAKE], ts)
    f[r, F_PAYER_MERCHANT] = 1.0 if _profile(a_sc, a, fa) & PROF_MERCHANT else 0.0
    f[r, F_PAYEE_MERCHANT] = 1.0 if _profile(a_sc, b, fb) & PROF_MERCHANT else 0.0
    f[r, F_PAYER_PAYROLL] = 1.0 if _profile(a_sc, a, fa) & PROF_PAYROLL else 0.0
    f[r, F_PAYER_TRIAL_DAYS] = _trial_days(a_sc, a, ts)
    f[r, F_PAYEE_TRIAL_DAYS] = _trial_days(a_sc, b, ts)
    pe = ev[i, EV_E]
    if pe < 0 and not fb and not a_sc[b, SC_PROFILE] & PROF_PHONE_SEEN:
        pe = a_sc[b, SC_PHONE]
    if pe >= 0:
        # the bank knows whose account it is: "not a contact" then says something
        f[r, F_PAYEE_PHONE_KNOWN] = 1.0
        if p_sc[pe, PSC_WATCH] > ts or p_sc[pe, PSC_RISKY_NUMBER_UNTIL] > ts:
            f[r, F_PAYEE_PHONE_RISKY] = 1.0
        if _contacts(pt, pe, ph):
            f[r, F_PAYEE_PHONE_CONTACT] = 1.0
    # one person's two accounts: the payee's phone (named, on file or learned) is the payer's
    # own (the owner topping up an old account of its own); no victim pays itself
    own_a = ph if ph >= 0 or fa else a_sc[a, SC_PHONE]
    own_b = ev[i, EV_E] if ev[i, EV_E] >= 0 or fb else a_sc[b, SC_PHONE]
    f[r, F_PAYEE_PHONE_IS_PAYER_PHONE] = 1.0 if own_a >= 0 and own_a == own_b else 0.0
    # counter-evidence only, so a phone learned from an account's own payments counts too:
    # relatives call each other, a victim never spoke with the mule's owner; a number flagged for
    # fraud is no one the payer knows, whoever it spoke with
    if (need[F_PAYER_TALKS_WITH_PAYEE] and _contacts(pt, own_a, own_b)
            and p_sc[own_b, PSC_WATCH] <= ts and p_sc[own_b, PSC_RISKY_NUMBER_UNTIL] <= ts):
        f[r, F_PAYER_TALKS_WITH_PAYEE] = 1.0
    key_ab = _pair_key(PAIR_TXN, a, b)
    slot_ab = _pair_slot(pt, key_ab)
    f[r, F_FIRST_TIME_PAYEE] = 1.0 if pt[slot_ab, 0] == PAIR_EMPTY else 0.0
    reverse = _pair_seen(pt, PAIR_TXN, b, a)
    f[r, F_REVERSE_EDGE] = 1.0 if reverse else 0.0
    f[r, F_PAYER_WATCH] = _watched(a_sc[a, SC_WATCH], ts)
    f[r, F_PAYEE_WATCH] = _watched(a_sc[b, SC_WATCH], ts)
    f[r, F_DEVICE_WATCH] = _watched(d_sc[dv, DSC_WATCH], ts) if dv >= 0 else 0.0
    f[r, F_RISKY_CALL_MIN] = FAR_MINUTES
    f[r, F_PAYER_LAST_CALL_MIN] = FAR_MINUTES
    if ph >= 0:
        f[r, F_PHONE_WATCH] = _watched(p_sc[ph, PSC_WATCH], ts)
        rts = p_sc[ph, PSC_RISKY_TS]
        if rts != NO_TIME and rts <= ts:
            f[r, F_RISKY_CALL_MIN] = (ts - rts) / MINUTE_MS
            if ts - rts <= params[P_RISKY_LOOKBACK_MS]:
                f[r, F_RISKY_CALL_RECENT] = 1.0
                f[r, F_RISKY_CALL_CALLER_WATCH] = p_sc[ph, PSC_RISKY_CALLER_WATCH]
                f[r, F_RISKY_CALL_SCORE] = p_sc[ph, PSC_RISKY_SCORE]
        cs = p_sc[ph, PSC_INCALL_START]
        if cs != NO_TIME and cs <= ts:
            ce = p_sc[ph, PSC_INCALL_END]
            # the newest incoming call, whether or not it is still going on: an impersonator
            # talks the victim through the transfer, or hangs up just before it
            f[r, F_PAYER_LAST_CALL_MIN] = max(0, ts - ce) / MINUTE_MS
            f[r, F_PAYER_LAST_CALL_TALK_S] = (min(ts, ce) - cs) / 1000
            f[r, F_PAYER_LAST_CALL_RISKY] = 1.0 if p_sc[ph, PSC_INCALL_FLAGS] & INCALL_RISKY else 0.0
            f[r, F_PAYER_LAST_CALL_FIRST] = 1.0 if p_sc[ph, PSC_INCALL_FLAGS] & INCALL_FIRST else 0.0
            if ts <= ce + INCALL_SLACK_MS:
                f[r, F_PAYER_ON_CALL] = 1.0
                cf = p_sc[ph, PSC_INCALL_FLAGS]
                f[r, F_PAYER_ON_CALL_UNKNOWN] = 1.0 if cf & INCALL_UNKNOWN else 0.0
                f[r, F_PAYER_ON_CALL_RISKY] = 1.0 if cf & INCALL_RISKY else 0.0
            # the number the payer last spoke with is now known to be risky (it was flagged,
            # or listed, since): a robocaller's victim is found after the call
            c = p_sc[ph, PSC_INCALL_CALLER]
            if (ts - ce <= params[P_RISKY_LOOKBACK_MS] and c >= 0
                    and (p_sc[c, PSC_RISKY_NUMBER_UNTIL] > ts or p_sc[c, PSC_WATCH] > ts)):
                f[r, F_PAYER_LAST_CALLER_RISKY] = 1.0
            # the payee's own phone (named, on file or learned from its payments) is the one
            # that just called: the relative who asked for the money, not a fraudster's
            pb = ev[i, EV_E]
            if pb < 0 and not fb:
                pb = a_sc[b, SC_PHONE]
            if c >= 0 and pb == c:
                f[r, F_PAYEE_IS_LAST_CALLER] = 1.0
                if p_sc[ph, PSC_INCALL_FLAGS] & INCALL_FIRST and not _pair_seen(pt, PAIR_CALL, ph, c):
                    # the payee's phone only spoke with the payer on this first call: a
                    # fraudster calling from the mule owner's phone card is no acquaintance
                    # (a relative returning the payer's calls is one: she dialled him before)
                    f[r, F_PAYER_TALKS_WITH_PAYEE] = 0.0
    x = math.log(amount)
    n_out = a_sc[a, SC_N_OUT]
    f[r, F_PAYER_HIST] = n_out
    f[r, F_PAYEE_HIST] = a_sc[b, SC_N_IN]
    if n_out > 0:
        m = a_fl[a, FL_MEAN]
        f[r, F_PAYER_Z] = (x - m) / math.sqrt(a_fl[a, FL_VAR] + 0.01)
        f[r, F_PAYER_RATIO] = math.exp(x - m)
    else:
        f[r, F_PAYER_RATIO] = 1.0

    # --- update
    _advance(a_cnt, a_amt, a_tag, a_head, a, ep)
    _advance(a_cnt, a_amt, a_tag, a_head, b, ep)
    near = fl & TF_NEAR_LINE
    m_out = 1 << AC_OUT
    m_in = 1 << AC_IN
    if near:
        m_out |= 1 << AC_NEAR
        m_in |= 1 << AC_NEAR_IN
    if reverse and pt[slot_ab, 0] == PAIR_EMPTY:  # the first payment back to this payer
        m_out |= 1 << AC_PAYBACK
    if fl & TF_MEMO_INVEST:
        m_in |= 1 << AC_INVEST_IN
    _bucket_add(a_cnt, a_amt, a_tag, a_head, a, ep, sl, m_out, amount, 0)  # AS_OUT = 0
    _bucket_add(a_cnt, a_amt, a_tag, a_head, b, ep, sl, m_in, 0, amount)  # AS_IN = 1
    _ring_touch(a_ring, a, R_OUT, b, ts)
    _ring_touch(a_ring, b, R_IN, a, ts)
    _pair_put_at(pt, meta, slot_ab, key_ab, ts)
    _day_add(a_sc, a, ts, tz, SC_DAY_OUT, amount, fl)
    _day_add(a_sc, b, ts, tz, SC_DAY_IN, amount, fl)
    alpha = params[P_EWMA_ALPHA_PPM] / 1e6
    if n_out == 0:
        a_fl[a, FL_MEAN] = x
        a_fl[a, FL_VAR] = 0.0
    else:
        dlt = x - a_fl[a, FL_MEAN]
        a_fl[a, FL_MEAN] += alpha * dlt
        a_fl[a, FL_VAR] = (1.0 - alpha) * (a_fl[a, FL_VAR] + alpha * dlt * dlt)
    _trial_update(a_sc, a, b, amount, fl, params[P_TEST_TRANSFER_MAX])
    a_sc[a, SC_N_OUT] += 1
    a_sc[b, SC_N_IN] += 1
    if dv >= 0 and ts > d_sc[dv, DSC_LAST]:
        d_sc[dv, DSC_LAST] = ts

    # --- features that look at the state after it
    f[r, F_PAYER_AGE_DAYS] = _age_days(a_sc, a, ts, meta, params, fa)
    f[r, F_PAYEE_AGE_DAYS] = _age_days(a_sc, b, ts, meta, params, fb)
    # Window reads are skipped where ``need`` is 0 (no rule of the policy reads the feature);
    # the state above is updated in full either way.
    for p in range(2):
        e = a if p == 0 else b
        for d in range(2):
            base = F_WIN_BASE + (p * 2 + d) * 8
            for w in range(NW):
                if need[base + w]:
                    f[r, base + w] = _win_sum(a_cnt, a_tag, a_head, e, AC_OUT + d, w, ep)
                if need[base + 4 + w]:
                    f[r, base + 4 + w] = _win_sum(a_amt, a_tag, a_head, e, AS_OUT + d, w, ep)
            base = F_DIST_BASE + (p * 2 + d) * 3
            if need[base] or need[base + 1] or need[base + 2]:
                n1, n24, n7 = _ring_distinct3(a_ring, e, d, ts)
                f[r, base] = n1
                f[r, base + 1] = n24
                f[r, base + 2] = n7
    if (need[F_PAYER_IN_PERSONS_1H] or need[F_PAYER_IN_PERSONS_24H] or need[F_PAYER_IN_STRANGERS_1H]
            or need[F_PAYER_IN_STRANGERS_24H]):
        (f[r, F_PAYER_IN_PERSONS_1H], f[r, F_PAYER_IN_PERSONS_24H], f[r, F_PAYER_IN_STRANGERS_1H],
         f[r, F_PAYER_IN_STRANGERS_24H]) = _persons_paid_in(a_sc, a_ring, pt, a, a_sc[a, SC_PHONE], ts)
    for w in (W_1H, W_24H):
        if need[F_PAYER_PASS_1H + w - W_1H]:
            f[r, F_PAYER_PASS_1H + w - W_1H] = _ratio(
                _win_sum(a_amt, a_tag, a_head, a, AS_OUT, w, ep),
                _win_sum(a_amt, a_tag, a_head, a, AS_IN, w, ep))
    for w in (W_24H, W_7D):
        o = w - W_24H
        if need[F_PAYER_NEAR_24H + o]:
            f[r, F_PAYER_NEAR_24H + o] = _win_sum(a_cnt, a_tag, a_head, a, AC_NEAR, w, ep)
        if need[F_PAYEE_NEAR_24H + o]:
            f[r, F_PAYEE_NEAR_24H + o] = _win_sum(a_cnt, a_tag, a_head, b, AC_NEAR_IN, w, ep)
        if need[F_PAYEE_INVEST_24H + o]:
            f[r, F_PAYEE_INVEST_24H + o] = _win_sum(a_cnt, a_tag, a_head, b, AC_INVEST_IN, w, ep)
    # what the payer itself took in as "investment": a collector paying money out
    if need[F_PAYER_INVEST_7D]:
        f[r, F_PAYER_INVEST_7D] = _win_sum(a_cnt, a_tag, a_head, a, AC_INVEST_IN, W_7D, ep)
    if need[F_PAYER_PAYBACK_7D]:
        f[r, F_PAYER_PAYBACK_7D] = _win_sum(a_cnt, a_tag, a_head, a, AC_PAYBACK, W_7D, ep)
    # what came in this week, in units of this payment: a buyer pays on what the family just sent,
    # a mule what the victims did; a victim talked into it pays from its savings
    if need[F_PAYER_IN_COVER_7D]:
        f[r, F_PAYER_IN_COVER_7D] = _win_sum(a_amt, a_tag, a_head, a, AS_IN, W_7D, ep) / amount
    for k in range(3):
        f[r, F_PAYER_DAY_CASH + k] = _day_get(a_sc, a, ts, tz, SC_DAY_OUT, DAY_CASH + k, amount, fl)
        f[r, F_PAYEE_DAY_CASH + k] = _day_get(a_sc, b, ts, tz, SC_DAY_IN, DAY_CASH + k, amount, fl)
    f[r, F_PAYER_DAY_DOMESTIC] = _day_get(a_sc, a, ts, tz, SC_DAY_OUT, DAY_DOMESTIC, amount, fl)
    f[r, F_PAYEE_DAY_DOMESTIC] = _day_get(a_sc, b, ts, tz, SC_DAY_IN, DAY_DOMESTIC, amount, fl)


@inlined
def _call(
    ev: np.ndarray, i: int,
    p_cnt: np.ndarray, p_amt: np.ndarray, p_tag: np.ndarray, p_head: np.ndarray,
    p_ring: np.ndarray, p_sc: np.ndarray,
    pt: np.ndarray, meta: np.ndarray, params: np.ndarray, f: np.ndarray, r: int,
) -> None:
    ts = ev[i, EV_TS]
    a = ev[i, EV_A]
    b = ev[i, EV_B]
    dur = ev[i, EV_AMOUNT]
    fl = ev[i, EV_FLAGS]
    cls = ev[i, EV_AUX1]
    outcome = ev[i, EV_AUX3]
    tz = params[P_TZ_MS]
    ep = _epochs(ts, tz)
    sl = _slots(ep)
    f[r, :] = 0.0
    _seen(p_sc, a, PSC_FIRST, PSC_LAST, ts)
    _seen(p_sc, b, PSC_FIRST, PSC_LAST, ts)

    f[r, CF_DURATION] = dur
    f[r, CF_CLASS] = cls
    f[r, CF_INTL] = 1.0 if cls == NC_INTERNATIONAL else 0.0
    f[r, CF_VIRTUAL] = 1.0 if cls == NC_VIRTUAL else 0.0
    f[r, CF_SPOOFED] = 1.0 if cls == NC_SPOOFED else 0.0
    f[r, CF_CALLER_WATCH] = _watched(p_sc[a, PSC_WATCH], ts)
    f[r, CF_CALLEE_WATCH] = _watched(p_sc[b, PSC_WATCH], ts)
    key_ab = _pair_key(PAIR_CALL, a, b)
    slot_ab = _pair_slot(pt, key_ab)
    f[r, CF_FIRST_CONTACT] = 1.0 if pt[slot_ab, 0] == PAIR_EMPTY else 0.0
    f[r, CF_RINGING] = 0.0 if fl & CF_ENDED else 1.0
    f[r, CF_OUTCOME] = outcome
    f[r, CF_CALLER_RISKY_NUMBER] = _watched(p_sc[a, PSC_RISKY_NUMBER_UNTIL], ts)
    f[r, CF_OBSERVED_DAYS] = (ts - meta[META_FIRST_TS]) / DAY_MS
    answered = outcome == OUT_ANSWERED or (outcome == OUT_LEGACY and dur > 0)
    no_answer = OUT_UNANSWERED <= outcome <= OUT_BLOCKED  # unanswered, rejected, blocked

    # --- the callee's "on a call now": the newest incoming call, until it ends
    if ts >= p_sc[b, PSC_INCALL_START]:  # (NO_TIME is below every time)
        if not fl & CF_ENDED:
            p_sc[b, PSC_INCALL_START] = ts
            p_sc[b, PSC_INCALL_END] = ts + INCALL_OPEN_MS
            p_sc[b, PSC_INCALL_CALLER] = a
            p_sc[b, PSC_INCALL_FLAGS] = _incall_flags(p_sc, a, cls, f[r, CF_FIRST_CONTACT], ts, meta,
                                                      params)
        elif p_sc[b, PSC_INCALL_START] == ts and not fl & CF_NEW:
            # the end of the call that rang: it lasted its talk time, or never connected
            if answered:
                p_sc[b, PSC_INCALL_END] = ts + dur * 1000
            else:
                p_sc[b, PSC_INCALL_START] = NO_TIME
                p_sc[b, PSC_INCALL_END] = NO_TIME
        elif answered:  # reported once, when it ended
            p_sc[b, PSC_INCALL_START] = ts
            p_sc[b, PSC_INCALL_END] = ts + dur * 1000
            p_sc[b, PSC_INCALL_CALLER] = a
            p_sc[b, PSC_INCALL_FLAGS] = _incall_flags(p_sc, a, cls, f[r, CF_FIRST_CONTACT], ts, meta,
                                                      params)

    _advance(p_cnt, p_amt, p_tag, p_head, a, ep)
    _advance(p_cnt, p_amt, p_tag, p_head, b, ep)
    m_caller = 0
    talk = 0
    if fl & CF_NEW:
        m_caller |= 1 << PC_CALLS_OUT
        _bucket_add(p_cnt, p_amt, p_tag, p_head, b, ep, sl, 1 << PC_CALLS_IN, 0, 0)
        _ring_touch(p_ring, a, 0, b, ts)
        _pair_put_at(pt, meta, slot_ab, key_ab, ts)
    if fl & CF_ENDED:
        talk = dur  # PS_TALK_OUT = 0
        # an unanswered, rejected or blocked call is as short as a call gets
        if no_answer or (answered and dur < params[P_SHORT_CALL_S]):
            m_caller |= 1 << PC_SHORT_OUT
        if answered:
            m_caller |= 1 << PC_ANSWERED_OUT
    if fl & (CF_NEW | CF_ENDED):
        _bucket_add(p_cnt, p_amt, p_tag, p_head, a, ep, sl, m_caller, talk, 0)

    first = p_sc[a, PSC_FIRST]
    f[r, CF_CALLER_AGE_DAYS] = UNKNOWN_AGE if _learning(first, meta, params) else (ts - first) / DAY_MS
    f[r, CF_CALLS_1M] = _win_sum(p_cnt, p_tag, p_head, a, PC_CALLS_OUT, W_1M, ep)
    calls_1h = _win_sum(p_cnt, p_tag, p_head, a, PC_CALLS_OUT, W_1H, ep)
    calls_24h = _win_sum(p_cnt, p_tag, p_head, a, PC_CALLS_OUT, W_24H, ep)
    short_1h = _win_sum(p_cnt, p_tag, p_head, a, PC_SHORT_OUT, W_1H, ep)
    short_24h = _win_sum(p_cnt, p_tag, p_head, a, PC_SHORT_OUT, W_24H, ep)
    f[r, CF_CALLS_1H] = calls_1h
    f[r, CF_CALLS_24H] = calls_24h
    f[r, CF_SHORT_1H] = short_1h
    f[r, CF_SHORT_24H] = short_24h
    f[r, CF_SHORT_RATIO_1H] = _ratio(short_1h, calls_1h)
    f[r, CF_SHORT_RATIO_24H] = _ratio(short_24h, calls_24h)
    ans_1h = _win_sum(p_cnt, p_tag, p_head, a, PC_ANSWERED_OUT, W_1H, ep)
    ans_24h = _win_sum(p_cnt, p_tag, p_head, a, PC_ANSWERED_OUT, W_24H, ep)
    f[r, CF_ANSWERED_1H] = ans_1h
    f[r, CF_UNANSWERED_RATIO_1H] = _unanswered(ans_1h, calls_1h)
    f[r, CF_UNANSWERED_RATIO_24H] = _unanswered(ans_24h, calls_24h)
    ans_7d = _win_sum(p_cnt, p_tag, p_head, a, PC_ANSWERED_OUT, W_7D, ep)
    f[r, CF_UNANSWERED_RATIO_7D] = _unanswered(ans_7d, _win_sum(p_cnt, p_tag, p_head, a, PC_CALLS_OUT,
                                                                W_7D, ep))
    f[r, CF_MEAN_TALK_7D] = _ratio(_win_sum(p_amt, p_tag, p_head, a, PS_TALK_OUT, W_7D, ep), ans_7d)
    f[r, CF_DIST_1H] = _ring_distinct(p_ring, a, 0, ts, WIN_SPAN_S[W_1H])
    f[r, CF_DIST_24H] = _ring_distinct(p_ring, a, 0, ts, WIN_SPAN_S[W_24H])
    f[r, CF_TALK_24H] = _win_sum(p_amt, p_tag, p_head, a, PS_TALK_OUT, W_24H, ep)
    f[r, CF_CALLEE_CALLS_IN_24H] = _win_sum(p_cnt, p_tag, p_head, b, PC_CALLS_IN, W_24H, ep)


@helper
def _unanswered(answered: int, calls: int) -> float:
    """Share of the calls placed that were not answered (or not yet: a robocaller's calls
    mostly never are; an ordinary caller's mostly are within minutes)."""
    if calls <= 0:
        return 0.0
    return max(0.0, 1.0 - answered / calls)


@helper
def _incall_flags(p_sc: np.ndarray, caller: int, cls: int, first_contact: float, ts: int,
                  meta: np.ndarray, params: np.ndarray) -> int:
    """What the callee's current call is: from a number it never spoke with (not counted in the
    learning period, when every number is new), from a risky number or class."""
    out = 0
    if first_contact > 0:
        out |= INCALL_FIRST
        if not _learning(p_sc[caller, PSC_FIRST], meta, params):
            out |= INCALL_UNKNOWN
    if (p_sc[caller, PSC_WATCH] > ts or p_sc[caller, PSC_RISKY_NUMBER_UNTIL] > ts
            or NC_VIRTUAL <= cls <= NC_SPOOFED):  # virtual operator, international, spoofed
        out |= INCALL_RISKY
    return out


@helper
def _remember_txn(ev: np.ndarray, i: int, a_amt: np.ndarray, a_tag: np.ndarray, a_head: np.ndarray,
                  a_sc: np.ndarray, a_ring: np.ndarray, pt: np.ndarray, meta: np.ndarray,
                  params: np.ndarray, dec: np.ndarray, first: bool) -> None:
    """Decision memory: what this decision concluded about its parties, for later decisions.

    The payer's mule suspicion follows the money one hop (up to P_MULE_MAX_LEVEL): into a new
    relationship with a person, when the mule received at least the amount within the day, and
    never into cash terminals, merchants or hubs (a mule forwards fresh money to fresh accounts;
    its old counterparties are not part of the chain). A rule's marks protect the payer as a
    victim (a person) or make a party a suspected mule or collector; a payment held or stopped
    for fraud remembers its payee for that payer (a repeat is stopped again), and one warned
    about for fraud too (a repeat on a call or within two hours of one is stopped: the policy's
    REPEAT_TO_WARNED_PAYEE). Cleared accounts
    get no marks.
    """
    ts = ev[i, EV_TS]
    a = ev[i, EV_A]
    b = ev[i, EV_B]
    fl = ev[i, EV_FLAGS]
    marks = dec[i, D_MARKS]
    lvl = _mule_level(a_sc, a, ts)
    # a payee that is a cash terminal, a merchant or a hub (many payers) is never made a mule
    payee_ok = (not fl & TF_PAYEE_TERMINAL
                and _mule_ok(a_sc, a_ring, b, ts, params, (fl & TF_PAYEE_FOREIGN) != 0))
    if (lvl > 0 and lvl < params[P_MULE_MAX_LEVEL] and fl & TF_PAYEE_PERSON and first
            and payee_ok and not _cleared(a_sc, b, ts)
            and _win_sum(a_amt, a_tag, a_head, a, AS_IN, W_24H, _epochs(ts, params[P_TZ_MS]))
            >= ev[i, EV_AMOUNT]):  # forwarding money received within the day
        _suspect_mule(a_sc, b, lvl + 1, ts, params)
        marks |= MK_PAYEE_MULE_HOP
    if marks & MK_PAYER_VICTIM and fl & TF_PAYER_PERSON and not _cleared(a_sc, a, ts):
        # a warning alone protects no one (ordinary payers get one now and then): it remembers
        # the payee, and paying it again just after a call is stopped, which protects
        if dec[i, D_ACTION] >= ACTION_HOLD:
            protect = params[P_PROTECT_STOP_MS] if dec[i, D_ACTION] >= ACTION_STOP else params[P_PROTECT_MS]
            _extend(a_sc, a, SC_VICTIM_UNTIL, ts + protect)
            key = _pair_key(PAIR_STOP, a, b)
            _pair_put_at(pt, meta, _pair_slot(pt, key), key, ts)
        elif dec[i, D_ACTION] == ACTION_WARN:
            key = _pair_key(PAIR_WARN, a, b)
            _pair_put_at(pt, meta, _pair_slot(pt, key), key, ts)
            if fl & TF_PAYEE_PERSON and not fl & TF_PAYEE_TERMINAL:
                # the payee received money its payer was warned about: what it does with it
                # in the next minutes is evidence (a mule passes it on)
                key = _pair_key(PAIR_WARN, b, b)
                _pair_put_at(pt, meta, _pair_slot(pt, key), key, ts)
    if marks & MK_PAYEE_MULE and payee_ok and _suspect_mule(a_sc, b, 1, ts, params):
        _follow_money(a_sc, a_ring, pt, b, ts, params)
    if (marks & MK_PAYER_MULE and not fl & TF_PAYER_TERMINAL
            and _suspect_mule(a_sc, a, 1, ts, params)):
        _follow_money(a_sc, a_ring, pt, a, ts, params)
    if marks & MK_PAYER_COLLECTOR and not _cleared(a_sc, a, ts):
        _extend(a_sc, a, SC_COLLECTOR_UNTIL, ts + params[P_COLLECTOR_MS])
    if marks & MK_PAYEE_COLLECTOR and not _cleared(a_sc, b, ts):
        _extend(a_sc, b, SC_COLLECTOR_UNTIL, ts + params[P_COLLECTOR_MS])
    dec[i, D_MARKS] = marks


@helper
def _remember_call(ev: np.ndarray, i: int, p_sc: np.ndarray, params: np.ndarray,
                   dec: np.ndarray) -> None:
    """A warned call, or one a rule marks risky_contact, makes its callee a person who just
    spoke with a risky number (a call the service blocked, or one unanswered or rejected, is no
    conversation: it marks nothing, and an end report saying so takes back the mark its ringing
    report made); a rule's risky_number mark makes the caller one."""
    a = ev[i, EV_A]
    b = ev[i, EV_B]
    ts = ev[i, EV_TS]
    outcome = ev[i, EV_AUX3]
    action = dec[i, D_ACTION]
    no_answer = OUT_UNANSWERED <= outcome <= OUT_BLOCKED  # unanswered, rejected, blocked
    if dec[i, D_MARKS] & MK_RISKY_NUMBER:
        _extend(p_sc, a, PSC_RISKY_NUMBER_UNTIL, ts + params[P_RISKY_NUMBER_MS])
    if action >= CALL_ACTION_BLOCK:  # the service blocked it: it never connected
        if p_sc[b, PSC_INCALL_START] == ts:
            p_sc[b, PSC_INCALL_START] = NO_TIME
            p_sc[b, PSC_INCALL_END] = NO_TIME
        return
    contact = dec[i, D_MARKS] & MK_RISKY_CONTACT
    if (action > ACTION_ALLOW or contact) and p_sc[b, PSC_INCALL_START] == ts:
        p_sc[b, PSC_INCALL_FLAGS] |= INCALL_RISKY  # warned (or marked): a risky call
    answered = outcome == OUT_ANSWERED or (outcome == OUT_LEGACY and ev[i, EV_AMOUNT] > 0)
    if no_answer or (ev[i, EV_FLAGS] & CF_ENDED and answered
                     and ev[i, EV_AMOUNT] < params[P_SHORT_CALL_S]):
        # never connected, or hung up within seconds: no conversation to be talked into anything
        if p_sc[b, PSC_RISKY_TS] == ts:
            p_sc[b, PSC_RISKY_TS] = NO_TIME
        return
    if (params[P_MARK_MIN_CALL_ACTION] <= action or contact) and ts >= p_sc[b, PSC_RISKY_TS]:
        p_sc[b, PSC_RISKY_TS] = ts
        p_sc[b, PSC_RISKY_SCORE] = dec[i, D_SCORE]
        p_sc[b, PSC_RISKY_CALLER_WATCH] = 1 if p_sc[a, PSC_WATCH] > ts else 0


@helper
def _prefetch_ring(ring: np.ndarray, e: int, d: int) -> None:
    rk = ring.shape[2] * 2
    _prefetch(ring, (e * ring.shape[1] + d) * rk)
    _prefetch(ring, (e * ring.shape[1] + d) * rk + rk - 1)


@helper
def _prefetch_entity(cnt: np.ndarray, amt: np.ndarray, tag: np.ndarray, head: np.ndarray,
                     ring: np.ndarray, sc: np.ndarray, e: int, d: int,
                     sl: tuple[int, int, int, int]) -> None:
    """Every cache line of entity ``e`` an event will touch (``d``: its ring direction)."""
    ncc = cnt.shape[2]
    nsc = amt.shape[2]
    _prefetch(sc, e * sc.shape[1])
    _prefetch(sc, e * sc.shape[1] + sc.shape[1] - 1)
    _prefetch(head, e * NW)
    _prefetch(tag, e * NBUCKET)
    _prefetch(tag, e * NBUCKET + NBUCKET - 1)
    _prefetch(cnt, (e * NSLOT + TOT_OFF) * ncc)
    _prefetch(cnt, (e * NSLOT + NSLOT) * ncc - 1)
    _prefetch(amt, (e * NSLOT + TOT_OFF) * nsc)
    _prefetch(amt, (e * NSLOT + NSLOT) * nsc - 1)
    for w in range(NW):
        _prefetch(cnt, (e * NSLOT + sl[w]) * ncc)
        _prefetch(amt, (e * NSLOT + sl[w]) * nsc)
    _prefetch_ring(ring, e, d)


@helper
def _prefetch_event(
    ev: np.ndarray, j: int,
    a_cnt: np.ndarray, a_amt: np.ndarray, a_tag: np.ndarray, a_head: np.ndarray,
    a_ring: np.ndarray, a_sc: np.ndarray, a_fl: np.ndarray,
    p_cnt: np.ndarray, p_amt: np.ndarray, p_tag: np.ndarray, p_head: np.ndarray,
    p_ring: np.ndarray, p_sc: np.ndarray, d_sc: np.ndarray, pt: np.ndarray, params: np.ndarray,
    rings: int,
) -> None:
    """Ask for the state rows event ``j`` will touch (ids were checked by ``_first_bad_id``).

    ``rings``: bit 0 asks for the payer's incoming ring too, bit 1 the payee's outgoing one
    (read only when the policy reads those distinct counts).
    """
    kind = ev[j, EV_KIND]
    a = ev[j, EV_A]
    b = ev[j, EV_B]
    sl = _slots(_epochs(ev[j, EV_TS], params[P_TZ_MS]))
    mask = pt.shape[0] - 1
    if kind == KIND_TXN:
        _prefetch_entity(a_cnt, a_amt, a_tag, a_head, a_ring, a_sc, a, R_OUT, sl)
        _prefetch_entity(a_cnt, a_amt, a_tag, a_head, a_ring, a_sc, b, R_IN, sl)
        _prefetch(pt, 2 * (_pair_hash(_pair_key(PAIR_TXN, a, b)) & mask))
        _prefetch(pt, 2 * (_pair_hash(_pair_key(PAIR_TXN, b, a)) & mask))
        _prefetch(pt, 2 * (_pair_hash(_pair_key(PAIR_STOP, a, b)) & mask))
        _prefetch(pt, 2 * (_pair_hash(_pair_key(PAIR_WARN, a, b)) & mask))
        _prefetch(a_fl, a * a_fl.shape[1])
        if rings & 1:
            _prefetch_ring(a_ring, a, R_IN)
        if rings & 2:
            _prefetch_ring(a_ring, b, R_OUT)
        ph = ev[j, EV_C]
        if ph >= 0:
            _prefetch(p_sc, ph * p_sc.shape[1])
        dv = ev[j, EV_D]
        if dv >= 0:
            _prefetch(d_sc, dv * d_sc.shape[1])
        pe = ev[j, EV_E]
        if pe >= 0:
            _prefetch(p_sc, pe * p_sc.shape[1])
    else:
        _prefetch_entity(p_cnt, p_amt, p_tag, p_head, p_ring, p_sc, a, 0, sl)
        _prefetch_entity(p_cnt, p_amt, p_tag, p_head, p_ring, p_sc, b, 0, sl)
        _prefetch(pt, 2 * (_pair_hash(_pair_key(PAIR_CALL, a, b)) & mask))


@kernel
def _process(
    ev: np.ndarray,
    a_cnt: np.ndarray, a_amt: np.ndarray, a_tag: np.ndarray, a_head: np.ndarray,
    a_ring: np.ndarray, a_sc: np.ndarray, a_fl: np.ndarray,
    p_cnt: np.ndarray, p_amt: np.ndarray, p_tag: np.ndarray, p_head: np.ndarray,
    p_ring: np.ndarray, p_sc: np.ndarray, d_sc: np.ndarray,
    pt: np.ndarray, meta: np.ndarray, params: np.ndarray,
    tr_i: np.ndarray, tr_f: np.ndarray, cr_i: np.ndarray, cr_f: np.ndarray, need: np.ndarray,
    extra: np.ndarray, out_feat: np.ndarray, out_dec: np.ndarray,
) -> None:
    """Update features for each event in order, then decide it with the matching rule set.

    ``extra`` holds, per event, N_EXTRA features computed elsewhere (graph detectors), or has no
    rows (they stay 0). ``out_feat`` has one row per event to keep the features, or a single
    scratch row. ``need`` (uint8 per transaction feature) says which window reads to make: 0
    leaves a feature at 0 (a policy reads few of them; the state is updated in full anyway).
    A call decided at or above the mark threshold marks the callee's phone as having had a risky
    call, which later transactions by the owner of that phone see.
    """
    keep = out_feat.shape[0] == ev.shape[0]
    has_extra = extra.shape[0] == ev.shape[0]
    n = ev.shape[0]
    rings = 0  # rings the events read besides the ones they write (see _prefetch_event)
    for x in range(3):  # distinct counts: F_DIST_BASE + (party * 2 + direction) * 3 + window
        if need[F_DIST_BASE + (0 * 2 + R_IN) * 3 + x]:  # payer, incoming
            rings |= 1
        if need[F_DIST_BASE + (1 * 2 + R_OUT) * 3 + x]:  # payee, outgoing
            rings |= 2
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            _prefetch_event(ev, i + PREFETCH_AHEAD, a_cnt, a_amt, a_tag, a_head, a_ring, a_sc,
                            a_fl, p_cnt, p_amt, p_tag, p_head, p_ring, p_sc, d_sc, pt, params,
                            rings)
        row = i if keep else 0
        kind = ev[i, EV_KIND]
        if meta[META_FIRST_TS] == NO_TIME or ev[i, EV_TS] < meta[META_FIRST_TS]:
            meta[META_FIRST_TS] = ev[i, EV_TS]
        if kind == KIND_TXN:
            _txn(ev, i, a_cnt, a_amt, a_tag, a_head, a_ring, a_sc, a_fl, p_sc, d_sc, pt, meta,
                 params, need, out_feat, row)
            if has_extra:
                for x in range(N_EXTRA):
                    out_feat[row, F_EXTRA_BASE + x] = extra[i, x]
            _eval_rules(tr_i, tr_f, out_feat, row, out_dec, i)
            _remember_txn(ev, i, a_amt, a_tag, a_head, a_sc, a_ring, pt, meta, params, out_dec,
                          out_feat[row, F_FIRST_TIME_PAYEE] > 0)
        elif kind == KIND_CALL:
            _call(ev, i, p_cnt, p_amt, p_tag, p_head, p_ring, p_sc, pt, meta, params,
                  out_feat, row)
            _eval_rules(cr_i, cr_f, out_feat, row, out_dec, i)
            _remember_call(ev, i, p_sc, params, out_dec)


@kernel
def _first_bad_id(ev: np.ndarray, n_acc: int, n_phone: int, n_dev: int) -> int:
    """Row of the first event whose ids fall outside the state arrays, or -1.

    numba does not bounds-check, so the driver refuses such a batch before touching state.
    """
    for i in range(ev.shape[0]):
        kind = ev[i, EV_KIND]
        if kind == KIND_TXN:
            if not (0 <= ev[i, EV_A] < n_acc and 0 <= ev[i, EV_B] < n_acc):
                return i
            if ev[i, EV_C] >= n_phone or ev[i, EV_D] >= n_dev or ev[i, EV_AMOUNT] <= 0:
                return i
            if ev[i, EV_E] >= n_phone:
                return i
        elif kind == KIND_CALL:
            if not (0 <= ev[i, EV_A] < n_phone and 0 <= ev[i, EV_B] < n_phone):
                return i
            if ev[i, EV_AMOUNT] < 0:
                return i
        else:
            return i
    return -1


@kernel
def _snapshot(
    a_cnt: np.ndarray, a_amt: np.ndarray, a_tag: np.ndarray, a_head: np.ndarray,
    a_ring: np.ndarray, a_sc: np.ndarray, a_fl: np.ndarray, meta: np.ndarray, params: np.ndarray,
    e: int, ts: int, out: np.ndarray,
) -> None:
    """Read-only view of one account's features at ``ts`` (for the fast query)."""
    ep = _epochs(ts, params[P_TZ_MS])
    out[:] = 0.0
    for d in range(2):
        for w in range(NW):
            out[(d * 2) * 4 + w] = _win_sum(a_cnt, a_tag, a_head, e, AC_OUT + d, w, ep)
            out[(d * 2 + 1) * 4 + w] = _win_sum(a_amt, a_tag, a_head, e, AS_OUT + d, w, ep)
        n1, n24, n7 = _ring_distinct3(a_ring, e, d, ts)
        out[S_DIST_BASE + d * 3] = n1
        out[S_DIST_BASE + d * 3 + 1] = n24
        out[S_DIST_BASE + d * 3 + 2] = n7
    out[S_NEAR_24H] = _win_sum(a_cnt, a_tag, a_head, e, AC_NEAR, W_24H, ep)
    out[S_NEAR_7D] = _win_sum(a_cnt, a_tag, a_head, e, AC_NEAR, W_7D, ep)
    out[S_INVEST_24H] = _win_sum(a_cnt, a_tag, a_head, e, AC_INVEST_IN, W_24H, ep)
    out[S_INVEST_7D] = _win_sum(a_cnt, a_tag, a_head, e, AC_INVEST_IN, W_7D, ep)
    out[S_PAYBACK_7D] = _win_sum(a_cnt, a_tag, a_head, e, AC_PAYBACK, W_7D, ep)
    out[S_PASS_1H] = _ratio(_win_sum(a_amt, a_tag, a_head, e, AS_OUT, W_1H, ep),
                            _win_sum(a_amt, a_tag, a_head, e, AS_IN, W_1H, ep))
    out[S_PASS_24H] = _ratio(_win_sum(a_amt, a_tag, a_head, e, AS_OUT, W_24H, ep),
                             _win_sum(a_amt, a_tag, a_head, e, AS_IN, W_24H, ep))
    out[S_AGE_DAYS] = _age_days(a_sc, e, ts, meta, params, False)
    out[S_N_OUT] = a_sc[e, SC_N_OUT]
    out[S_N_IN] = a_sc[e, SC_N_IN]
    out[S_WATCH] = _watched(a_sc[e, SC_WATCH], ts)
    out[S_NEAR_IN_24H] = _win_sum(a_cnt, a_tag, a_head, e, AC_NEAR_IN, W_24H, ep)
    out[S_NEAR_IN_7D] = _win_sum(a_cnt, a_tag, a_head, e, AC_NEAR_IN, W_7D, ep)
    out[S_EWMA_MEAN_FEN] = math.exp(a_fl[e, FL_MEAN]) if a_sc[e, SC_N_OUT] > 0 else 0.0
    out[S_VICTIM] = _marked(a_sc, e, SC_VICTIM_UNTIL, ts)
    out[S_MULE] = _mule_level(a_sc, e, ts)
    out[S_COLLECTOR] = _marked(a_sc, e, SC_COLLECTOR_UNTIL, ts)
    out[S_CONFIRMED] = _watched(a_sc[e, SC_CONFIRMED_UNTIL], ts)
    out[S_CLEARED] = _watched(a_sc[e, SC_CLEARED_UNTIL], ts)


# ================================================================= forgetting entities
# An evicted entity's id is handed to a new one, so nothing may still name the old one: its
# relationships leave the pair table, and it leaves the recent-counterparty rings of the entities
# it had them with. Every ring entry comes with a relationship (``_txn`` and ``_call`` record
# both), so the relationships removed say which rings to clear: no scan of every ring. (A
# relationship dropped for age at the relationship cap leaves its ring entries, older than it,
# to age out of the windows by themselves.)
@helper
def _ring_drop(ring: np.ndarray, e: int, d: int, cp: int) -> None:
    """Empty the entry of counterparty ``cp`` in ring ``d`` of entity ``e``, if there is one."""
    for j in range(RING_K):
        if ring[e, d, j, 0] == cp:
            ring[e, d, j, 0] = -1
            ring[e, d, j, 1] = -1


@helper
def _pair_delete(pt: np.ndarray, s: int) -> None:
    """Empty slot ``s``, moving later entries of its probe run back into the hole (linear
    probing without tombstones: every lookup still finds what it found before)."""
    mask = pt.shape[0] - 1
    i = s
    j = s
    while True:
        j = (j + 1) & mask
        key = pt[j, 0]
        if key == PAIR_EMPTY:
            break
        home = _pair_hash(key) & mask
        # the entry at j stays unless the hole i lies cyclically in [home, j)
        if (i <= j and (home <= i or home > j)) or (i > j and home <= i and home > j):
            pt[i, 0] = key
            pt[i, 1] = pt[j, 1]
            i = j
    pt[i, 0] = PAIR_EMPTY
    pt[i, 1] = 0


@kernel
def _forget_pairs(pt: np.ndarray, pmeta: np.ndarray, kind: int, gone: np.ndarray,
                  ring: np.ndarray) -> int:
    """Remove the relationships of ``kind`` (a -> b) with an end marked in ``gone``, and that end
    from the other's ring: b from a's ring 0 (counterparties it paid or called), a from b's ring
    1 when the rings have one (who paid it). Returns the relationships removed."""
    removed = 0
    lim = gone.shape[0]
    s = 0
    while s < pt.shape[0]:
        key = pt[s, 0]
        if key != PAIR_EMPTY and ((key >> 62) & 3) == kind:  # (kind 2 keys are negative)
            a = (key >> 31) & 0x7FFFFFFF
            b = key & 0x7FFFFFFF
            a_gone = a < lim and gone[a] != 0
            b_gone = b < lim and gone[b] != 0
            if a_gone or b_gone:
                if b_gone and not a_gone and a < ring.shape[0]:
                    _ring_drop(ring, a, 0, b)
                if a_gone and not b_gone and b < ring.shape[0] and ring.shape[1] > 1:
                    _ring_drop(ring, b, 1, a)
                _pair_delete(pt, s)
                pmeta[0] -= 1
                removed += 1
                continue  # slot s now holds an entry moved back (or nothing): look again
        s += 1
    return removed
