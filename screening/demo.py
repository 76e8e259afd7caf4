"""`screening demo`: a scripted day of payments and calls through a real server and channel.

Starts a server on a free port (embedded state, no Redis), then plays ordinary customers and a
few fraud scenarios through real gRPC calls with role tokens, and prints what was decided and
why. Nothing here is faked: the decisions come from the same engine and policy as production.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import grpc

from screening.audit import verify
from screening.auth import Authenticator
from screening.client import ScreeningClient, call_event, transaction, watch_entry
from screening.config import AuditSettings, Settings
from screening.engine import Engine
from screening.logs import configure_logging
from screening.model import fen_text
from screening.policy import load_policy
from screening.server import start_server
from screening.v1 import screening_pb2 as pb

__all__ = ["run_demo"]

CST = dt.timezone(dt.timedelta(hours=8), "CST")
_ACTION = {v.number: v.name.removeprefix("ACTION_") for v in pb.Action.DESCRIPTOR.values}
_CALL_ACTION = {v.number: v.name.removeprefix("CALL_ACTION_") for v in pb.CallAction.DESCRIPTOR.values}
_TOKENS = {"bank": "demo-bank-token", "telecom": "demo-telecom-token",
           "police": "demo-police-token"}


@dataclass
class _Row:
    when: str
    scenario: str
    event: str
    action: str
    reasons: str
    shown: bool = True


@dataclass
class _Day:
    day: dt.date
    rows: list[_Row] = field(default_factory=list)
    hidden: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def at(self, hh: int, mm: int, ss: int = 0) -> dt.datetime:
        start = dt.datetime(self.day.year, self.day.month, self.day.day, tzinfo=CST)
        return start + dt.timedelta(hours=hh, minutes=mm, seconds=ss)

    def add(self, when: dt.datetime, scenario: str, event: str, action: str, reasons: str,
            shown: bool = True) -> None:
        self.counts[action] = self.counts.get(action, 0) + 1
        if shown:
            self.rows.append(_Row(when.strftime("%H:%M"), scenario, event, action, reasons))
        else:
            self.hidden += 1


def _yuan(fen: int) -> str:
    return "¥" + fen_text(fen).removesuffix(".00")


def _reasons(d: Any) -> str:
    codes = [r.code for r in d.reasons]
    flags = [n for n, on in (("LVR", d.reports.large_value), ("STR", d.reports.suspicious),
                             ("POLICE", d.reports.notify_police)) if on]
    text = ", ".join(codes) if codes else "-"
    if flags:
        text += f"  [{'+'.join(flags)}]"
    if d.duplicate:
        text += "  (duplicate: first decision returned)"
    return text


def _script(day: _Day, bank: ScreeningClient, telecom: ScreeningClient,
            police: ScreeningClient) -> None:
    n = iter(range(1, 10_000))

    def pay(when: dt.datetime, scenario: str, payer: str, payee: str, fen: int, *, shown: bool = True,
            label: str = "", tid: str | None = None, sent: dt.datetime | None = None,
            **kw: Any) -> pb.Decision:
        txn_id = tid or f"demo-{day.day:%Y%m%d}-{next(n):04d}"
        d = bank.screen(transaction(txn_id, when, payer, payee, fen, **kw))
        day.add(sent or when, scenario, label or f"{payer} -> {payee} {_yuan(fen)}",
                _ACTION[d.action], _reasons(d), shown)
        return d

    def ring(when: dt.datetime, scenario: str, caller: str, callee: str, cls: int, label: str,
             duration: int = 0, *, shown: bool = True) -> None:
        d = telecom.report_call(call_event(f"call-{next(n):04d}", when, caller, callee,
                                           duration_seconds=duration, caller_class=cls))
        codes = ", ".join(r.code for r in d.reasons) or "-"
        day.add(when, scenario, label, _CALL_ACTION[d.action], codes, shown)

    old = "2015-03-02"
    # --- a service in operation for a week and more (one earlier payment stands for it: in its
    # first week every account is new to a service, and some rules hold back)
    pay(day.at(9, 0) - dt.timedelta(days=8), "ordinary", "6222-cust00", "merchant-grocer", 3_500,
        shown=False)
    # --- 07:30 police publish today's watchlist
    resp = police.update_watchlist([
        watch_entry(pb.ENTITY_KIND_ACCOUNT, "6222-mule-li", "confirmed fraud receiving account",
                    "city-police-anti-fraud-centre"),
        watch_entry(pb.ENTITY_KIND_PHONE, "+8617000000001", "fraud call centre number",
                    "city-police-anti-fraud-centre"),
    ])
    day.add(day.at(7, 30), "watchlist", f"police list {resp.added} entities (account, phone)",
            "OK", "UpdateWatchlist")

    # --- ordinary morning
    pay(day.at(8, 0), "ordinary", "acme-payroll", "6222-wang", 1_250_000, payer_type=2,
        payer_opened=old, payee_opened="2012-06-01", channel=pb.CHANNEL_ONLINE_BANKING,
        memo="salary", label="salary acme-payroll -> wang ¥12,500")
    pay(day.at(8, 40), "ordinary", "6222-wang", "merchant-coffee", 3_800, payee_type=2,
        payer_opened="2012-06-01", channel=pb.CHANNEL_QR, payer_phone="13800000001")
    for i in range(6):
        pay(day.at(9, 5 + i), "ordinary", f"6222-cust{i:02d}", "merchant-grocer", 4_000 + 731 * i,
            payee_type=2, payer_opened=old, channel=pb.CHANNEL_QR, shown=i == 0)

    # --- telecom fraud: a listed fraud number is blocked; the fraudster calls again from abroad
    # (a number working through a dial list: the callee is warned), talks Wang into paying a
    # "safe account", and keeps calling back
    ring(day.at(10, 2), "telecom fraud", "+8617000000001", "13800000001",
         pb.NUMBER_CLASS_VIRTUAL_OPERATOR, "call +86170…0001 -> wang's phone")
    for i in range(3):
        ring(day.at(9, 50 + i), "telecom fraud", "+85261234567", f"1370001{i:04d}",
             pb.NUMBER_CLASS_INTERNATIONAL, "the number abroad rings its dial list", shown=False)
    ring(day.at(10, 5), "telecom fraud", "+85261234567", "13800000001",
         pb.NUMBER_CLASS_INTERNATIONAL, "'police' call from abroad -> wang (20 min)")
    wang: dict[str, Any] = {"payer_opened": "2012-06-01", "payer_phone": "13800000001"}
    safe_payment: dict[str, Any] = dict(payee_opened="2026-10-30", memo="资金核查 安全账户", **wang)
    first = pay(day.at(10, 21), "telecom fraud", "6222-wang", "6217-safe-acct", 8_000_000,
                label="wang -> 'safe account' ¥80,000", **safe_payment)
    # a retry is the same payment again (same id, same content); the same id with other content
    # would be refused ALREADY_EXISTS
    pay(day.at(10, 21), "telecom fraud", "6222-wang", "6217-safe-acct", 8_000_000,
        tid=first.transaction_id, sent=day.at(10, 23), label="bank app retries the same transaction id",
        **safe_payment)
    pay(day.at(10, 48), "telecom fraud", "6222-wang", "6217-safe-acct", 5_000_000,
        payee_opened="2026-10-30", label="fraudster calls back: wang pays the same account again",
        **wang)
    pay(day.at(10, 55), "telecom fraud", "6222-wang", "6217-second-acct", 3_000_000,
        label="... then a second 'safe account' ¥30,000", **wang)
    pay(day.at(10, 58), "telecom fraud", "6217-safe-acct", "6217-layer-2", 2_000_000,
        payer_opened="2026-10-30", label="the safe account moves money on")

    # --- a spoofed number is blocked: no conversation, so Zhang's payment after it is his own
    ring(day.at(11, 0), "telecom fraud", "+85212345678", "13900000002",
         pb.NUMBER_CLASS_SPOOFED_SUSPECT, "spoofed 'customs office' call -> zhang")
    pay(day.at(11, 14), "telecom fraud", "6222-zhang", "6217-unknown", 200_000, payer_opened=old,
        payer_phone="13900000002", label="zhang -> new payee ¥2,000 (the call never connected)")

    # --- a warning does not end it: an impersonator on a virtual-operator number nobody flagged
    # yet talks Sun through a first payment to a fresh account (warned), then calls back
    ring(day.at(11, 30), "callback", "+8617012340000", "13700000003",
         pb.NUMBER_CLASS_VIRTUAL_OPERATOR, "'bank' call, virtual operator -> sun (15 min)", duration=900)
    sun: dict[str, Any] = {"payer_opened": old, "payer_phone": "13700000003"}
    pay(day.at(11, 47), "callback", "6222-sun", "6217-new-acct", 300_000, payee_opened="2026-11-02",
        label="sun -> fresh account ¥3,000 just after the call", **sun)
    ring(day.at(12, 0), "callback", "+8617012340000", "13700000003",
         pb.NUMBER_CLASS_VIRTUAL_OPERATOR, "the same number calls sun back (4 min)", duration=240)
    pay(day.at(12, 5), "callback", "6222-sun", "6217-new-acct", 900_000, payee_opened="2026-11-02",
        label="sun pays the warned account again ¥9,000", **sun)
    pay(day.at(12, 9), "callback", "6222-sun", "6217-new-acct", 2_000_000, payee_opened="2026-11-02",
        label="... and a third time ¥20,000", **sun)

    # --- watchlisted accounts
    pay(day.at(12, 5), "watchlist", "6222-zhou", "6222-mule-li", 1_500_000, payer_opened=old,
        label="zhou -> listed account ¥15,000")
    pay(day.at(12, 30), "watchlist", "6222-mule-li", "6222-offshore", 900_000,
        label="listed account pays out ¥9,000")

    # --- money mule: three inflows, passed straight on
    for i, payer in enumerate(("6222-v1", "6222-v2", "6222-v3")):
        pay(day.at(13, 0 + 7 * i), "mule", payer, "6222-mule-zhao", 2_000_000, payer_opened=old,
            payee_opened="2026-10-20", shown=i == 2,
            label="3 victims pay zhao's new account ¥20,000 each")
    pay(day.at(13, 31), "mule", "6222-mule-zhao", "6222-layer-2", 5_700_000,
        payer_opened="2026-10-20", label="zhao passes ¥57,000 on within 30 min")

    # --- illegal fundraising: many small 'investments', then 'returns' from newer money
    for i in range(24):
        pay(day.at(14, i * 2), "fundraising", f"6222-inv{i:02d}", "6222-fund-co", 1_000_000 + i,
            payer_opened=old, payee_type=2, memo="理财投资款 wealth management",
            shown=i in (0, 19), label=f"investor {i + 1} -> fund-co ¥10,000 '理财投资款'")
    for i in range(6):
        pay(day.at(15, 30 + i), "fundraising", "6222-fund-co", f"6222-inv{i:02d}", 80_000,
            payer_type=2, memo="月度收益 interest", shown=i in (0, 4, 5),
            label=f"fund-co pays 'interest' back to investor {i + 1}")

    # --- structuring: cash withdrawals just under the 50,000 CNY line
    for i in range(3):
        pay(day.at(16, 10 + 25 * i), "structuring", "6222-chen", "ATM-BANK01-07", 4_900_000,
            payer_opened=old, payee_type=pb.PARTY_TYPE_CASH_TERMINAL, cash=True,
            channel=pb.CHANNEL_COUNTER, shown=i == 2,
            label=f"chen withdraws cash ¥49,000 (x{i + 1})")

    # --- genuine large-value: reported, not blocked
    pay(day.at(17, 0), "large value", "acme-co", "steel-supplier-co", 300_000_000,
        payer_type=2, payee_type=2, payer_opened=old, payee_opened=old,
        channel=pb.CHANNEL_ONLINE_BANKING, label="acme-co pays supplier ¥3,000,000")
    pay(day.at(17, 20), "large value", "6222-liu", "CTR-BANK01-02", 6_000_000,
        payee_type=pb.PARTY_TYPE_CASH_TERMINAL,
        payer_opened=old, cash=True, channel=pb.CHANNEL_COUNTER, label="liu withdraws ¥60,000 cash")


class WarmProgress:
    """Prints each kernel warm-up step and its time, with a dot every few seconds while one
    compiles (the first start on a machine compiles for most of a minute, silently otherwise)."""

    def __init__(self, out: TextIO, tick_s: float = 5.0) -> None:
        self._out = out
        self._tick_s = tick_s
        self._started = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __call__(self, step: str) -> None:
        self._end_step()
        with self._lock:
            self._out.write(f"  {step} ")
            self._out.flush()
            self._started = time.perf_counter()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(self._stop,), daemon=True)
        self._ticker.start()

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(self._tick_s):
            with self._lock:
                self._out.write(".")
                self._out.flush()

    def _end_step(self) -> None:
        if self._ticker is None:
            return
        self._stop.set()
        self._ticker.join()
        self._ticker = None
        with self._lock:
            self._out.write(f" {time.perf_counter() - self._started:.1f} s\n")
            self._out.flush()

    def done(self) -> None:
        self._end_step()


def _cells(ch: str) -> int:
    """Terminal columns of one character: East Asian wide and full-width characters take two."""
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _width(text: str) -> int:
    return sum(_cells(ch) for ch in text)


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` terminal columns, broken between words (a word
    longer than a line is cut), so wide characters such as Chinese memos stay aligned."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        while _width(word) > width:  # cut a word that cannot fit on any line
            room = width - _width(line) - (1 if line else 0)
            if room <= 0:
                lines.append(line)
                line = ""
                continue
            head, used = "", 0
            for ch in word:
                if used + _cells(ch) > room:
                    break
                head, used = head + ch, used + _cells(ch)
            line = f"{line} {head}" if line else head
            lines.append(line)
            line, word = "", word[len(head):]
        candidate = f"{line} {word}" if line else word
        if _width(candidate) <= width:
            line = candidate
        else:
            lines.append(line)
            line = word
    if line or not lines:
        lines.append(line)
    return lines


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


_EVENT_COLS = 44
_FLAGS_LEGEND = ("[LVR] large-value transaction report, [STR] suspicious transaction report, "
                 "[POLICE] police notified to act (Article 27: stop payment, freeze)")


def _print_table(day: _Day, out: TextIO) -> None:
    width = min(shutil.get_terminal_size((140, 40)).columns, 140)
    head = f"{'TIME':5}  {'SCENARIO':13}  {_pad('EVENT', _EVENT_COLS)}  {'ACTION':12}  WHY"
    out.write(head + "\n" + "-" * width + "\n")
    indent = 5 + 2 + 13 + 2 + _EVENT_COLS + 2 + 12 + 2
    rest = max(30, width - indent)
    for r in day.rows:
        event = _wrap(r.event, _EVENT_COLS)
        why = _wrap(r.reasons, rest) if r.reasons else ["-"]
        for i in range(max(len(event), len(why))):
            left = (f"{r.when:5}  {r.scenario:13}  " if i == 0 else " " * 22)
            ev = _pad(event[i] if i < len(event) else "", _EVENT_COLS)
            action = f"{r.action:12}" if i == 0 else " " * 12
            out.write(f"{left}{ev}  {action}  {why[i] if i < len(why) else ''}".rstrip() + "\n")
    if day.hidden:
        out.write(f"({day.hidden} similar rows not shown)\n")
    out.writelines(line + "\n" for line in _wrap(_FLAGS_LEGEND, width))


class _LogFile:
    """The demo server's log file. structlog caches each logger bound to it on first use, and
    they outlive the demo in the process that ran it (a test's next server): once closed, what
    they write is dropped rather than failing (so every later log line of that process is lost:
    the command exits after the demo), and the file is closed, not left to the collector."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()  # a thread's write and the close, one at a time

    def write(self, text: str) -> int:
        with self._lock:
            return len(text) if self._file.closed else self._file.write(text)

    def flush(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def run_demo(out: TextIO, log_dir: Path | None = None) -> int:
    """Run the scripted day; returns a process exit code."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="screening-demo-"))
    log_dir.mkdir(parents=True, exist_ok=True)  # `--log-dir` names a directory that may not exist yet
    log_path = log_dir / "server.log"
    audit_dir = log_dir / "audit"
    log_stream = _LogFile(log_path)
    settings = Settings(audit=AuditSettings(dir=str(audit_dir)))
    masker = configure_logging(settings.log, stream=log_stream)
    auth = Authenticator.with_tokens({t: (f"demo-{r}", r) for r, t in _TOKENS.items()})
    out.write("loading the screening kernels (the first start on a machine compiles them, "
              "in two processes, under a minute on 2 cores; later starts load them from the "
              "cache in seconds)\n")
    out.flush()
    policy = load_policy(settings.policy.file)
    engine = Engine(settings, policy)
    progress = WarmProgress(out)
    engine.warm_up(progress=progress)
    progress.done()
    running = start_server(settings, policy=policy, masker=masker, auth=auth, port=0,
                           engine=engine)
    out.write(f"server on {running.address} (embedded state); JSON logs in {log_path}\n\n")
    clients: dict[str, ScreeningClient] = {
        r: ScreeningClient(running.address, t) for r, t in _TOKENS.items()}
    try:
        for c in clients.values():
            c.wait_ready()
        day = _Day(dt.datetime.now(CST).date() - dt.timedelta(days=1))
        out.write(f"A scripted day, {day.day.isoformat()} (UTC+8)\n\n")
        _script(day, clients["bank"], clients["telecom"], clients["police"])
        _print_table(day, out)
        _epilogue(day, clients, out, running.address)
    finally:
        for c in clients.values():
            c.close()
        running.stop(1.0)
        log_stream.close()
    audit = verify(audit_dir)
    out.write(f"\nAudit trail in {audit_dir} (`screening audit verify {audit_dir}`):\n"
              + "".join(f"  {line}\n" for line in audit.summary().splitlines())
              + f"  what happened to the mule account: `screening audit show {audit_dir} --id "
                "6222-mule-zhao`\n")
    return 0 if audit.ok else 1


def _epilogue(day: _Day, clients: dict[str, ScreeningClient], out: TextIO, address: str) -> None:
    out.write("\nDecisions: " + ", ".join(f"{k} {v}" for k, v in sorted(day.counts.items()))
              + "\n\n")
    report = clients["police"].query_account("6222-mule-zhao")
    out.write("Police fast query, account 6222-mule-zhao: "
              f"risk {report.risk_score}, received {report.features['in_count_24h']:.0f} "
              f"payments / {_yuan(int(report.features['in_sum_24h']))} in 24 h, "
              f"pass-through {report.features['pass_through_1h']:.2f}, "
              f"{len(report.recent_decisions)} recent decisions\n")
    for account in ("6217-safe-acct", "6222-wang"):
        marks = clients["police"].query_account(account).case_marks
        roles = "; ".join(
            f"{pb.CaseRole.Name(m.role).removeprefix('CASE_ROLE_').lower().replace('_', ' ')}"
            f"{f' (level {m.mule_level})' if m.mule_level else ''} since {m.transaction_id} "
            f"({', '.join(m.reason_codes)})" for m in marks)
        out.write(f"Case marks of {account}: {roles or 'none'}\n")
    checks: list[tuple[str, Callable[[], Any]]] = [
        ("bank sends amount -5", lambda: clients["bank"].screen(transaction(
            "demo-bad-1", day.at(18, 0), "6222-a", "6222-b", -5))),
        ("bank sends currency XXX", lambda: clients["bank"].screen(transaction(
            "demo-bad-2", day.at(18, 0), "6222-a", "6222-b", 100, currency="XXX"))),
        ("telecom asks QueryAccount", lambda: clients["telecom"].query_account("6222-wang")),
        ("caller without a token", lambda: ScreeningClient(address).query_account("6222-wang")),
    ]
    for label, call in checks:
        try:
            call()
            out.write(f"{label}: accepted (unexpected)\n")
        except grpc.RpcError as err:
            out.write(f"{label}: {err.code().name}: {err.details()}\n")
