"""`screening checkpoint inspect`: what the latest checkpoint in a store holds."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any

__all__ = ["add_checkpoint_command"]

_DESCRIPTION = """\
Print the header of the latest checkpoint in a store: when it was written, its format and
policy version, how many accounts, phone numbers, devices, relationships, graph edges,
remembered decisions, calls, watchlist entries and report-ledger transactions it holds, its
size, and how many watchlist changes, feedback and registry updates the journal holds beyond
it (those are applied on top at start).

The store is the one [storage] names (config file or SCREENING_STORAGE__* environment), or
the one given here. Reading does not change the store and is safe while a server runs.
--verify also reads the whole checkpoint and loads it as a starting server would (checksums,
then every value the kernels and replies rely on, under this configuration's settings): what
passes here restores at start. It needs the memory of the state.
Exit status: 0 when a checkpoint was found (and verified with --verify), 1 when there is none,
2 when the store cannot be read or the checkpoint is corrupted, of another format, or (with
--verify) would be refused at start.
"""

_EPILOG = """\
examples:
  screening checkpoint inspect --path /var/lib/screening
  screening checkpoint inspect --redis-url redis://10.0.0.5:6379/0 --key-prefix screening:
  SCREENING_CONFIG=prod.toml screening checkpoint inspect --verify
"""


def add_checkpoint_command(sub: Any) -> None:
    p = sub.add_parser("checkpoint", help="inspect the saved state (checkpoints)",
                       description="Commands on the checkpoints a server writes to its store.")
    csub = p.add_subparsers(dest="checkpoint_command", required=True, metavar="ACTION")
    i = csub.add_parser("inspect", help="print the latest checkpoint's header (time, format, "
                                        "policy, counts, size)",
                        description=_DESCRIPTION, epilog=_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    where = i.add_mutually_exclusive_group()
    where.add_argument("--path", default=None,
                       help="file backend: the store directory (default: [storage] path)")
    where.add_argument("--redis-url", default=None,
                       help="Redis backend: redis://[:password@]host:port/db "
                            "(default: [storage] redis_url)")
    i.add_argument("--key-prefix", default=None,
                   help="Redis key prefix (default: [storage] key_prefix)")
    i.add_argument("--verify", action="store_true",
                   help="also read every part, check its checksum and every value a starting "
                        "server checks, under these settings (reads and loads the whole checkpoint)")
    i.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from screening.config import load_settings
    from screening.engine import Engine
    from screening.errors import CheckpointError, ConfigError
    from screening.policy import load_policy
    from screening.store import (
        decode,
        open_store,
        read_header,
        read_latest_header,
        restore_snapshot,
    )

    settings = load_settings(args.config, os.environ)
    storage = settings.storage
    if args.path:
        storage = type(storage)(backend="file", path=args.path)
    elif args.redis_url:
        storage = type(storage)(backend="redis", redis_url=args.redis_url,
                                key_prefix=args.key_prefix or storage.key_prefix)
    elif args.key_prefix is not None and storage.backend == "redis":
        storage = type(storage)(backend="redis", redis_url=storage.redis_url,
                                key_prefix=args.key_prefix)
    if storage.backend == "none":
        raise ConfigError("no store: pass --path DIR or --redis-url URL, or set [storage] backend "
                          "(SCREENING_STORAGE__BACKEND)")
    store = open_store(storage, create=False)
    assert store is not None
    superseded = 0
    try:
        while True:
            # header and parts through one reader: both describe the same checkpoint
            reader = store.open_checkpoint()
            if reader is None:
                print(f"no checkpoint in {store.location}")
                return 1
            with reader:
                header = read_header(reader)
                if not args.verify:
                    break
                try:
                    _, snap = decode(reader)
                    break
                except CheckpointError:
                    # a server may have written a newer checkpoint meanwhile and deleted the one
                    # being read (Redis keeps only the latest): verify the newer one instead
                    if superseded == 2 or read_latest_header(store) in (None, header):
                        raise
                    superseded += 1
        pending = len(store.read_journal(after=header.journal_seq))
        events = store.read_events(after=header.event_seq)
    finally:
        store.close()
    if args.verify:
        # what a starting server checks: every value, under this configuration's settings
        engine = Engine(settings, load_policy(settings.policy.file))
        notes = restore_snapshot(engine, header, snap)
        del engine, snap
    if superseded:
        print("(a newer checkpoint was written while verifying; verified that one)")
    written = dt.datetime.fromtimestamp(header.created_ms / 1000, dt.UTC)
    age = dt.datetime.now(dt.UTC) - written
    c = header.counts
    rows = [
        ("checkpoint", header.where),
        ("written", f"{written:%Y-%m-%d %H:%M:%S} UTC ({_ago(age)} ago)"),
        ("format", f"{header.format}" + (" (every part's checksum and every value verified: it "
                                         "restores under these settings)" if args.verify else "")),
        ("policy", header.policy_version),
        ("size", f"{header.size:,} bytes in {len(header.parts)} parts"),
        ("accounts", f"{c.get('accounts', 0):,}"),
        ("phones", f"{c.get('phones', 0):,}"),
        ("devices", f"{c.get('devices', 0):,}"),
        ("relationships", f"{c.get('pairs', 0):,}"),
        ("graph edges", f"{c.get('graph_edges', 0):,}"),
        ("decisions", f"{c.get('decisions', 0):,} remembered (duplicate ids recognised)"),
        ("calls", f"{c.get('calls', 0):,}"),
        ("watchlist", f"{c.get('watchlist', 0):,} entries"),
        ("ledger", f"{c.get('ledger_rows', 0):,} transactions in the report ledger"),
        ("journal", f"{pending} watchlist change(s), feedback and registry update(s) after this "
                    "checkpoint (applied at start); "
                    f"includes up to #{header.journal_seq}"),
        ("events", f"{len(events)} accepted request(s) after this checkpoint in the event journal "
                   f"(re-applied at start); includes up to #{header.event_seq}"),
    ]
    if args.verify:
        rows += [("note", note) for note in notes]
    for key, value in rows:
        print(f"{key:<14}{value}")
    sys.stdout.flush()
    return 0


def _ago(delta: dt.timedelta) -> str:
    s = int(delta.total_seconds())
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172_800:
        return f"{s // 3600} h"
    return f"{s // 86_400} days"
