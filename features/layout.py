"""Names of the features, the event encoding and the decision columns.

One name per feature, used alike in the policy file, the Decision's ``features`` map, logs and
docs. Money features are CNY fen; ``*_age_days`` and ``*_minutes`` are float durations.
"""

from __future__ import annotations

from typing import ClassVar

from features import _kernels as k

__all__ = [
    "ACCOUNT_FEATURES",
    "CALL_FEATURES",
    "GRAPH_FEATURES",
    "MONEY_FEATURES",
    "REASON_WORD",
    "TXN_FEATURES",
    "WINDOWS",
    "CallFlag",
    "CallOutcome",
    "DecisionCol",
    "EventCol",
    "Kind",
    "Mark",
    "Memory",
    "Param",
    "TxnFlag",
    "join_reasons",
    "split_reasons",
]

WINDOWS: tuple[str, ...] = k.WIN_NAMES

# Names of the features the graph detectors compute (the ``extra`` input of the kernel), in slot
# order; at most N_EXTRA. Unnamed slots are reserved. Meanings: ``graph._kernels`` and README.
GRAPH_FEATURES: tuple[str, ...] = (
    "graph_payer_fan_out",  # distinct payees of the payer in the fan window
    "graph_payer_fan_in",  # distinct payers of the payer
    "graph_payee_fan_in",  # distinct payers of the payee
    "graph_payee_fan_out",  # distinct payees of the payee
    "graph_scatter_gather",  # most intermediaries from one source of the payer to the payee
    "graph_cycle_length",  # shortest cycle this transfer closes (3.., 0: none)
    "graph_cycle_kept_ratio",  # best cycle's smallest ratio of consecutive amounts (0..1)
    "graph_chain_hops",  # transfers in the longest rapid pass-on chain ending here (0: none)
    "graph_ponzi_small_payers",  # payee paid the payer before: payer's distinct small payers
    "graph_ponzi_repaid",  # ... of whom the payer has paid back
    "graph_ponzi_unrelated_repaid",  # ... repaid ones with no transfer with another such payer
    "graph_payer_watch_hops",  # hops from the payer to the nearest watchlisted entity (0: none)
    "graph_payee_watch_hops",  # hops from the payee to the nearest watchlisted entity (0: none)
    "graph_hub_cuts",  # searches stopped at a high-degree node
    "graph_truncated",  # 1: a search ran out of its work budget
    "graph_gather_scatter",  # payer's distinct payers and payees (the smaller) in the sg window
    "graph_fee_same_amount_payers",  # distinct payers of the payee paying this amount (fee window)
    "graph_fee_payee_paid_same",  # 1: the payee paid this amount out before it first received it
    "graph_fee_upline_share",  # largest share of each earlier fee the payee passed on to one account
)


def _txn_names() -> list[str]:
    names = [""] * k.N_TXN_FEATURE
    fixed = {
        k.F_AMOUNT: "amount",
        k.F_CASH: "is_cash",
        k.F_XBORDER: "is_cross_border",
        k.F_CHANNEL: "channel",
        k.F_MEMO_INVEST: "memo_investment",
        k.F_MEMO_FRAUD: "memo_fraud_words",
        k.F_FIRST_TIME_PAYEE: "first_time_payee",
        k.F_REVERSE_EDGE: "payee_paid_payer_before",
        k.F_PAYER_IS_PERSON: "payer_is_person",
        k.F_PAYEE_IS_PERSON: "payee_is_person",
        k.F_PAYER_WATCH: "payer_watchlisted",
        k.F_PAYEE_WATCH: "payee_watchlisted",
        k.F_DEVICE_WATCH: "device_watchlisted",
        k.F_PHONE_WATCH: "payer_phone_watchlisted",
        k.F_RISKY_CALL_RECENT: "risky_call_recent",
        k.F_RISKY_CALL_MIN: "risky_call_minutes_ago",
        k.F_RISKY_CALL_CALLER_WATCH: "risky_call_caller_watchlisted",
        k.F_RISKY_CALL_SCORE: "risky_call_score",
        k.F_PAYER_AGE_DAYS: "payer_account_age_days",
        k.F_PAYEE_AGE_DAYS: "payee_account_age_days",
        k.F_PAYER_Z: "payer_amount_zscore",
        k.F_PAYER_RATIO: "payer_amount_ratio",
        k.F_PAYER_HIST: "payer_history_count",
        k.F_PAYEE_HIST: "payee_history_count",
        k.F_PAYER_PASS_1H: "payer_pass_through_1h",
        k.F_PAYER_PASS_24H: "payer_pass_through_24h",
        k.F_PAYER_NEAR_24H: "payer_near_threshold_count_24h",
        k.F_PAYER_NEAR_7D: "payer_near_threshold_count_7d",
        k.F_PAYEE_INVEST_24H: "payee_investment_in_count_24h",
        k.F_PAYEE_INVEST_7D: "payee_investment_in_count_7d",
        k.F_PAYER_INVEST_7D: "payer_investment_in_count_7d",
        k.F_PAYER_PAYBACK_7D: "payer_payback_distinct_7d",
        k.F_PAYER_DAY_CASH: "payer_day_cash_out_sum",
        k.F_PAYER_DAY_XFER: "payer_day_transfer_out_sum",
        k.F_PAYER_DAY_XB: "payer_day_cross_border_out_sum",
        k.F_PAYEE_DAY_CASH: "payee_day_cash_in_sum",
        k.F_PAYEE_DAY_XFER: "payee_day_transfer_in_sum",
        k.F_PAYEE_DAY_XB: "payee_day_cross_border_in_sum",
        k.F_PAYER_TERMINAL: "payer_is_terminal",
        k.F_PAYEE_TERMINAL: "payee_is_terminal",
        k.F_PAYEE_NEAR_24H: "payee_near_threshold_count_24h",
        k.F_PAYEE_NEAR_7D: "payee_near_threshold_count_7d",
        k.F_PAYER_DAY_DOMESTIC: "payer_day_domestic_transfer_out_sum",
        k.F_PAYEE_DAY_DOMESTIC: "payee_day_domestic_transfer_in_sum",
        # decision memory: what earlier decisions (and feedback) concluded
        k.F_PAYER_VICTIM: "payer_protected_victim",
        k.F_PAYEE_STOPPED: "payee_stopped_for_payer",
        k.F_PAYEE_WARNED: "payee_warned_for_payer",
        k.F_PAYER_MULE: "payer_suspected_mule",
        k.F_PAYEE_MULE: "payee_suspected_mule",
        k.F_PAYER_COLLECTOR: "payer_suspected_collector",
        k.F_PAYEE_COLLECTOR: "payee_suspected_collector",
        k.F_PAYER_CONFIRMED: "payer_confirmed_fraud",
        k.F_PAYEE_CONFIRMED: "payee_confirmed_fraud",
        k.F_PAYER_CLEARED: "payer_cleared",
        k.F_PAYEE_CLEARED: "payee_cleared",
        # the account's life: dormancy, what the registry says
        k.F_PAYER_DORMANT_DAYS: "payer_dormant_days",
        k.F_PAYEE_DORMANT_DAYS: "payee_dormant_days",
        k.F_PAYER_WOKE_DAYS: "payer_days_since_wake",
        k.F_PAYEE_WOKE_DAYS: "payee_days_since_wake",
        k.F_PAYER_MERCHANT: "payer_is_merchant",
        k.F_PAYEE_MERCHANT: "payee_is_merchant",
        k.F_PAYER_PAYROLL: "payer_is_payroll",
        k.F_PAYER_TRIAL_DAYS: "payer_days_since_test_transfer",
        k.F_PAYEE_TRIAL_DAYS: "payee_days_since_test_transfer",
        k.F_PAYER_IN_PERSONS_1H: "payer_in_distinct_persons_1h",
        k.F_PAYER_IN_PERSONS_24H: "payer_in_distinct_persons_24h",
        k.F_PAYER_INTERVENED_MIN: "payer_minutes_since_intervention",
        k.F_PAYEE_PHONE_KNOWN: "payee_phone_known",
        k.F_PAYER_IN_STRANGERS_1H: "payer_in_strangers_1h",
        k.F_PAYER_IN_STRANGERS_24H: "payer_in_strangers_24h",
        k.F_PAYER_LAST_CALL_FIRST: "payer_last_call_first_contact",
        k.F_PAYEE_IS_LAST_CALLER: "payee_phone_is_last_caller",
        k.F_PAYER_TALKS_WITH_PAYEE: "payer_talks_with_payee",
        k.F_PAYER_WARNED_IN_MIN: "payer_minutes_since_warned_inflow",
        k.F_PAYEE_PHONE_IS_PAYER_PHONE: "payee_phone_is_payer_phone",
        k.F_PAYER_IN_COVER_7D: "payer_in_cover_7d",
        # calls around the payment
        k.F_PAYER_ON_CALL: "payer_on_call",
        k.F_PAYER_ON_CALL_UNKNOWN: "payer_on_call_unknown_caller",
        k.F_PAYER_ON_CALL_RISKY: "payer_on_call_risky",
        k.F_PAYEE_PHONE_RISKY: "payee_phone_risky",
        k.F_PAYEE_PHONE_CONTACT: "payee_phone_known_contact",
        k.F_PAYER_LAST_CALLER_RISKY: "payer_last_caller_risky",
        k.F_PAYER_LAST_CALL_MIN: "payer_last_call_ended_minutes",
        k.F_PAYER_LAST_CALL_TALK_S: "payer_last_call_talk_seconds",
        k.F_PAYER_LAST_CALL_RISKY: "payer_last_call_risky",
        k.F_NEAR_LINE: "near_reporting_line",
        k.F_OBSERVED_DAYS: "observed_days",
    }
    for i, n in fixed.items():
        names[i] = n
    for p, party in enumerate(("payer", "payee")):
        for d, direction in enumerate(("out", "in")):
            for w, win in enumerate(k.WIN_NAMES):
                base = k.F_WIN_BASE + (p * 2 + d) * 8
                names[base + w] = f"{party}_{direction}_count_{win}"
                names[base + 4 + w] = f"{party}_{direction}_sum_{win}"
            for w in range(1, k.NW):
                idx = k.F_DIST_BASE + (p * 2 + d) * 3 + w - 1
                names[idx] = f"{party}_{direction}_distinct_{k.WIN_NAMES[w]}"
    for x, name in enumerate(GRAPH_FEATURES):
        names[k.F_EXTRA_BASE + x] = name
    for i, n in enumerate(names):
        if not n:
            names[i] = f"reserved_{i}"
    return names


def _call_names() -> list[str]:
    fixed = {
        k.CF_DURATION: "duration_seconds",
        k.CF_CLASS: "caller_class",
        k.CF_INTL: "caller_international",
        k.CF_VIRTUAL: "caller_virtual_operator",
        k.CF_SPOOFED: "caller_spoofed_suspect",
        k.CF_CALLER_WATCH: "caller_watchlisted",
        k.CF_CALLEE_WATCH: "callee_watchlisted",
        k.CF_FIRST_CONTACT: "first_contact",
        k.CF_CALLER_AGE_DAYS: "caller_age_days",
        k.CF_CALLS_1M: "caller_calls_1m",
        k.CF_CALLS_1H: "caller_calls_1h",
        k.CF_CALLS_24H: "caller_calls_24h",
        k.CF_SHORT_1H: "caller_short_calls_1h",
        k.CF_SHORT_24H: "caller_short_calls_24h",
        k.CF_SHORT_RATIO_1H: "caller_short_call_ratio_1h",
        k.CF_SHORT_RATIO_24H: "caller_short_call_ratio_24h",
        k.CF_DIST_1H: "caller_distinct_callees_1h",
        k.CF_DIST_24H: "caller_distinct_callees_24h",
        k.CF_TALK_24H: "caller_talk_seconds_24h",
        k.CF_CALLEE_CALLS_IN_24H: "callee_calls_in_24h",
        k.CF_RINGING: "ringing",
        k.CF_OUTCOME: "call_outcome",
        k.CF_ANSWERED_1H: "caller_answered_calls_1h",
        k.CF_UNANSWERED_RATIO_1H: "caller_unanswered_ratio_1h",
        k.CF_UNANSWERED_RATIO_24H: "caller_unanswered_ratio_24h",
        k.CF_CALLER_RISKY_NUMBER: "caller_risky_number",
        k.CF_OBSERVED_DAYS: "observed_days",
        k.CF_UNANSWERED_RATIO_7D: "caller_unanswered_ratio_7d",
        k.CF_MEAN_TALK_7D: "caller_mean_talk_seconds_7d",
    }
    return [fixed[i] for i in range(k.N_CALL_FEATURE)]


def _snapshot_names() -> list[str]:
    names = [""] * k.N_SNAPSHOT
    for d, direction in enumerate(("out", "in")):
        for w, win in enumerate(k.WIN_NAMES):
            names[(d * 2) * 4 + w] = f"{direction}_count_{win}"
            names[(d * 2 + 1) * 4 + w] = f"{direction}_sum_{win}"
        for w in range(1, k.NW):
            names[k.S_DIST_BASE + d * 3 + w - 1] = f"{direction}_distinct_{k.WIN_NAMES[w]}"
    names[k.S_NEAR_24H] = "near_threshold_out_count_24h"
    names[k.S_NEAR_7D] = "near_threshold_out_count_7d"
    names[k.S_INVEST_24H] = "investment_in_count_24h"
    names[k.S_INVEST_7D] = "investment_in_count_7d"
    names[k.S_PAYBACK_7D] = "payback_distinct_7d"
    names[k.S_PASS_1H] = "pass_through_1h"
    names[k.S_PASS_24H] = "pass_through_24h"
    names[k.S_AGE_DAYS] = "account_age_days"
    names[k.S_N_OUT] = "history_out_count"
    names[k.S_N_IN] = "history_in_count"
    names[k.S_WATCH] = "watchlisted"
    names[k.S_EWMA_MEAN_FEN] = "typical_out_amount"
    names[k.S_NEAR_IN_24H] = "near_threshold_in_count_24h"
    names[k.S_NEAR_IN_7D] = "near_threshold_in_count_7d"
    names[k.S_VICTIM] = "protected_victim"
    names[k.S_MULE] = "suspected_mule"
    names[k.S_COLLECTOR] = "suspected_collector"
    names[k.S_CONFIRMED] = "confirmed_fraud"
    names[k.S_CLEARED] = "cleared"
    return names


TXN_FEATURES: tuple[str, ...] = tuple(_txn_names())
CALL_FEATURES: tuple[str, ...] = tuple(_call_names())
ACCOUNT_FEATURES: tuple[str, ...] = tuple(_snapshot_names())
MONEY_FEATURES: frozenset[str] = frozenset(
    n for n in TXN_FEATURES if n == "amount" or "_sum_" in n or n.endswith("_sum")
)


class Kind:
    TXN = k.KIND_TXN
    CALL = k.KIND_CALL


class EventCol:
    """Columns of the int64 event matrix the kernels consume."""

    # C: the payer's phone, D: the device, E: the payee's phone (-1: unknown); AUX1/AUX2: the
    # payer's / payee's opening time (a call: AUX1 the caller's number class); AUX3: the channel
    # (a call: its outcome)
    KIND, TS, A, B, C, D, AMOUNT, FLAGS, AUX1, AUX2, AUX3, E = range(k.N_EV)
    N = k.N_EV


class TxnFlag:
    CASH = k.TF_CASH
    CROSS_BORDER = k.TF_XBORDER
    MEMO_INVESTMENT = k.TF_MEMO_INVEST
    PAYER_PERSON = k.TF_PAYER_PERSON
    PAYEE_PERSON = k.TF_PAYEE_PERSON
    PAYER_TERMINAL = k.TF_PAYER_TERMINAL
    PAYEE_TERMINAL = k.TF_PAYEE_TERMINAL
    NEAR_LINE = k.TF_NEAR_LINE
    MEMO_FRAUD = k.TF_MEMO_FRAUD
    # the transaction names another institution for the party than its registry entry's owner
    PAYER_FOREIGN = k.TF_PAYER_FOREIGN
    PAYEE_FOREIGN = k.TF_PAYEE_FOREIGN


class CallFlag:
    NEW = k.CF_NEW
    ENDED = k.CF_ENDED


class CallOutcome:
    """``EventCol.AUX3`` of a call (the proto enum CallOutcome's numbers; LEGACY: not given)."""

    LEGACY = k.OUT_LEGACY
    RINGING = k.OUT_RINGING
    ANSWERED = k.OUT_ANSWERED
    UNANSWERED = k.OUT_UNANSWERED
    REJECTED = k.OUT_REJECTED
    BLOCKED = k.OUT_BLOCKED
    NAMES = ("", "ringing", "answered", "unanswered", "rejected", "blocked")


class Mark:
    """What a rule concludes about the parties (its ``marks``), bits of ``DecisionCol.MARKS``."""

    PAYER_VICTIM = k.MK_PAYER_VICTIM
    PAYEE_MULE = k.MK_PAYEE_MULE
    PAYER_MULE = k.MK_PAYER_MULE
    PAYER_COLLECTOR = k.MK_PAYER_COLLECTOR
    PAYEE_COLLECTOR = k.MK_PAYEE_COLLECTOR
    RISKY_NUMBER = k.MK_RISKY_NUMBER
    PAYEE_MULE_HOP = k.MK_PAYEE_MULE_HOP
    RISKY_CONTACT = k.MK_RISKY_CONTACT
    # names a policy's ``marks`` list uses (PAYEE_MULE_HOP is the service's own, never a rule's)
    TXN_NAMES: ClassVar[dict[str, int]] = {"payer_victim": k.MK_PAYER_VICTIM, "payee_mule": k.MK_PAYEE_MULE,
                 "payer_mule": k.MK_PAYER_MULE, "payer_collector": k.MK_PAYER_COLLECTOR,
                 "payee_collector": k.MK_PAYEE_COLLECTOR}
    CALL_NAMES: ClassVar[dict[str, int]] = {"risky_number": k.MK_RISKY_NUMBER,
                                            "risky_contact": k.MK_RISKY_CONTACT}


class Memory:
    """Account columns of decision memory and registry (for the engine's feedback and registry)."""

    VICTIM_UNTIL = k.SC_VICTIM_UNTIL
    MULE_UNTIL = k.SC_MULE_UNTIL
    MULE_LEVEL = k.SC_MULE_LEVEL
    COLLECTOR_UNTIL = k.SC_COLLECTOR_UNTIL
    CONFIRMED_UNTIL = k.SC_CONFIRMED_UNTIL
    CLEARED_UNTIL = k.SC_CLEARED_UNTIL
    WAKE = k.SC_WAKE
    PROFILE_KNOWN = k.PROF_KNOWN
    PROFILE_MERCHANT = k.PROF_MERCHANT
    PROFILE_PAYROLL = k.PROF_PAYROLL
    PROFILE_ORGANISATION = k.PROF_ORGANISATION


class Param:
    TZ_MS = k.P_TZ_MS
    SHORT_CALL_S = k.P_SHORT_CALL_S
    RISKY_LOOKBACK_MS = k.P_RISKY_LOOKBACK_MS
    MARK_MIN_CALL_ACTION = k.P_MARK_MIN_CALL_ACTION
    EWMA_ALPHA_PPM = k.P_EWMA_ALPHA_PPM
    PROTECT_MS = k.P_PROTECT_MS
    MULE_MS = k.P_MULE_MS
    COLLECTOR_MS = k.P_COLLECTOR_MS
    RISKY_NUMBER_MS = k.P_RISKY_NUMBER_MS
    LEARN_MS = k.P_LEARN_MS
    DORMANT_MS = k.P_DORMANT_MS
    MULE_MAX_LEVEL = k.P_MULE_MAX_LEVEL
    HUB_PAYERS = k.P_HUB_PAYERS
    FOLLOW_MS = k.P_FOLLOW_MS
    PROTECT_STOP_MS = k.P_PROTECT_STOP_MS
    TEST_TRANSFER_MAX = k.P_TEST_TRANSFER_MAX
    N = k.N_PARAM


# reason bits per int64 word of a decision row (DecisionCol.REASONS, then REASONS_HIGH)
REASON_WORD = k.REASON_WORD
_LOW_WORD = (1 << REASON_WORD) - 1


def join_reasons(low: int, high: int) -> int:
    """One mask (bit i: rule i) from a decision's two reason words."""
    return low | high << REASON_WORD


def split_reasons(mask: int) -> tuple[int, int]:
    """The two reason words (rules 0..62, rules 63..) of a mask: what int64 columns hold."""
    return mask & _LOW_WORD, mask >> REASON_WORD


class DecisionCol:
    ACTION = k.D_ACTION
    REASONS = k.D_REASONS
    REASONS_HIGH = k.D_REASONS_HIGH  # rules 63 and up (k.REASON_WORD)
    SCORE = k.D_SCORE
    FLAGS = k.D_FLAGS
    MARKS = k.D_MARKS
    N = k.N_DEC
