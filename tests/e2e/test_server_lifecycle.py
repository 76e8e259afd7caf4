"""A stopped server lets go of its state: a process that starts servers one after another (the
test suite, an embedding application) does not keep each one's feature state and graph."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from screening.client import transaction
from screening.config import load_settings
from tests.conftest import _start, _stop, recent, uid


def test_a_stopped_server_with_a_store_and_metrics_leaves_nothing_alive(tmp_path: Path) -> None:
    """With a file store (the event journal, its metrics) and a shadow policy: after stop, and
    the collector's pass, the engine is gone. Start froze its long-lived objects (gc.freeze);
    stop must undo that, or any reference cycle among them keeps the whole state alive."""
    shadow = tmp_path / "candidate.toml"
    shadow.write_text((Path(__file__).parents[2] / "screening" / "default_policy.toml")
                      .read_text(encoding="utf-8"), encoding="utf-8")
    live = _start(load_settings(overrides={
        "metrics": {"port": 0},
        "storage": {"backend": "file", "path": str(tmp_path / "store")},
        "policy": {"shadow_files": str(shadow)}}))
    live.bank.screen(transaction(uid("t"), recent(), uid("a"), uid("m"), 100))
    engine = weakref.ref(live.server.engine)
    _stop(live)
    del live
    gc.collect()
    assert engine() is None
