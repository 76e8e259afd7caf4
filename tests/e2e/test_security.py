"""Security details through real servers: raw bytes decoded only after auth, the bearer scheme,
throttled token guessing, token names that survive the tokens file, and `--no-auth` kept on
loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from screening.auth import Authenticator, add_token
from screening.client import ScreeningClient, transaction
from screening.config import load_settings
from screening.v1 import screening_pb2 as pb
from tests.conftest import (
    TOKENS,
    Live,
    _start,
    _stop,
    free_port,
    reap,
    recent,
    serve_process,
    server_env,
    uid,
)

BANK = next(t for t, (_, role, *_) in TOKENS.items() if role == "bank")
GARBAGE = b"\xff\xff\xff\x07garbage"


def _raw_unary(live: Live, method: str, md: tuple[tuple[str, str], ...]) -> grpc.RpcError:
    call = live.bank.channel.unary_unary(f"/screening.v1.Screening/{method}",
                                         request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        call(GARBAGE, metadata=md, timeout=10)
    return info.value


def test_undecodable_bytes_are_invalid_argument_and_only_after_auth(live: Live) -> None:
    """Garbage bytes: INVALID_ARGUMENT naming the request for a valid caller, UNAUTHENTICATED without."""
    for method in ("ScreenTransaction", "ScreenBatch", "ReportCall", "QueryAccount"):
        err = _raw_unary(live, method, (("authorization", "Bearer test-token-admin"),))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.details())
        assert (err.details() or "").startswith("request:")
        assert _raw_unary(live, method, ()).code() == grpc.StatusCode.UNAUTHENTICATED
    stream = live.bank.channel.stream_stream("/screening.v1.Screening/ScreenStream",
                                             request_serializer=None, response_deserializer=None)
    good = transaction(uid("t"), recent(), uid("a"), uid("b"), 100).SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        list(stream(iter([good, GARBAGE]), metadata=live.bank.metadata, timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("message 1")
    with pytest.raises(grpc.RpcError) as info:
        list(stream(iter([GARBAGE]), timeout=10))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bearer_scheme_is_case_insensitive(live: Live) -> None:
    """`authorization: bearer TOKEN` (RFC 6750: the scheme is case-insensitive) is accepted."""
    for scheme in ("bearer", "BEARER", "Bearer"):
        d = live.bank.stub.ScreenTransaction(
            transaction(uid("t"), recent(), uid("a"), uid("b"), 100),
            metadata=(("authorization", f"{scheme} {BANK}"),), timeout=10)
        assert d.action == pb.ACTION_ALLOW


@pytest.fixture()
def strict() -> Iterator[Live]:
    """A server that blocks an address after 3 failed token attempts."""
    srv = _start(load_settings(overrides={"log": {"level": "debug"},
                                          "auth": {"max_failures": 3, "block_seconds": 30.0}}))
    yield srv
    _stop(srv)


def test_failed_token_attempts_block_the_address_and_are_logged_with_it(strict: Live) -> None:
    """3 wrong tokens from one address: its next guesses are RESOURCE_EXHAUSTED; a valid token
    from the same address (another institution behind the same NAT) is still served."""
    txn = transaction(uid("t"), recent(), uid("a"), uid("b"), 100)
    with ScreeningClient(strict.server.address, "guess") as guesser:
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as info:
                guesser.screen(txn)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            guesser.screen(txn)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_failures" in (info.value.details() or "")
    # the right token, from the blocked address: served
    assert strict.bank.screen(txn).action == pb.ACTION_ALLOW
    with ScreeningClient(strict.server.address, "guess again") as guesser, \
            pytest.raises(grpc.RpcError) as info:
        guesser.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # still blocked
    with ScreeningClient(strict.server.address) as c:
        assert c.is_serving()  # health stays open
    denied = [json.loads(x) for x in strict.log.getvalue().splitlines() if "access_denied" in x]
    assert len(denied) >= 5
    assert all(d["peer"].startswith(("ipv4:127.0.0.1:", "ipv6:[::1]:")) for d in denied)
    assert [d["outcome"] for d in denied[:4]] == ["unauthenticated"] * 3 + ["throttled"]


NASTY_NAMES = ["ends with a backslash \\", 'say "hi"', "two\nlines", "tab\tand \\n literal",
               "bank-a \\\\ core", "unicode 银行 ✓", "\x7f\x01 control", "'single' ''' quotes"]


def test_token_names_round_trip_through_the_tokens_file(tmp_path: Path) -> None:
    """Whatever the name, the file `token create` writes loads again with the same name."""
    path = tmp_path / "tokens.toml"
    tokens = {add_token(path, "bank", name): name for name in NASTY_NAMES}
    auth = Authenticator.from_file(path)
    for token, name in tokens.items():
        caller = auth.caller((("authorization", f"Bearer {token}"),))
        assert caller is not None and caller.name == name


def test_server_starts_with_a_token_whose_name_ends_in_a_backslash(tmp_path: Path) -> None:
    """`screening token create --name 'core\\'`, then `screening serve` accepts the token."""
    tokens = tmp_path / "tokens.toml"
    out = subprocess.run([sys.executable, "-m", "screening", "token", "create", "--role", "bank",
                          "--name", 'bank "a" core\\', "--file", str(tokens)],
                         capture_output=True, text=True, timeout=60, check=True)
    token = out.stdout.strip().splitlines()[-1]
    decisions: list[pb.Decision] = []
    code, err = serve_process(["--tokens", str(tokens)], free_port(),
                              lambda c: decisions.append(
                                  c.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 10))),
                              token=token)
    assert code == 0, err[-2000:]
    assert decisions and decisions[0].action == pb.ACTION_ALLOW


def _serve_no_auth(port: int, *extra: str) -> subprocess.Popen[str]:
    env = server_env()
    return subprocess.Popen([sys.executable, "-m", "screening", "serve", "--no-auth", "--host",
                             "0.0.0.0", "--port", str(port), *extra],
                            env=env, stderr=subprocess.PIPE, text=True)


def test_no_auth_refuses_to_bind_beyond_loopback_unless_forced() -> None:
    """`--no-auth --host 0.0.0.0` exits 2 naming the flag; with --allow-insecure-bind (and
    --allow-plaintext: no TLS either) it serves."""
    proc = _serve_no_auth(free_port())
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("--no-auth on 0.0.0.0 started serving")
    assert proc.returncode == 2
    assert "--allow-insecure-bind" in err and "0.0.0.0" in err
    port = free_port()
    proc = _serve_no_auth(port, "--allow-insecure-bind", "--allow-plaintext")
    try:
        with ScreeningClient(f"127.0.0.1:{port}") as c:
            c.wait_ready(120)
            deadline = time.monotonic() + 120
            while not c.is_serving():
                assert time.monotonic() < deadline
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        reap(proc)
    assert proc.returncode == 0
    assert '"insecure_bind"' in err and '"plaintext"' in err
