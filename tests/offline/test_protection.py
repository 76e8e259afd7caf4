"""Victim-protection metrics: their definitions on hand-made decisions, and their shape on a
small replayed stream (never detection values: those belong to bench/results)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import polars as pl
import pytest

from bench import protection as bench_protection
from screening.config import Settings, load_settings
from screening.offline.protection import ProtectionMetrics, format_protection, protection_metrics
from screening.offline.replay import replay
from screening.offline.reports import load_thresholds
from screening.offline.schema import ACCOUNT_LABEL_SCHEMA, EVENT_SCHEMA, LABEL_COLUMNS, LOOKALIKES
from screening.offline.synth import SynthConfig, generate
from screening.policy import load_policy

T0 = dt.datetime(2025, 3, 3, 2, 0, tzinfo=dt.UTC)  # 10:00 local
MIN = dt.timedelta(minutes=1)
CNY = 100
LINES = {  # the regulation's lines in fen (foreign ones at 7.1 CNY per USD)
    ("cash", "CNY"): 50_000 * CNY, ("cash", "foreign"): 7_100_000,
    ("person_domestic_transfer", "CNY"): 500_000 * CNY,
    ("person_domestic_transfer", "foreign"): 71_000_000,
    ("person_cross_border_transfer", "CNY"): 200_000 * CNY,
    ("person_cross_border_transfer", "foreign"): 7_100_000,
    ("organisation_transfer", "CNY"): 2_000_000 * CNY,
    ("organisation_transfer", "foreign"): 142_000_000,
}  # fmt: skip


class Stream:
    """Hand-made events, labels and decisions, one call per event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self.labels: list[tuple[str, str, int, str]] = []

    def txn(
        self, minute: float, payer: str, payee: str, yuan: int, action: str = "ALLOW", *, scenario: str = "",
        sid: int = -1, suspicious: bool = False, large: bool = False, cash: bool = False,
        phone: str | None = None, payee_type: str = "person", payer_type: str = "person",
    ) -> None:  # fmt: skip
        eid = f"t{len(self.events):05d}"
        row = dict.fromkeys(EVENT_SCHEMA) | {
            "event_id": eid, "kind": "txn", "event_time": T0 + minute * MIN, "payer_account": payer,
            "payee_account": payee, "payer_party_type": payer_type, "payee_party_type": payee_type,
            "amount_minor": yuan * CNY, "currency": "CNY", "channel": "counter" if cash else "mobile_app",
            "cash": cash, "cross_border": False, "payer_phone": phone, "scenario": scenario,
            "scenario_id": sid,
        }  # fmt: skip
        self.events.append(row)
        self.decisions.append({"event_id": eid, "action": action, "suspicious": suspicious,
                               "large_value": large, "amount_fen": yuan * CNY})  # fmt: skip

    def call(self, minute: float, caller: str, callee: str, action: str = "ALLOW", *, scenario: str = "",
             sid: int = -1) -> None:  # fmt: skip
        eid = f"c{len(self.events):05d}"
        row = dict.fromkeys(EVENT_SCHEMA) | {
            "event_id": eid, "kind": "call", "event_time": T0 + minute * MIN, "caller_number": caller,
            "callee_number": callee, "duration_seconds": 60, "call_outcome": "answered",
            "caller_class": "virtual_operator", "scenario": scenario, "scenario_id": sid,
        }  # fmt: skip
        self.events.append(row)
        self.decisions.append({"event_id": eid, "action": action, "suspicious": False, "large_value": False,
                               "amount_fen": 0})  # fmt: skip

    def label(self, account: str, scenario: str, sid: int, role: str) -> None:
        self.labels.append((account, scenario, sid, role))

    def metrics(self, **kwargs: Any) -> ProtectionMetrics:
        events = pl.DataFrame(self.events, schema=EVENT_SCHEMA | LABEL_COLUMNS)
        accounts = pl.DataFrame(self.labels, schema=ACCOUNT_LABEL_SCHEMA, orient="row")
        decisions = pl.DataFrame(self.decisions).with_columns(pl.lit(False).alias("duplicate"))
        return protection_metrics(events, accounts, decisions, settings=Settings(), **kwargs)


def _scenario(m: ProtectionMetrics, name: str) -> dict[str, Any]:
    rows = m.per_scenario.filter(pl.col("scenario") == name).to_dicts()
    assert len(rows) == 1
    return rows[0]


def test_a_repeat_payment_after_a_stop_counts_once() -> None:
    """Allowed, stopped, then allowed again: the third is a repeat after an intervention; the
    victim was not intervened before the first; money stopped and held are shares of the total."""
    s = Stream()
    s.label("V", "telecom_fraud_repeat", 1, "victim")
    s.txn(0, "V", "M1", 1_000, "ALLOW", scenario="telecom_fraud_repeat", sid=1)
    s.txn(10, "V", "M1", 2_000, "STOP_PAYMENT", scenario="telecom_fraud_repeat", sid=1)
    s.txn(20, "V", "M1", 3_000, "ALLOW", scenario="telecom_fraud_repeat", sid=1)
    s.txn(30, "V", "M2", 4_000, "HOLD", scenario="telecom_fraud_repeat", sid=1)
    s.txn(40, "V", "SHOP", 50)  # ordinary life, not a fraud transfer
    row = _scenario(s.metrics(), "telecom_fraud_repeat")
    assert row["victims"] == 1 and row["intervened_first"] == 0
    assert row["repeats_after_intervention"] == 1 and row["repeat_fen"] == 3_000 * CNY
    assert row["victim_money_fen"] == 10_000 * CNY
    assert row["stopped_share"] == pytest.approx(0.2) and row["held_share"] == pytest.approx(0.4)


def test_a_warned_call_before_the_first_transfer_is_an_intervention() -> None:
    """A call of the case to the victim's phone decided WARN_CALLEE before the first transfer
    counts; one after it, or from another case, does not; a WARN on the first transfer counts."""
    s = Stream()
    for sid, victim in ((1, "V1"), (2, "V2"), (3, "V3"), (4, "V4")):
        s.label(victim, "telecom_fraud", sid, "victim")
    s.call(0, "+8617000000001", "+8613800000001", "WARN_CALLEE", scenario="telecom_fraud", sid=1)
    s.txn(5, "V1", "M", 10_000, scenario="telecom_fraud", sid=1, phone="+8613800000001")
    s.txn(5, "V2", "M", 10_000, scenario="telecom_fraud", sid=2, phone="+8613800000002")
    s.call(6, "+8617000000001", "+8613800000002", "BLOCK", scenario="telecom_fraud", sid=2)  # too late
    s.call(0, "+8617000000009", "+8613800000003", "BLOCK", scenario="telecom_fraud", sid=9)  # another case
    s.txn(5, "V3", "M", 10_000, scenario="telecom_fraud", sid=3, phone="+8613800000003")
    s.txn(5, "V4", "M", 10_000, "WARN", scenario="telecom_fraud", sid=4, phone="+8613800000004")
    row = _scenario(s.metrics(), "telecom_fraud")
    assert (row["victims"], row["intervened_first"]) == (4, 2)


def test_registry_phone_links_a_warned_call_to_a_victim() -> None:
    """A victim whose transfer carries no payer phone is found by the phone on file."""
    s = Stream()
    s.label("V", "robocall", 1, "victim")
    s.call(0, "+8617000000001", "+8613800000001", "WARN_CALLEE", scenario="robocall", sid=1)
    s.txn(5, "V", "M", 10_000, scenario="robocall", sid=1)
    assert _scenario(s.metrics(), "robocall")["intervened_first"] == 0
    registry = pl.DataFrame({"account": ["V"], "phone": ["+8613800000001"]})
    assert _scenario(s.metrics(registry=registry), "robocall")["intervened_first"] == 1


def test_mule_stopped_with_the_share_still_there() -> None:
    """A mule received 100 and 50 (a held 80 never arrived), passed 30 on, then its next
    payment was stopped: 120 of 150 still stoppable. Another mule never stopped."""
    s = Stream()
    s.label("M", "mule_split_forwarding", 1, "mule")
    s.label("M2", "mule_split_forwarding", 1, "mule_level2")
    s.label("V", "mule_split_forwarding", 1, "victim")
    s.txn(0, "V", "M", 100, scenario="mule_split_forwarding", sid=1)
    s.txn(1, "V", "M", 50, "WARN", scenario="mule_split_forwarding", sid=1)
    s.txn(2, "V", "M", 80, "HOLD", scenario="mule_split_forwarding", sid=1)
    s.txn(3, "M", "M2", 30, scenario="mule_split_forwarding", sid=1)
    s.txn(4, "M", "M2", 60, "STOP_PAYMENT", scenario="mule_split_forwarding", sid=1)
    s.txn(5, "M", "M2", 60, "ALLOW", scenario="mule_split_forwarding", sid=1)  # after: not counted
    s.txn(6, "M2", "ATM1", 20, payee_type="cash_terminal", scenario="mule_split_forwarding", sid=1)
    row = _scenario(s.metrics(), "mule_split_forwarding")
    assert (row["mules"], row["mules_stopped"], row["level1_mules"], row["level1_stopped"]) == (2, 1, 1, 1)
    assert row["stoppable_median"] == pytest.approx(120 / 150)
    assert row["stoppable_mean"] == pytest.approx(120 / 150)


def test_organisers_flagged_and_structurers_reported() -> None:
    """A HOLD or a report on any transaction of a collector flags it; a structurer counts as
    reported only with a suspicious flag, a HOLD alone is not a report."""
    s = Stream()
    s.label("C", "ponzi_exit", 1, "collector")
    s.label("K", "ponzi_exit", 1, "controller")
    s.label("S", "structuring_thresholds", 2, "structurer")
    s.label("S2", "structuring_thresholds", 3, "structurer")
    s.txn(0, "I", "C", 10_000, "HOLD", scenario="ponzi_exit", sid=1, payee_type="organisation")
    s.txn(1, "C", "K", 5_000, scenario="ponzi_exit", sid=1, payer_type="organisation")
    s.txn(2, "S", "X", 49_000, "ALLOW", suspicious=True, scenario="structuring_thresholds", sid=2)
    s.txn(3, "S2", "X", 49_000, "HOLD", scenario="structuring_thresholds", sid=3)
    flags = {(r["scenario"], r["role"]): r for r in s.metrics().flagged.to_dicts()}
    assert flags[("ponzi_exit", "collector")]["flagged"] == 1
    assert flags[("ponzi_exit", "controller")]["flagged"] == 0
    assert flags[("structuring_thresholds", "structurer")]["reported"] == 1
    assert flags[("structuring_thresholds", "structurer")]["accounts"] == 2


def test_large_value_recall_counts_every_transaction_of_a_reportable_day() -> None:
    """Two 30,000 cash deposits on one local day are both reportable (60,000 >= 50,000); the
    live flag on the crossing one alone is half the recall; a ledger listing both is all of it;
    a deposit after local midnight starts a new day."""
    s = Stream()
    s.txn(0, "CTR1", "A", 30_000, cash=True, payer_type="cash_terminal")
    s.txn(60, "CTR1", "A", 30_000, cash=True, large=True, payer_type="cash_terminal")
    s.txn(14 * 60, "CTR1", "A", 30_000, cash=True, payer_type="cash_terminal")  # 00:00 local next day
    s.txn(0, "B", "C", 100_000)
    ledger = pl.DataFrame({"event_id": ["t00000", "t00001"]})
    lv = s.metrics(lines_fen=LINES, ledgers={"daily": ledger}).large_value
    assert lv["reportable_transactions"] == 2
    assert lv["live_flag_recall"] == pytest.approx(0.5)
    assert lv["daily_recall"] == pytest.approx(1.0)
    assert lv["live_flag_not_reportable"] == 0


def test_an_alert_for_paying_a_criminal_is_counted_apart_from_false_alarms() -> None:
    """A customer whose payment into a mule is held, and one paid by a cash-out account, are
    alerted, but not falsely: only the customer held paying another customer is a false alarm;
    one alerted both ways counts as a false alarm."""
    s = Stream()
    s.label("M", "mule_ring", 1, "ring_member")
    s.label("X", "telecom_fraud", 2, "cashout")
    s.txn(0, "P1", "M", 100, "HOLD")
    s.txn(1, "X", "P2", 100, "STOP_PAYMENT")
    s.txn(2, "P3", "P4", 100, "HOLD")
    s.txn(3, "P5", "M", 100, "HOLD")
    s.txn(4, "P5", "P6", 100, "WARN")
    m = s.metrics()
    assert m.alerts["ordinary_accounts"] == 6
    assert m.alerts["ordinary_alerted_share"] == pytest.approx(5 / 6)  # P1, P2, P3, P4, P5
    assert m.alerts["ordinary_alerted_no_criminal_share"] == pytest.approx(3 / 6)  # P3, P4, P5
    assert "no criminal's account in the payment" in format_protection({"run": m.as_dict()})


def test_a_look_alike_alerted_only_for_a_criminal_paying_it_is_counted_apart() -> None:
    """A donation collector whom a ring member pays (stopped as the ring member's) is alerted,
    not falsely; one held for its own payment to a customer is."""
    family = LOOKALIKES[0]
    s = Stream()
    s.label("M", "mule_ring", 1, "ring_member")
    for name in ("L1", "L2", "L3"):
        s.label(name, family, 5, "lookalike")
    s.txn(0, "M", "L1", 100, "STOP_PAYMENT")
    s.txn(1, "L2", "P1", 100, "HOLD", scenario=family, sid=5)
    s.txn(2, "L3", "P2", 100, scenario=family, sid=5)
    row = s.metrics().lookalikes.filter(pl.col("family") == family).row(0, named=True)
    assert row["alerted_share"] == pytest.approx(2 / 3)
    assert row["alerted_no_criminal_share"] == pytest.approx(1 / 3)


def test_alerts_bother_the_payer_of_a_warning_and_both_sides_of_a_hold() -> None:
    """A WARN alerts its payer only; a HOLD or a report alerts both sides; labelled accounts are
    not ordinary; a look-alike's account and number are counted in its family."""
    s = Stream()
    s.txn(0, "P1", "Q1", 100, "WARN")
    s.txn(1, "P2", "Q2", 100, "HOLD")
    s.txn(2, "P3", "Q3", 100, "ALLOW", suspicious=True)
    s.txn(3, "P4", "Q4", 100)
    family = LOOKALIKES[0]
    s.label("SHOP", family, 5, "lookalike")
    s.label("OWNER", family, 5, "lookalike")
    s.label("+8613900000000", family, 5, "lookalike_caller")
    s.txn(4, "SHOP", "OWNER", 900, "HOLD", scenario=family, sid=5, payer_type="organisation")
    s.call(5, "+8613900000000", "+8613800000009", "BLOCK", scenario=family, sid=5)
    s.call(5, "+8613900000001", "+8613800000009")
    m = s.metrics()
    assert m.alerts["ordinary_accounts"] == 8
    assert m.alerts["ordinary_alerted_share"] == pytest.approx(5 / 8)  # P1, P2, Q2, P3, Q3
    assert m.alerts["ordinary_alerted_no_criminal_share"] == pytest.approx(5 / 8)
    assert m.alerts["ordinary_warn_share"] == pytest.approx(3 / 8)  # P1, P2, Q2
    assert m.alerts["ordinary_hold_share"] == pytest.approx(2 / 8)
    assert m.alerts["ordinary_callers_warned_share"] == 0.0
    row = m.lookalikes.filter(pl.col("family") == family).row(0, named=True)
    assert (row["accounts"], row["hold_share"], row["callers"], row["callers_warned_share"]) == (
        2,
        1.0,
        1,
        1.0,
    )


def test_duplicates_are_decided_once() -> None:
    """A repeated transaction id (the duplicate answer) is not a second payment."""
    s = Stream()
    s.label("V", "telecom_fraud", 1, "victim")
    s.txn(0, "V", "M", 1_000, scenario="telecom_fraud", sid=1)
    events = pl.DataFrame(s.events, schema=EVENT_SCHEMA | LABEL_COLUMNS)
    accounts = pl.DataFrame(s.labels, schema=ACCOUNT_LABEL_SCHEMA, orient="row")
    decisions = pl.DataFrame(s.decisions * 2).with_columns(pl.Series("duplicate", [False, True]))
    row = _scenario(protection_metrics(events, accounts, decisions), "telecom_fraud")
    assert row["victim_transfers"] == 1


# ------------------------------------------------------------------------------ on a real replay


@pytest.fixture(scope="module")
def replayed() -> ProtectionMetrics:
    synth = generate(SynthConfig(seed=5, n_persons=1_500, n_organisations=80, days=14, scenario_rate=0.08,
                                 lookalike_rate=0.03))  # fmt: skip
    settings = load_settings(None, {}, {})
    decisions = replay(synth.events, load_policy(), settings).decisions
    thresholds = load_thresholds()
    return protection_metrics(
        synth.events, synth.accounts, decisions, lines_fen=thresholds.lines_fen(settings), settings=settings,
        registry=synth.registry,
    )  # fmt: skip


def test_metrics_of_a_replayed_stream_have_their_shape(replayed: ProtectionMetrics) -> None:
    """Every fraud scenario with victims has a row; shares are shares; every look-alike family
    has a row; the figures serialise to JSON and print as markdown."""
    per = replayed.per_scenario
    assert {"telecom_fraud", "telecom_fraud_repeat", "mule_split_forwarding", "rented_dormant_mule",
            "robocall"} <= set(per.filter(pl.col("victims") > 0)["scenario"])  # fmt: skip
    assert not set(per["scenario"]) & set(LOOKALIKES)
    for column in ("intervened_first_share", "stopped_share", "held_share", "mules_stopped_share",
                   "stoppable_median", "stoppable_mean"):  # fmt: skip
        values = per[column].drop_nulls()
        assert ((values >= 0) & (values <= 1)).all(), column
    assert (per["intervened_first"] <= per["victims"]).all()
    assert (per["mules_stopped"] <= per["mules"]).all()
    assert replayed.lookalikes["family"].to_list() == list(LOOKALIKES)
    assert replayed.large_value["reportable_transactions"] > 0
    roles = set(replayed.flagged["role"])
    assert {"collector", "controller", "recruiter", "structurer"} <= roles
    text = format_protection({"a": replayed.as_dict(), "b": replayed.as_dict()})
    assert "### Victims (a / b)" in text and "| lookalike_courier |" in text
    json.dumps(replayed.as_dict())


def test_bench_harness_runs_small_and_writes_its_json(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m bench.protection` end to end on a tiny stream: a table and a JSON file."""
    out = tmp_path / "p.json"
    assert bench_protection.main(["--seed", "3", "--persons", "400", "--days", "10", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "### Mules" in text and "### Look-alikes" in text
    data = json.loads(out.read_text())
    assert data["run"]["seed"] == 3 and data["run"]["persons"] == 400
    assert bench_protection.main(["--side-by-side", str(out), str(out)]) == 0
    assert "### Victims (seed-3 / seed-3#2)" in capsys.readouterr().out
