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
    """Checkpoint, journals, writer lock and kept policies are created 0600 (directories
    0700)."""
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
    assert {"checkpoint.ckpt", "watchlist.journal", "writer.lock", "policies"} <= set(names)
    assert any((state / "policies").glob("*.toml"))  # the running policy's text
    for p in [state, *state.rglob("*")]:
        want = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.stat().st_mode) == want, (p.name, oct(p.stat().st_mode))
