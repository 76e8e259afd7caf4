"""The audit trail's chain, files and verifier: every kind of tampering is found and named."""

from __future__ import annotations

import itertools
import json
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from screening.audit import (
    DECISION,
    DECISIONS,
    GENESIS,
    AuditTrail,
    audit_files,
    read_records,
    verify,
)
from screening.auth import Caller
from screening.cli import main
from screening.config import AuditSettings
from screening.errors import AuditUnavailable, ConfigError
from screening.model import DecisionRecord, Party, TxnColumns, TxnInput

POLICE = Caller("police-hq", "police")
BANK = Caller("bank-a core", "bank", "BANK01")


class _Log:
    """A logger that keeps what it is told (the trail logs anchors and failures)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _keep(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    info = warning = error = _keep

    def named(self, event: str) -> list[dict[str, Any]]:
        return [kw for e, kw in self.events if e == event]


def _txn(i: int) -> tuple[TxnInput, DecisionRecord]:
    t = TxnInput(f"txn-{i}", 1_767_196_800_000 + i, Party(f"payer-{i}", "BANK01", 1, None),
                 Party("6222 0000 1111 2222", "BANK02", 1, None), 10_000 + i, "CNY", 10_000 + i,
                 1, False, False, "", "", "")
    rec = DecisionRecord(t.transaction_id, i, t.event_time_ms, 1 if i % 2 else 3, 0, 7, 0, (),
                         "default@1#abc", 90, False)
    return t, rec


def _trail(directory: Path, log: _Log | None = None, **kw: Any) -> AuditTrail:
    return AuditTrail(AuditSettings(dir=str(directory), **kw), log or _Log())


def _write(directory: Path, n: int = 10, **kw: Any) -> AuditTrail:
    """A trail with ``n`` records after its open record: queries and decisions, then closed."""
    trail = _trail(directory, **kw)
    trail.start()
    for i in range(n):
        if i % 2:
            t, rec = _txn(i)
            trail.add((DECISION, time.time_ns(), BANK, "ScreenTransaction", t, rec, False,
                       ["RULE_A"]))
        else:
            trail.event("query", POLICE, "QueryAccount", "default@1#abc", account=f"acct-{i}",
                        known=True)
    trail.close()
    return trail


@pytest.fixture()
def written(tmp_path: Path) -> Iterator[Path]:
    """A closed trail of 10 records (file 1), then a restart with 10 more (file 2)."""
    d = tmp_path / "audit"
    _write(d)
    _write(d)
    yield d


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _broken(path: Path, **kw: Any) -> str:
    report = verify(path, **kw)
    assert not report.ok, report.summary()
    assert report.problem is not None
    return report.problem


# ---------------------------------------------------------------- what is written
def test_every_record_links_to_the_one_before_and_verify_passes(written: Path) -> None:
    """Two runs: two files, sequence numbers 0.. without gaps, each record's prev is the hash
    before it, and verify reports the count, times and chain head."""
    files = audit_files(written)
    assert [f.name for f in files] == ["audit-000000000000.jsonl", "audit-000000000012.jsonl"]
    records = list(read_records(written))
    assert [r["seq"] for r in records] == list(range(24))  # 2 x (open + 10 + stop anchor)
    assert records[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(records):
        assert after["prev"] == before["hash"]
    assert records[12]["kind"] == "open" and records[12]["previous_file"] == files[0].name
    report = verify(written)
    assert report.ok, report.problem
    assert (report.records, report.first_seq, report.last_seq, report.anchors) == (24, 0, 23, 2)
    assert report.head == records[-1]["hash"]
    assert report.first_at == records[0]["at"] and report.last_at == records[-1]["at"]
    assert report.kinds == {"open": 2, "anchor": 2, "query": 10, "decision": 10}


def test_decision_records_hold_who_what_when_the_decision_and_the_policy(tmp_path: Path) -> None:
    """Identifiers are in clear; the caller, its institution, the action and the policy are named."""
    _write(tmp_path, n=2)
    rec = next(r for r in read_records(tmp_path) if r["kind"] == DECISION)
    assert rec["by"] == "bank-a core" and rec["role"] == "bank" and rec["institution"] == "BANK01"
    assert rec["rpc"] == "ScreenTransaction" and rec["txn"] == "txn-1"
    assert rec["payer"] == "payer-1" and rec["payee"] == "6222 0000 1111 2222"
    assert rec["action"] == "ALLOW" and rec["reasons"] == ["RULE_A"]
    assert rec["policy"] == "default@1#abc" and rec["amount_minor"] == 10_001
    assert rec["event_time"] == "2025-12-31T16:00:00.001000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", rec["at"])


def test_files_are_private(tmp_path: Path) -> None:
    """The directory it creates is 0700 and every file 0600, whatever the umask."""
    d = tmp_path / "new" / "audit"
    _write(d, n=1)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for f in audit_files(d):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_files_rotate_by_size_and_by_day(tmp_path: Path) -> None:
    """Past rotate_bytes, and at a new UTC day, the next batch goes to a new file opened by a
    record that links it to the last; an anchor closes each file; the whole chain verifies."""
    now = [1_767_225_000 * 10**9]  # 2026-01-01 23:50 UTC
    trail = AuditTrail(AuditSettings(dir=str(tmp_path), rotate_bytes=600, rotate_daily=True),
                       _Log(), clock_ns=lambda: now[0])
    trail.start()
    for i in range(3):
        trail.event("query", POLICE, "QueryAccount", "p", account=f"a{i}", known=False)
        assert trail.flush()
    now[0] += 20 * 60 * 10**9  # past midnight
    trail.event("query", POLICE, "QueryAccount", "p", account="after-midnight", known=False)
    assert trail.flush()
    trail.close()
    files = audit_files(tmp_path)
    assert len(files) >= 3
    opens = [r for r in read_records(tmp_path) if r["kind"] == "open"]
    assert {o["reason"] for o in opens} >= {"start", "size", "day"}
    rotations = [r for r in read_records(tmp_path) if r["kind"] == "anchor"]
    assert len(rotations) == len(files)  # one per rotation and the one at stop
    assert verify(tmp_path).ok


def test_anchors_are_logged_for_notarising_and_checked(written: Path) -> None:
    """Each anchor's seq and hash go to the ordinary log; verify --anchor accepts them and
    refuses a hash that is not the log's."""
    log = _Log()
    trail = _trail(written, log)
    trail.start()
    trail.event("query", POLICE, "QueryAccount", "p", account="x", known=False)
    trail.close()
    (anchor,) = log.named("audit_anchor")
    records = list(read_records(written))
    assert records[anchor["seq"]]["hash"] == anchor["hash"] and records[-1]["kind"] == "anchor"
    assert verify(written, anchors={anchor["seq"]: anchor["hash"]}).ok
    problem = _broken(written, anchors={anchor["seq"]: "f" * 64})
    assert f"(seq {anchor['seq']}): does not match the published anchor" in problem


# ---------------------------------------------------------------- tampering, each named
def test_an_edited_field_is_a_hash_mismatch(written: Path) -> None:
    """Changing the action of one decision is found at that record."""
    f = audit_files(written)[0]
    lines = _lines(f)
    i = next(i for i, ln in enumerate(lines) if b'"action":"ALLOW"' in ln)
    lines[i] = lines[i].replace(b'"action":"ALLOW"', b'"action":"HOLD"')
    f.write_bytes(b"".join(lines))
    assert _broken(written) == f"{f.name} line {i + 1} (seq {i}): hash mismatch: the record was changed"


def test_an_edit_with_its_hash_recomputed_breaks_the_link_after_it(written: Path) -> None:
    """Whoever rewrites a record and its hash is found at the next record, whose prev no longer
    matches."""
    import hashlib

    f = audit_files(written)[0]
    lines = _lines(f)
    i = next(i for i, ln in enumerate(lines) if b'"payer":"payer-1"' in ln)
    body = lines[i][:lines[i].index(b',"hash":"')].replace(b"payer-1", b"payer-X")
    lines[i] = body + b',"hash":"' + hashlib.sha256(body).hexdigest().encode() + b'"}\n'
    f.write_bytes(b"".join(lines))
    problem = _broken(written)
    assert problem.startswith(f"{f.name} line {i + 2} (seq {i + 1}): chain broken")


def test_a_deleted_record_is_a_sequence_gap(written: Path) -> None:
    f = audit_files(written)[0]
    lines = _lines(f)
    del lines[4]
    f.write_bytes(b"".join(lines))
    assert _broken(written) == (f"{f.name} line 5 (seq 5): sequence gap: 4..4 missing "
                                "(records deleted)")


def test_two_records_swapped_are_out_of_order(written: Path) -> None:
    f = audit_files(written)[0]
    lines = _lines(f)
    lines[3], lines[4] = lines[4], lines[3]
    f.write_bytes(b"".join(lines))
    assert _broken(written) == (f"{f.name} line 4 (seq 4): out of order: sequence 4 where 3 was "
                                "expected, and 3 comes later (records reordered)")


def test_a_record_moved_back_is_out_of_order(written: Path) -> None:
    f = audit_files(written)[0]
    lines = _lines(f)
    lines.insert(6, lines.pop(2))
    f.write_bytes(b"".join(lines))
    assert "line 3 (seq 3): out of order" in _broken(written)


def test_a_truncated_last_record_is_named(written: Path) -> None:
    """A file cut in the middle of its last record: truncated, with the offset."""
    f = audit_files(written)[-1]
    data = f.read_bytes()
    f.write_bytes(data[:-40])
    problem = _broken(written)
    assert problem.startswith(f"{f.name}: truncated: the last record is incomplete")


def test_records_cut_off_the_end_are_found_by_a_published_anchor(written: Path) -> None:
    """Whole records removed from the end leave a valid chain: the published anchor is missing
    (and verify says the log does not end with an anchor)."""
    f = audit_files(written)[-1]
    last = list(read_records(f))[-1]
    f.write_bytes(b"".join(_lines(f)[:-3]))
    report = verify(written)
    assert report.ok and any("not an anchor" in n for n in report.notes)
    assert _broken(written, anchors={last["seq"]: last["hash"]}) == (
        f"anchor seq {last['seq']}: no such record in the log (truncated?)")


def test_swapped_files_are_named(written: Path) -> None:
    """Two files with their names swapped: the open record names the other file."""
    a, b = audit_files(written)
    tmp = a.with_suffix(".tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    problem = _broken(written)
    assert problem.startswith(f"{a.name} line 1 (seq 12): the open record names "
                              f"'{b.name}': this file was renamed, swapped or replaced")


def test_a_missing_middle_file_is_named(tmp_path: Path) -> None:
    for _ in range(3):
        _write(tmp_path, n=2)
    middle = audit_files(tmp_path)[1]
    middle.unlink()
    last = audit_files(tmp_path)[1]
    problem = _broken(tmp_path)
    assert problem == (f"{last.name} line 1 (seq 8): the open record follows '{middle.name}', "
                       f"not 'audit-000000000000.jsonl': files missing, swapped or reordered")


def test_a_first_record_deleted_from_a_file_is_named(written: Path) -> None:
    f = audit_files(written)[1]
    f.write_bytes(b"".join(_lines(f)[1:]))
    assert "the file does not begin with its open record" in _broken(written)


def test_a_line_that_is_not_a_record_is_named(written: Path) -> None:
    f = audit_files(written)[0]
    lines = _lines(f)
    lines.insert(3, b"hello\n")
    f.write_bytes(b"".join(lines))
    assert _broken(written) == f"{f.name} line 4: not a record (not JSON: damaged or edited)"


# ---------------------------------------------------------------- crash, restart, failures
def test_a_restart_after_a_torn_write_names_the_damage_and_goes_on(tmp_path: Path) -> None:
    """An incomplete record at the end (a crash mid-write) is left alone; the next start links
    to the record before it and names the bytes; verify accepts exactly that, as a note."""
    _write(tmp_path, n=3)
    f = audit_files(tmp_path)[0]
    size = f.stat().st_size
    with f.open("ab") as out:
        out.write(b'{"seq":5,"at":"2026-')
    assert _broken(tmp_path).startswith(f"{f.name}: truncated")
    log = _Log()
    trail = _trail(tmp_path, log)
    trail.start()
    trail.close()
    damage = {"file": f.name, "offset": size, "bytes": 20}
    (logged,) = log.named("audit_damaged_tail")
    assert logged.items() >= damage.items()
    opened = [r for r in read_records(tmp_path) if r["kind"] == "open"][-1]
    assert opened["damaged_tail"] == damage and opened["seq"] == 5
    report = verify(tmp_path)
    assert report.ok, report.problem
    assert any("20 bytes of an incomplete record" in n for n in report.notes)


def test_a_full_queue_refuses_after_block_ms_and_waits_for_room_before(tmp_path: Path) -> None:
    """With max_pending records waiting and no writer, admit waits block_ms and refuses; once a
    writer drains the queue within block_ms, the waiting call goes on."""
    trail = _trail(tmp_path, max_pending=3, block_ms=50, flush_interval_ms=1)
    for i in range(3):
        trail.admit()
        trail.event("query", POLICE, "QueryAccount", "p", account=f"a{i}", known=True)
    t0 = time.monotonic()
    with pytest.raises(AuditUnavailable, match=r"3 records not yet written \(\[audit\] "
                                                r"max_pending 3, waited 50 ms\)"):
        trail.admit()
    assert time.monotonic() - t0 >= 0.05 and trail.refused == 1
    slow = _trail(tmp_path / "b", max_pending=3, block_ms=5_000, flush_interval_ms=1)
    for i in range(3):
        slow.event("query", POLICE, "QueryAccount", "p", account=f"a{i}", known=True)
    threading.Timer(0.1, slow.start).start()
    slow.admit()  # returns once the writer has taken the queue
    assert slow.pending < 3
    slow.close()
    assert verify(tmp_path / "b").ok


def test_a_batch_item_writes_the_records_one_by_one_would_and_counts_as_its_records(
        tmp_path: Path) -> None:
    """A DECISIONS item (ScreenBatch) writes one decision record per transaction, field for
    field those of one item per decision, and counts as that many records against max_pending."""
    pairs = [_txn(i) for i in range(4)]
    one = _trail(tmp_path / "one")
    one.start()
    for t, rec in pairs:
        one.add((DECISION, 1_700_000_000_000_000_000, BANK, "ScreenBatch", t, rec, False, ["R"]))
    one.close()
    many = _trail(tmp_path / "many", max_pending=4, block_ms=1)
    many.add_decisions((DECISIONS, 1_700_000_000_000_000_000, BANK, "ScreenBatch",
                        TxnColumns.from_inputs([t for t, _ in pairs]), [r for _, r in pairs],
                        [False] * 4, [["R"]] * 4))
    assert many.pending == 4
    with pytest.raises(AuditUnavailable, match="4 records not yet written"):
        many.admit()
    many.start()
    many.close()
    assert many.pending == 0 and many.written == one.written

    def decisions(d: Path) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in ("at", "hash", "prev")}
                for r in read_records(d) if r["kind"] == DECISION]

    assert decisions(tmp_path / "many") == decisions(tmp_path / "one")
    assert len(decisions(tmp_path / "one")) == 4
    assert verify(tmp_path / "many").ok


def test_a_failing_write_keeps_every_record_and_the_chain(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes that fail (a full disk) are retried with the same records, in order, none lost or
    doubled; the failure and the recovery are logged."""
    log = _Log()
    trail = _trail(tmp_path, log, flush_interval_ms=5)
    trail.start()
    real: Callable[[bytes], None] = trail._write
    fails = [2]

    def flaky(data: bytes) -> None:
        if fails[0]:
            fails[0] -= 1
            raise OSError(28, "No space left on device")
        real(data)

    monkeypatch.setattr(trail, "_write", flaky)
    for i in range(20):
        trail.event("query", POLICE, "QueryAccount", "p", account=f"a{i}", known=True)
    assert trail.flush(timeout=10)
    trail.close()
    accounts = [r["account"] for r in read_records(tmp_path) if r["kind"] == "query"]
    assert accounts == [f"a{i}" for i in range(20)]
    assert verify(tmp_path).ok
    assert log.named("audit_write_failed")[0]["error"] == "[Errno 28] No space left on device"
    assert log.named("audit_write_recovered")


def test_a_record_that_cannot_be_built_stops_the_trail_closed_not_open(tmp_path: Path) -> None:
    """A queued item the writer cannot turn into a record (a bug) is not dropped and does not
    kill the writer: it is logged, retried, and once max_pending wait, calls are refused."""
    log = _Log()
    trail = _trail(tmp_path, log, flush_interval_ms=5, max_pending=2, block_ms=10)
    trail.start()
    trail.add((DECISION, time.time_ns(), BANK, "ScreenTransaction", "not a txn", None, False, []))
    trail.event("query", POLICE, "QueryAccount", "p", account="a", known=True)
    deadline = time.monotonic() + 10
    while not log.named("audit_write_failed") and time.monotonic() < deadline:
        time.sleep(0.01)
    (failed,) = log.named("audit_write_failed")
    assert "AssertionError" in failed["error"]
    assert trail._thread is not None and trail._thread.is_alive() and trail.pending == 2
    with pytest.raises(AuditUnavailable, match="last write error: AssertionError"):
        trail.admit()
    trail.close(timeout=0.2)
    assert [r["kind"] for r in read_records(tmp_path)] == ["open"]
    assert log.named("audit_unwritten")[0]["records"] == 2


def test_a_second_writer_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    """Two servers on one directory would fork the chain: the second does not start; once the
    first has stopped, it does."""
    first = _trail(tmp_path)
    first.start()
    with pytest.raises(ConfigError, match="another server writes its audit trail here"):
        _trail(tmp_path).start()
    first.close()
    second = _trail(tmp_path)
    second.start()
    second.close()
    assert verify(tmp_path).ok


def test_a_directory_that_cannot_be_written_stops_start_up(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"\[audit\] dir .*file: cannot be written"):
        _trail(blocker).start()


# ---------------------------------------------------------------- the command line
def test_cli_verify_prints_a_summary_or_the_first_broken_record(
        written: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(written)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 24 records in 2 file(s), seq 0..23")
    head = verify(written).head
    assert f"chain head {head} (seq 23)" in out
    assert main(["audit", "verify", str(written), "--anchor", f"23={head}"]) == 0
    f = audit_files(written)[0]
    f.write_bytes(f.read_bytes().replace(b"acct-2", b"acct-9"))
    capsys.readouterr()
    assert main(["audit", "verify", str(written)]) == 1
    err = capsys.readouterr().err
    assert f"{f.name} line 4 (seq 3): hash mismatch" in err
    assert main(["audit", "verify", str(written / "nope")]) == 2


def test_cli_show_filters_by_identifier_and_kind(written: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "show", str(written), "--id", "payer-3"]) == 0
    shown = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [(r["kind"], r["txn"]) for r in shown] == [("decision", "txn-3")] * 2
    assert main(["audit", "show", str(written), "--kind", "anchor"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
