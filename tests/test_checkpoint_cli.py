"""Durable state from the command line: SIGTERM writes a checkpoint, `checkpoint inspect` reads it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from screening.cli import main
from screening.client import transaction
from screening.config import load_settings
from screening.store import FORMAT_VERSION
from tests.conftest import RedisProcess, free_port, recent, serve_process, server_env


def _env(**storage: str) -> dict[str, str]:
    env = server_env()
    env.update({f"SCREENING_STORAGE__{k.upper()}": v for k, v in storage.items()})
    return env


def test_sigterm_writes_a_checkpoint_that_inspect_describes(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`screening serve` with a file store checkpoints on SIGTERM; `checkpoint inspect` shows it."""
    state = tmp_path / "state"
    status, err = serve_process(
        ["--no-auth"], free_port(),
        lambda client: client.screen(
            transaction("cli-ck-1", recent(), "6222000011112222", "6222000033334444", 100)),
        env=_env(backend="file", path=str(state)))
    assert status == 0
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert names.index("checkpoint_saved") < names.index("stopped")
    assert "6222000011112222" not in err

    assert main(["checkpoint", "inspect", "--path", str(state), "--verify"]) == 0
    out = capsys.readouterr().out
    assert f"format        {FORMAT_VERSION} (every part's checksum and every value verified" in out
    assert "accounts      2" in out and "decisions     1 remembered" in out
    assert str(state / "checkpoint.ckpt") in out


def test_inspect_without_a_checkpoint_says_so(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """An empty store: a plain message and exit status 1."""
    assert main(["checkpoint", "inspect", "--path", str(tmp_path)]) == 1
    assert "no checkpoint in file" in capsys.readouterr().out


def test_inspect_help_explains_the_output() -> None:
    """`checkpoint inspect --help` says what is printed, where the store comes from, exit codes."""
    with pytest.raises(SystemExit) as info:
        main(["checkpoint", "inspect", "--help"])
    assert info.value.code == 0


def test_serve_with_unreachable_redis_exits_with_one_line(tmp_path: Path) -> None:
    """Redis down at start: exit status 2 and one line naming the store, no stack trace."""
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "screening", "serve", "--no-auth", "--port", "0"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=_env(backend="redis", redis_url=f"redis://:hunter2@127.0.0.1:{port}/0"))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"screening: storage redis redis://:***@127.0.0.1:{port}/0")
    assert "Traceback" not in proc.stderr and "hunter2" not in proc.stderr


@pytest.mark.redis
def test_verify_follows_a_checkpoint_written_while_it_reads(
        redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Redis keeps only the latest checkpoint: when a server writes a new one while `inspect
    --verify` reads the old one, the old one's chunks go; inspect verifies the new one instead of
    reporting a missing chunk."""
    from screening import store as store_mod
    from tests.store.conftest import busy_engine

    prefix = "cli-verify:"
    writer = store_mod.RedisStore(redis_server.url, prefix, chunk_bytes=64 * 1024)
    writer.claim_writer("test")
    store_mod.save_checkpoint(busy_engine(n=50), writer)
    real_decode = store_mod.decode
    calls = []

    def decode_after_a_new_checkpoint(reader):  # type: ignore[no-untyped-def]
        if not calls:
            store_mod.save_checkpoint(busy_engine(n=80), writer)  # deletes the one being read
        calls.append(reader.where)
        return real_decode(reader)

    monkeypatch.setattr(store_mod, "decode", decode_after_a_new_checkpoint)
    try:
        assert main(["checkpoint", "inspect", "--redis-url", redis_server.url, "--key-prefix",
                     prefix, "--verify"]) == 0
    finally:
        writer.close()
    out = capsys.readouterr().out
    assert len(calls) == 2 and calls[0] != calls[1]
    assert "verified that one" in out and "decisions     80 remembered" in out


def test_verify_checks_values_as_a_starting_server_would(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Checksums right, a graph list head past the last edge: --verify refuses it (exit 2, one
    line naming the file and the array), as `screening serve` would at start."""
    from graph import _kernels as gk
    from screening.store import FileStore, encode
    from tests.store.conftest import busy_engine

    engine = busy_engine(n=100)
    snap = engine.snapshot()
    snap.capacities["recent_width"] = load_settings().state.recent_decisions_per_account
    width = snap.capacities["recent_width"]
    snap.arrays["recent"] = np.full((len(snap.accounts), width), -1, dtype=np.int64)
    with FileStore(tmp_path) as store:
        store.write_checkpoint(encode(snap).pieces)
    assert main(["checkpoint", "inspect", "--path", str(tmp_path), "--verify"]) == 0
    capsys.readouterr()
    n32 = snap.arrays["graph.n32"].copy()
    n32[0, gk.N_HEAD_OUT] = 10**6
    snap.arrays["graph.n32"] = n32
    with FileStore(tmp_path) as store:
        store.write_checkpoint(encode(snap).pieces)
    assert main(["checkpoint", "inspect", "--path", str(tmp_path)]) == 0  # the header is fine
    capsys.readouterr()
    assert main(["checkpoint", "inspect", "--path", str(tmp_path), "--verify"]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {tmp_path / 'checkpoint.ckpt'}: does not fit this build: graph: an " \
           "out-list pointer is not an edge" in err
