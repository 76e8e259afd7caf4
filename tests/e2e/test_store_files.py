"""The file store's files are private to the server's user, through a real server."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from screening.client import transaction, watch_entry
from screening.config import load_settings
from screening.v1 import screening_pb2 as pb
from tests.conftest import _start, _stop, recent, uid


def test_file_store_files_are_private(tmp_path: Path) -> None:
    """Checkpoint, journal and writer lock are created 0600 (the directory 0700)."""
    old = os.umask(0o022)
    try:
        live = _start(load_settings(overrides={"storage": {
            "backend": "file", "path": str(tmp_path / "state"), "checkpoint_interval_s": 0.0}}))
        try:
            live.police.update_watchlist([watch_entry(pb.ENTITY_KIND_ACCOUNT, uid("m"), "r", "s")])
            live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
        finally:
            _stop(live)
    finally:
        os.umask(old)
    state = tmp_path / "state"
    names = sorted(p.name for p in state.iterdir())
    assert {"checkpoint.ckpt", "watchlist.journal", "writer.lock"} <= set(names)
    for p in state.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p.name, oct(p.stat().st_mode))
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
