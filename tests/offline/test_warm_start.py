"""Start warm: history replayed into a checkpoint that a server restores, and the registry and
call outcomes decided alike offline and live."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from screening.cli import main
from screening.client import transaction
from screening.config import load_settings
from screening.offline.messages import to_requests
from screening.offline.replay import read_registry, replay
from screening.policy import load_policy
from screening.v1 import screening_pb2 as pb
from tests.conftest import _start, _stop

UTC = dt.UTC
T0 = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(days=20)


def _row(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {c: None for c in (
        "payer_account", "payer_institution", "payer_party_type", "payer_opened_date",
        "payee_account", "payee_institution", "payee_party_type", "payee_opened_date",
        "amount_minor", "currency", "channel", "cash", "cross_border", "device_id", "payer_phone",
        "memo", "caller_number", "callee_number", "duration_seconds", "caller_class",
        "payee_phone", "call_outcome")}
    base.update(kw)
    return base


def _txn(i: int, when: dt.datetime, payer: str, payee: str, amount: int, **kw: object) -> dict[str, object]:
    return _row(event_id=f"t{i:05d}", kind="txn", event_time=when, payer_account=payer,
                payee_account=payee, payer_party_type="person", payee_party_type="person",
                amount_minor=amount, currency="CNY", channel="mobile_app", cash=False,
                cross_border=False, payer_institution="B", payee_institution="B", **kw)


def _call(i: int, when: dt.datetime, caller: str, callee: str, outcome: str | None,
          duration: int = 0) -> dict[str, object]:
    return _row(event_id=f"c{i:05d}", kind="call", event_time=when, caller_number=caller,
                callee_number=callee, duration_seconds=duration, caller_class="mobile",
                call_outcome=outcome)


def _history() -> pl.DataFrame:
    rows: list[dict[str, object]] = []
    for day in range(10):  # ten days of an ordinary household and a courier
        t = T0 + dt.timedelta(days=day, hours=9)
        rows.append(_txn(len(rows), t, "acct-a", "acct-shop", 3_500, payer_phone="+8613900000001"))
        for k in range(12):
            rows.append(_call(len(rows), t + dt.timedelta(minutes=k), "+8613900000009",
                              f"+86139000010{k:02d}", "answered", 15))
    # a robocaller: mostly unanswered, and a dormant account in the registry that wakes up
    t = T0 + dt.timedelta(days=11, hours=10)
    for k in range(30):
        rows.append(_call(len(rows), t + dt.timedelta(minutes=k), "+8617000000777",
                          f"+86139000020{k:02d}", "unanswered" if k % 10 else "answered",
                          0 if k % 10 else 90))
    rows.append(_txn(len(rows), t + dt.timedelta(hours=1), "acct-v", "acct-rented", 2_000_000,
                     payer_phone="+8613900002000", payee_phone="+8613900003000"))
    rows.append(_txn(len(rows), t + dt.timedelta(hours=1, minutes=5), "acct-rented", "acct-l2",
                     1_900_000))
    frame = pl.DataFrame(rows, infer_schema_length=None)
    from screening.offline.events import conform
    return conform(frame, "history")


def _registry(tmp_path: Path) -> Path:
    path = tmp_path / "registry.csv"
    path.write_text("account,institution,party_type,opened_date,last_active_date,merchant_category,"
                    "payroll,phone\n"
                    "acct-rented,B,person,2013-05-01,2024-01-10,,false,+8613900003000\n"
                    "acct-shop,B,organisation,2020-01-01,,5812,false,\n", encoding="utf-8")
    return path


def test_replay_with_registry_and_outcomes_decides_as_the_live_server(tmp_path: Path) -> None:
    """The same events and registry through a real server (UpsertAccounts, ScreenTransaction,
    ReportCall with outcomes) and through replay: identical actions and reasons."""
    settings, policy = load_settings(), load_policy()
    history = _history()
    registry = read_registry(_registry(tmp_path))
    offline = replay(history, policy, settings, registry=registry).decisions
    live = _start(load_settings(overrides={"log": {"level": "debug"}}))
    try:
        admin = live.client("admin")
        profiles = [pb.AccountProfile(
            account_id=r["account"], party_type=pb.PARTY_TYPE_PERSON if r["party_type"] == "person"
            else pb.PARTY_TYPE_ORGANISATION,
            opened_date=str(r["opened_date"] or ""), last_active_date=str(r["last_active_date"] or ""),
            merchant_category=r["merchant_category"] or "", payroll=bool(r["payroll"]),
            phone=r["phone"] or "", institution=r["institution"])
            for r in registry.iter_rows(named=True)]
        admin.upsert_accounts(profiles)
        got = {}
        for req in to_requests(history):
            if isinstance(req, pb.Transaction):
                d = admin.screen(req)
                got[d.transaction_id] = (pb.Action.Name(d.action)[7:], [r.code for r in d.reasons])
            else:
                c = admin.report_call(req)
                got[c.call_id] = (pb.CallAction.Name(c.action)[12:], [r.code for r in c.reasons])
    finally:
        _stop(live)
    for row in offline.iter_rows(named=True):
        assert got[row["event_id"]] == (row["action"], row["reason_codes"]), row["event_id"]
    decided = dict(zip(offline["event_id"], offline["reason_codes"], strict=True))
    codes = {c for cs in decided.values() for c in cs}
    assert "ROBOCALLER" in codes
    assert {"WOKEN_DORMANT_ACCOUNT_RECEIVES", "WOKEN_DORMANT_FORWARDS"} <= codes


def test_replayed_history_starts_a_server_warm(tmp_path: Path) -> None:
    """`screening replay --checkpoint-out` writes the state a server restores: accounts seen in
    the history are known (QueryAccount), and the learning period is over."""
    events = tmp_path / "history.parquet"
    _history().write_parquet(events)
    state = tmp_path / "state"
    assert main(["replay", str(events), "--no-progress", "--checkpoint-out", str(state),
                 "--registry", str(_registry(tmp_path))]) == 0
    settings = load_settings(overrides={"storage": {"backend": "file", "path": str(state)}})
    live = _start(settings)
    try:
        report = live.police.query_account("acct-a")
        assert report.known and report.features["out_count_7d"] >= 1
        d = live.bank.screen(transaction("warm-1", dt.datetime.now(UTC) - dt.timedelta(minutes=1),
                                         "acct-a", "acct-new", 10_000))
        assert d.features.get("observed_days", 99) >= 0
        assert live.police.query_account("acct-rented").known
    finally:
        _stop(live)


def test_replay_ignores_a_registry_entry_that_a_transaction_contradicts(tmp_path: Path) -> None:
    """Institution B files both payees as merchants. Payments naming C as the payee's
    institution do not take B's word: a victim's fraud-memo payment marks that payee a mule and
    the next victim's payment to it is held (PAYS_SUSPECTED_MULE); the same payments naming B
    are a merchant's. As the live server decides (``Screener._foreign``)."""
    old = dt.date(2015, 1, 5)
    t = T0 + dt.timedelta(days=15)
    rows = []
    for payee, inst in (("acct-shop", "B"), ("acct-mule", "C")):
        for k, memo in enumerate(("转到安全账户", None)):
            rows.append(_row(
                event_id=f"t-{payee}-{k}", kind="txn", event_time=t + dt.timedelta(minutes=10 * k),
                payer_account=f"acct-victim-{payee}-{k}", payee_account=payee,
                payer_party_type="person", payee_party_type="person", payer_opened_date=old,
                payee_opened_date=old, amount_minor=500_000 - 200_000 * k, currency="CNY",
                channel="mobile_app", cash=False, cross_border=False, payer_institution="B",
                payee_institution=inst, memo=memo))
        t += dt.timedelta(hours=1)
    from screening.offline.events import conform
    events = conform(pl.DataFrame(rows, infer_schema_length=None), "events")
    path = tmp_path / "registry.csv"
    path.write_text("account,institution,party_type,opened_date,last_active_date,merchant_category,"
                    "payroll,phone\n"
                    "acct-shop,B,person,2015-01-05,,5411,false,\n"
                    "acct-mule,B,person,2015-01-05,,5411,false,\n", encoding="utf-8")
    decided = replay(events, load_policy(), load_settings(), registry=read_registry(path)).decisions
    codes = dict(zip(decided["event_id"], decided["reason_codes"], strict=True))
    actions = dict(zip(decided["event_id"], decided["action"], strict=True))
    assert actions["t-acct-mule-0"] == "HOLD" and actions["t-acct-shop-0"] == "HOLD"
    assert "PAYS_SUSPECTED_MULE" in codes["t-acct-mule-1"], codes
    assert actions["t-acct-mule-1"] == "HOLD"
    assert "PAYS_SUSPECTED_MULE" not in codes["t-acct-shop-1"] and actions["t-acct-shop-1"] == "ALLOW"
