"""`screening audit verify | show`: check an audit trail's hash chain; read its records."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from screening.errors import InputFileError

__all__ = ["add_audit_command"]

_VERIFY = """\
Check an audit trail ([audit] dir): one file, or every audit-NNNNNNNNNNNN.jsonl file of a
directory in order. Every record's sha256, its link to the record before it, sequence numbers
without gaps, each file's open record (its own name and the file before it, so dropped,
swapped or renamed files show), each anchor's count and head, and the anchors given with
--anchor (as logged in `audit_anchor` lines: seq and hash).
Exit status: 0 and a summary (records, first and last time, chain head) when intact; 1 and the
first broken record (file, line, seq, what is wrong) when not; 2 when PATH cannot be read.
"""

_SHOW = """\
Print the records of an audit trail (a file or a directory) as JSON lines, those naming the
given account, phone number or transaction id anywhere (payer, payee, watchlist entries,
queries, exports ...) and of the given kinds. Run `verify` first: show reads what is there.
"""

_ANCHOR = re.compile(r"^(\d+)[=:]([0-9a-f]{64})$")


def _anchor(text: str) -> tuple[int, str]:
    m = _ANCHOR.match(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"expected SEQ=HASH (a number and 64 hex digits), got "
                                         f"{text!r}")
    return int(m.group(1)), m.group(2)


def add_audit_command(sub: Any) -> None:
    p = sub.add_parser("audit", help="the audit trail: verify its hash chain, show records",
                       description="Commands on the audit trail a server writes ([audit] dir).")
    asub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    v = asub.add_parser("verify", help="check the hash chain; name the first broken record",
                        description=_VERIFY,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("path", type=Path, help="an audit file or the [audit] dir")
    v.add_argument("--anchor", type=_anchor, action="append", default=[], metavar="SEQ=HASH",
                   help="a published anchor the log must still hold (repeatable)")
    v.set_defaults(func=_cmd_verify)
    s = asub.add_parser("show", help="print records (by account, phone or transaction; kind)",
                        description=_SHOW, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("path", type=Path, help="an audit file or the [audit] dir")
    s.add_argument("--id", dest="ids", action="append", default=[], metavar="ID",
                   help="an account, phone number, device or transaction id (repeatable; any "
                        "of them)")
    s.add_argument("--kind", action="append", default=[],
                   help="decision, call_decision, watchlist, feedback, query, export, report, "
                        "accounts, policy, open, anchor (repeatable)")
    s.set_defaults(func=_cmd_show)


def _cmd_verify(args: argparse.Namespace) -> int:
    from screening.audit import verify

    if not args.path.exists():
        raise InputFileError(f"{args.path}: no such file or directory")
    try:
        report = verify(args.path, dict(args.anchor))
    except OSError as exc:
        raise InputFileError(f"{args.path}: cannot be read ({exc.strerror or exc})") from None
    if report.ok:
        print(report.summary())
        return 0
    print(f"screening: audit {args.path}: {report.problem}", file=sys.stderr)
    return 1


def _names(value: Any, ids: set[str]) -> bool:
    if isinstance(value, str):
        return value in ids
    if isinstance(value, dict):
        return any(_names(v, ids) for k, v in value.items() if k not in ("prev", "hash"))
    if isinstance(value, list):
        return any(_names(v, ids) for v in value)
    return False


def _cmd_show(args: argparse.Namespace) -> int:
    from screening.audit import read_records

    if not args.path.exists():
        raise InputFileError(f"{args.path}: no such file or directory")
    ids, kinds = set(args.ids), set(args.kind)
    try:
        for rec in read_records(args.path):
            if kinds and rec.get("kind") not in kinds:
                continue
            if ids and not _names(rec, ids):
                continue
            print(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
    except ValueError as exc:
        raise InputFileError(f"{args.path}: not an audit trail ({exc}); run `screening audit "
                             "verify`") from None
    return 0
