"""Tokens: list (never a secret), revoke and rotate, and a running `screening serve` (over TLS)
that refuses a revoked token once it re-read the file: at once on SIGHUP, within
RELOAD_POLL_S when the file changes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from screening.auth import Authenticator, read_tokens, token_id
from screening.cli import main
from screening.client import ScreeningClient, transaction
from screening.errors import ConfigError
from screening.server import RELOAD_POLL_S
from screening.tls import ClientTls
from tests.conftest import free_port, recent, serve_process, uid


def _create(tokens: Path, capsys: pytest.CaptureFixture[str], role: str, name: str,
            *extra: str) -> str:
    assert main(["token", "create", "--role", role, "--name", name, "--file", str(tokens),
                 *extra]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]  # the token alone on its line


def _id(tokens: Path, name: str) -> str:
    return next(e.id for e in read_tokens(tokens) if e.name == name and not e.revoked)


def test_token_list_shows_ids_and_holders_never_a_token(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`token list` prints id, role, name, institution and dates; the tokens appear nowhere;
    revoked ones only with --all."""
    tokens = tmp_path / "tokens.toml"
    secrets = [_create(tokens, capsys, "bank", "bank-a core", "--institution", "BANK01"),
               _create(tokens, capsys, "police", "desk 7")]
    assert main(["token", "revoke", _id(tokens, "desk 7"), "--file", str(tokens)]) == 0
    capsys.readouterr()
    assert main(["token", "list", "--file", str(tokens)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "ROLE", "NAME", "INSTITUTION", "CREATED", "REVOKED"]
    assert len(lines) == 2 and "bank-a core" in lines[1] and "BANK01" in lines[1]
    assert _id(tokens, "bank-a core") in lines[1]
    assert main(["token", "list", "--all", "--file", str(tokens)]) == 0
    everything = capsys.readouterr().out
    assert "desk 7" in everything and len(everything.splitlines()) == 3
    for secret in secrets:
        assert secret not in out and secret not in everything
        assert secret not in tokens.read_text()
    assert oct(tokens.stat().st_mode & 0o777) == "0o600"


def test_revoke_and_rotate_change_what_the_file_accepts(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A revoked token is refused by the file's Authenticator; a rotated one is replaced by a
    new token with the same role, name and institution."""
    tokens = tmp_path / "tokens.toml"
    a = _create(tokens, capsys, "bank", "a", "--institution", "BANK01")
    b = _create(tokens, capsys, "bank", "b", "--institution", "BANK02")

    def who(token: str) -> tuple[str, str, str] | None:
        c = Authenticator.from_file(tokens).caller((("authorization", f"Bearer {token}"),))
        return None if c is None else (c.name, c.role, c.institution)

    assert main(["token", "revoke", _id(tokens, "a")[:8], "--file", str(tokens)]) == 0
    assert who(a) is None and who(b) == ("b", "bank", "BANK02")
    assert main(["token", "rotate", _id(tokens, "b"), "--file", str(tokens)]) == 0
    captured = capsys.readouterr()
    new = captured.out.strip().splitlines()[-1]
    assert "shown once" in captured.err and new not in captured.err
    assert who(b) is None and who(new) == ("b", "bank", "BANK02")
    entries = read_tokens(tokens)
    assert [(e.name, bool(e.revoked)) for e in entries] == [("a", True), ("b", True), ("b", False)]
    # a revoked token cannot be revoked or rotated again; ids must be long enough and unique
    assert main(["token", "rotate", entries[0].id, "--file", str(tokens)]) == 2
    assert "was revoked at" in capsys.readouterr().err
    assert main(["token", "revoke", "abc", "--file", str(tokens)]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    assert main(["token", "revoke", "0" * 12, "--file", str(tokens)]) == 2
    assert "no token with id" in capsys.readouterr().err


def test_a_misspelt_key_in_the_tokens_file_is_an_error(tmp_path: Path) -> None:
    """`revokd = ...` must not leave a token valid: the file is refused naming the key."""
    tokens = tmp_path / "tokens.toml"
    digest = "ab" * 32
    tokens.write_text(f'[tokens]\n"{digest}" = {{ role = "bank", revokd = "2026-12-01" }}\n')
    with pytest.raises(ConfigError, match=rf"token {token_id(digest)}: unknown key 'revokd'"):
        Authenticator.from_file(tokens)


def test_token_commands_refuse_a_file_that_is_not_a_tokens_file(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]
                                                                ) -> None:
    """Pointing `token create` at a config file changes nothing in it."""
    config = tmp_path / "screening.toml"
    config.write_text("[server]\nport = 1\n")
    assert main(["token", "create", "--role", "bank", "--name", "x", "--file", str(config)]) == 2
    assert "not a tokens file" in capsys.readouterr().err
    assert config.read_text() == "[server]\nport = 1\n"


def _refused_within(address: str, token: str, tls: ClientTls, seconds: float) -> float:
    """Seconds until a call with ``token`` is UNAUTHENTICATED (fails past ``seconds``)."""
    t0 = time.monotonic()
    with ScreeningClient(address, token, tls=tls) as c:
        while True:
            try:
                c.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc.details()
                return time.monotonic() - t0
            assert time.monotonic() - t0 < seconds, f"still accepted after {seconds} s"
            time.sleep(0.05)


def test_serve_refuses_revoked_tokens_after_sighup_and_after_the_file_changes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`screening serve --tls-cert/--tls-key --tokens`: a token revoked and SIGHUP sent is
    refused at once; a token rotated with no signal is refused within RELOAD_POLL_S, and the
    new one is accepted; each reload is logged with its trigger."""
    certs = tmp_path / "certs"
    assert main(["certs", "dev", "--out", str(certs)]) == 0
    tokens = tmp_path / "tokens.toml"
    a = _create(tokens, capsys, "bank", "bank-a", "--institution", "BANK01")
    b = _create(tokens, capsys, "bank", "bank-b", "--institution", "BANK02")
    tls = ClientTls(str(certs / "ca.pem"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    seen: dict[str, float] = {}

    def scenario(client: ScreeningClient, proc: subprocess.Popen[str]) -> None:
        for token in (a, b):
            with ScreeningClient(address, token, tls=tls) as c:
                c.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
        assert main(["token", "revoke", _id(tokens, "bank-a"), "--file", str(tokens)]) == 0
        proc.send_signal(signal.SIGHUP)
        seen["sighup"] = _refused_within(address, a, tls, 5.0)
        assert main(["token", "rotate", _id(tokens, "bank-b"), "--file", str(tokens)]) == 0
        new = capsys.readouterr().out.strip().splitlines()[-1]
        seen["changed"] = _refused_within(address, b, tls, RELOAD_POLL_S + 3.0)
        with ScreeningClient(address, new, tls=tls) as c:
            c.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))

    code, err = serve_process(["--tokens", str(tokens), "--tls-cert", str(certs / "server.pem"),
                               "--tls-key", str(certs / "server.key")], port, lambda c: None,
                              token=a, tls=tls, signals=scenario)
    assert code == 0, err[-2000:]
    logged = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    reloads = [e for e in logged if e["event"] == "auth_reloaded"]
    assert [e["by"] for e in reloads] == ["SIGHUP", "file changed"]
    assert (reloads[0]["active"], reloads[0]["revoked"]) == (1, 1)
    assert (reloads[1]["active"], reloads[1]["revoked"]) == (1, 2)
    assert not any(e["event"] == "plaintext" for e in logged)
    assert seen["changed"] <= RELOAD_POLL_S + 3.0


def test_a_tokens_file_that_no_longer_loads_keeps_the_tokens_in_use(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken edit is logged (naming the file) and the server goes on with the tokens it had."""
    tokens = tmp_path / "tokens.toml"
    a = _create(tokens, capsys, "bank", "bank-a", "--institution", "BANK01")

    def scenario(client: ScreeningClient, proc: subprocess.Popen[str]) -> None:
        tokens.write_text(tokens.read_text() + "this is not toml\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        client.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))

    code, err = serve_process(["--tokens", str(tokens)], free_port(), lambda c: None, token=a,
                              signals=scenario)
    assert code == 0, err[-2000:]
    refused = [json.loads(x) for x in err.splitlines() if '"auth_refused"' in x]
    assert refused and str(tokens) in refused[0]["error"]
