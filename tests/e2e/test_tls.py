"""TLS and mutual TLS through real servers on port 0 with certificates `screening certs dev`
made: the handshake, who is refused before any call (no certificate, another CA, plaintext),
the role a client certificate names, and every RPC allowed and denied per role, under mutual
TLS and under bearer tokens (over TLS)."""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import json
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from screening.auth import PERMISSIONS, ROLES, Authenticator
from screening.certs import DEV_INSTITUTIONS, Issued, issue_certificate, new_authority
from screening.cli import main
from screening.client import ScreeningClient, transaction, watch_entry
from screening.config import Settings, load_settings
from screening.errors import ConfigError
from screening.logs import configure_logging
from screening.server import RELOAD_POLL_S, RunningServer, start_server
from screening.tls import ClientTls
from screening.v1 import screening_pb2 as pb
from tests.conftest import TOKENS, free_port, recent, serve_process, uid

METHODS = sorted(PERMISSIONS)  # "/screening.v1.Screening/NAME"


@dataclass
class Pki:
    dir: Path

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def client(self, role: str) -> ClientTls:
        return ClientTls(self.path("ca.pem"), self.path(f"client-{role}.pem"),
                         self.path(f"client-{role}.key"))

    def authority(self) -> Issued:
        key = serialization.load_pem_private_key((self.dir / "ca.key").read_bytes(), None)
        assert isinstance(key, type(new_authority("x", days=1, now=dt.datetime.now(dt.UTC)).key))
        return Issued(x509.load_pem_x509_certificate((self.dir / "ca.pem").read_bytes()), key)

    def write_client(self, stem: str, issued: Issued) -> ClientTls:
        (self.dir / f"{stem}.pem").write_bytes(issued.cert_pem())
        (self.dir / f"{stem}.key").write_bytes(issued.key_pem())
        return ClientTls(self.path("ca.pem"), self.path(f"{stem}.pem"), self.path(f"{stem}.key"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate and a client certificate per role, by `screening certs dev`."""
    out = tmp_path_factory.mktemp("pki") / "certs"
    assert main(["certs", "dev", "--out", str(out)]) == 0
    return Pki(out)


def _tls_settings(pki: Pki, mutual: bool, **extra: object) -> Settings:
    tls = {"cert_file": pki.path("server.pem"), "key_file": pki.path("server.key"),
           "client_ca_file": pki.path("ca.pem") if mutual else ""}
    return load_settings(overrides={"tls": tls, "log": {"level": "debug"},
                                    "state": {"initial_accounts": 256}, **extra})


@dataclass
class TlsServer:
    running: RunningServer
    log: io.StringIO

    @property
    def address(self) -> str:
        return self.running.address


def _start(settings: Settings, auth: Authenticator | None = None) -> TlsServer:
    log = io.StringIO()
    masker = configure_logging(settings.log, stream=log)
    return TlsServer(start_server(settings, masker=masker, auth=auth, port=0), log)


@pytest.fixture(scope="module")
def mtls(pki: Pki) -> Iterator[TlsServer]:
    """Mutual TLS: callers known by their client certificates."""
    srv = _start(_tls_settings(pki, mutual=True))
    yield srv
    srv.running.stop(0.5)


@pytest.fixture(scope="module")
def tls_tokens(pki: Pki) -> Iterator[TlsServer]:
    """TLS (the server's certificate only): callers known by their bearer tokens."""
    # the tests call without a token many times from one address: no throttling here
    srv = _start(_tls_settings(pki, mutual=False, auth={"max_failures": 0}),
                 Authenticator.with_tokens(TOKENS))
    yield srv
    srv.running.stop(0.5)


def _local_day() -> str:
    """The local day (UTC+8, the default policy's) of ``recent()``: the ledger's days are local,
    so after 16:00 UTC the UTC date is a day behind."""
    return recent().astimezone(dt.timezone(dt.timedelta(hours=8))).date().isoformat()


def _token(role: str) -> str:
    return next(t for t, (_, r, *_) in TOKENS.items() if r == role)


# ------------------------------------------------------------------------- the certificates
def test_certs_dev_writes_a_ca_a_server_and_a_client_per_role_with_private_keys(pki: Pki) -> None:
    """Keys are 0600 in a 0700 directory; the server certificate is for localhost and
    127.0.0.1; each client certificate's OU is its role, signed by the CA."""
    assert stat.S_IMODE(pki.dir.stat().st_mode) == 0o700
    keys = sorted(pki.dir.glob("*.key"))
    assert len(keys) == 2 + len(ROLES)
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    ca = x509.load_pem_x509_certificate((pki.dir / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((pki.dir / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    for role in ROLES:
        cert = x509.load_pem_x509_certificate((pki.dir / f"client-{role}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        assert [a.value for a in ou] == [role]
        o = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        assert o == ([DEV_INSTITUTIONS[role]] if role in DEV_INSTITUTIONS else [])
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


# ------------------------------------------------------------------------- the handshake
def test_tls_server_answers_a_tls_client_with_a_token(tls_tokens: TlsServer, pki: Pki) -> None:
    """Over TLS (server certificate checked against the dev CA) a bank token screens."""
    with ScreeningClient(tls_tokens.address, _token("bank"),
                         tls=ClientTls(pki.path("ca.pem"))) as c:
        assert c.is_serving()
        d = c.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
        assert d.action == pb.ACTION_ALLOW
    assert '"tls"' in tls_tokens.log.getvalue()


def test_plaintext_client_is_refused_by_a_tls_server(tls_tokens: TlsServer, mtls: TlsServer) -> None:
    """A plaintext channel to a TLS port never gets to a call (not even health)."""
    for srv in (tls_tokens, mtls):
        with ScreeningClient(srv.address, _token("admin"), timeout=5) as c:
            with pytest.raises(grpc.RpcError) as info:
                c.is_serving()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_that_does_not_trust_the_server_certificate_is_refused(tls_tokens: TlsServer,
                                                                      tmp_path: Path) -> None:
    """A client checking against another CA refuses the server's certificate."""
    other = new_authority("another CA", days=1, now=dt.datetime.now(dt.UTC))
    (tmp_path / "other.pem").write_bytes(other.cert_pem())
    with ScreeningClient(tls_tokens.address, _token("bank"), timeout=5,
                         tls=ClientTls(str(tmp_path / "other.pem"))) as c:
        with pytest.raises(grpc.RpcError) as info:
            c.is_serving()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_client_without_a_certificate(mtls: TlsServer, pki: Pki) -> None:
    """Under mutual TLS a client with no certificate fails the handshake, token or not."""
    with ScreeningClient(mtls.address, _token("admin"), timeout=5,
                         tls=ClientTls(pki.path("ca.pem"))) as c:
        with pytest.raises(grpc.RpcError) as info:
            c.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_certificate_from_another_ca(mtls: TlsServer, pki: Pki,
                                                          tmp_path: Path) -> None:
    """A client certificate signed by a CA the server does not trust fails the handshake."""
    now = dt.datetime.now(dt.UTC)
    rogue = issue_certificate(new_authority("rogue CA", days=1, now=now), "rogue-police",
                              days=1, now=now, role="police")
    tls = Pki(tmp_path).write_client("rogue", rogue)
    with ScreeningClient(mtls.address, timeout=5,
                         tls=ClientTls(pki.path("ca.pem"), tls.cert_file, tls.key_file)) as c:
        with pytest.raises(grpc.RpcError) as info:
            c.query_account("6222-x")
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


# ------------------------------------------------------------------------- roles from certificates
def test_bank_certificate_cannot_update_the_watchlist_and_police_can(mtls: TlsServer,
                                                                     pki: Pki) -> None:
    """The certificate's OU is the role: bank screens but may not list; police lists."""
    entry = watch_entry(pb.ENTITY_KIND_ACCOUNT, uid("acct"), "case 7", "police")
    with ScreeningClient(mtls.address, tls=pki.client("bank")) as bank:
        assert bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100)).action == \
            pb.ACTION_ALLOW
        with pytest.raises(grpc.RpcError) as info:
            bank.update_watchlist([entry])
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert info.value.details() == "role 'bank' may not call UpdateWatchlist"
    with ScreeningClient(mtls.address, tls=pki.client("police")) as police:
        assert police.update_watchlist([entry]).added == 1
    denied = [json.loads(x) for x in mtls.log.getvalue().splitlines() if "access_denied" in x]
    assert any(d["role"] == "bank" and d["method"].endswith("UpdateWatchlist") for d in denied)


def test_certificate_name_and_institution_are_the_caller_s(mtls: TlsServer, pki: Pki) -> None:
    """CN is the name the server logs; O is the institution a bank reports for."""
    with ScreeningClient(mtls.address, tls=pki.client("bank")) as bank:
        bank.large_value_report(_local_day(), ["BANK01"])
        with pytest.raises(grpc.RpcError) as info:
            bank.large_value_report(_local_day(), ["BANK02"])
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "'BANK02' is not this caller's institution" in (info.value.details() or "")
    with ScreeningClient(mtls.address, tls=pki.client("police")) as police:
        police.query_account(uid("acct"))
    queried = [json.loads(x) for x in mtls.log.getvalue().splitlines() if "account_queried" in x]
    assert queried and queried[-1]["by"] == "dev-police" and queried[-1]["role"] == "police"


@pytest.mark.parametrize(("ou", "why"), [("nobody", "OU must be one role"),
                                         ("", "OU must be one role")])
def test_certificate_naming_no_role_is_unauthenticated(mtls: TlsServer, pki: Pki, ou: str,
                                                       why: str) -> None:
    """A certificate of the trusted CA whose OU is not a role is refused, saying so."""
    cert = issue_certificate(pki.authority(), "odd", days=1, now=dt.datetime.now(dt.UTC), role=ou)
    with ScreeningClient(mtls.address, tls=pki.write_client(f"odd-{ou or 'none'}", cert)) as c:
        with pytest.raises(grpc.RpcError) as info:
            c.query_account("6222-x")
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert why in (info.value.details() or "") and "CN=odd" in (info.value.details() or "")
        assert c.is_serving()  # health stays open


def test_screen_stream_under_mutual_tls(mtls: TlsServer, pki: Pki) -> None:
    """The stream handler checks the certificate too: bank decides, telecom is refused."""
    txns = [transaction(uid("t"), recent(), uid("a"), uid("b"), 100) for _ in range(3)]
    with ScreeningClient(mtls.address, tls=pki.client("bank")) as bank:
        assert [d.transaction_id for d in bank.screen_stream(txns)] == [t.transaction_id for t in txns]
    with ScreeningClient(mtls.address, tls=pki.client("telecom")) as telecom:
        with pytest.raises(grpc.RpcError) as info:
            list(telecom.screen_stream(txns))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


# ------------------------------------------------------------------------- every RPC, every role
def _call_empty(client: ScreeningClient, method: str) -> grpc.RpcError | None:
    """Call ``method`` with an empty request (an empty message); the error, or None."""
    name = method.rsplit("/", 1)[-1]
    desc = pb.DESCRIPTOR.services_by_name["Screening"].methods_by_name[name]
    try:
        if desc.client_streaming:
            call = client.channel.stream_stream(method, request_serializer=None,
                                                response_deserializer=None)
            list(call(iter([b""]), metadata=client.metadata, timeout=10))
        else:
            client.channel.unary_unary(method, request_serializer=None,
                                       response_deserializer=None)(
                b"", metadata=client.metadata, timeout=10)
    except grpc.RpcError as exc:
        return exc
    return None


def _assert_role_decides(client: ScreeningClient, role: str, method: str) -> None:
    err = _call_empty(client, method)
    if role in PERMISSIONS[method]:  # let in: whatever it answers, it is not about the caller
        assert err is None or err.code() not in (grpc.StatusCode.UNAUTHENTICATED,
                                                 grpc.StatusCode.PERMISSION_DENIED), \
            (role, method, err.code(), err.details())
    else:
        assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED, (role, method)
        assert err.details() == f"role '{role}' may not call {method.rsplit('/', 1)[-1]}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", METHODS)
def test_every_rpc_is_allowed_or_denied_per_role_under_mutual_tls(mtls: TlsServer, pki: Pki,
                                                                 role: str, method: str) -> None:
    """Each role's certificate is let into exactly the RPCs the permission table gives it."""
    with ScreeningClient(mtls.address, tls=pki.client(role)) as c:
        _assert_role_decides(c, role, method)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", METHODS)
def test_every_rpc_is_allowed_or_denied_per_role_with_tokens(tls_tokens: TlsServer, pki: Pki,
                                                            role: str, method: str) -> None:
    """Each role's token (over TLS) is let into exactly the RPCs the permission table gives it;
    what it answers otherwise is not about the caller."""
    with ScreeningClient(tls_tokens.address, _token(role), tls=ClientTls(pki.path("ca.pem"))) as c:
        _assert_role_decides(c, role, method)


@pytest.mark.parametrize("method", METHODS)
def test_every_rpc_refuses_a_caller_without_a_token(tls_tokens: TlsServer, pki: Pki,
                                                    method: str) -> None:
    """Over TLS without mutual TLS, no token, or one never issued, is UNAUTHENTICATED."""
    for token in (None, "test-token-never-issued"):
        with ScreeningClient(tls_tokens.address, token, tls=ClientTls(pki.path("ca.pem"))) as c:
            err = _call_empty(c, method)
            assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_permission_table_says_what_the_readme_says() -> None:
    """Anchors of the README's table, so a change to PERMISSIONS is a decision, not a slip."""
    allowed = {m.rsplit("/", 1)[-1]: r for m, r in PERMISSIONS.items()}
    assert allowed["UpdateWatchlist"] == {"police", "regulator", "admin"}
    assert allowed["ReloadPolicy"] == {"admin"}
    assert allowed["ReportCall"] == {"telecom", "admin"}
    assert allowed["ScreenTransaction"] == allowed["ScreenStream"] == allowed["ScreenBatch"] == \
        {"bank", "payment", "admin"}
    assert allowed["SubmitFeedback"] == {"bank", "payment", "police", "admin"}
    assert set(allowed) == set(pb.DESCRIPTOR.services_by_name["Screening"].methods_by_name)


# ------------------------------------------------------------------------- what start-up refuses
def test_plaintext_beyond_loopback_needs_allow_plaintext(pki: Pki) -> None:
    """No certificate on 0.0.0.0: refused naming the settings; with allow_plaintext it serves,
    logging the warning."""
    base = {"server": {"host": "0.0.0.0"}}
    with pytest.raises(ConfigError, match=r"--allow-plaintext \(\[tls\] allow_plaintext\)"):
        start_server(load_settings(overrides=base), auth=Authenticator.with_tokens(TOKENS), port=0)
    settings = load_settings(overrides={**base, "tls": {"allow_plaintext": True}})
    srv = _start(settings, Authenticator.with_tokens(TOKENS))
    try:
        with ScreeningClient(srv.address, _token("bank")) as c:
            assert c.is_serving()
        assert '"plaintext"' in srv.log.getvalue() and '"0.0.0.0"' in srv.log.getvalue()
    finally:
        srv.running.stop(0.5)


def test_the_flight_port_is_held_to_the_same_bind_rules() -> None:
    """The Arrow Flight endpoint takes the same tokens: on a non-loopback [flight] host without
    TLS it is refused like the gRPC port (naming [flight] host), and without auth too, before
    anything listens."""
    pytest.importorskip("pyarrow.flight")
    flight = {"flight": {"port": 0, "host": "0.0.0.0"}}
    flight_refused = r"0\.0\.0\.0 \(Arrow Flight port, \[flight\] host\).*--allow-plaintext"
    with pytest.raises(ConfigError, match=flight_refused):
        start_server(load_settings(overrides=flight), auth=Authenticator.with_tokens(TOKENS), port=0)
    no_auth = load_settings(overrides={**flight, "auth": {"enabled": False},
                                       "tls": {"allow_plaintext": True}})
    with pytest.raises(ConfigError, match=r"every caller admin.*Arrow Flight port.*--allow-insecure-bind"):
        start_server(no_auth, port=0)


def test_tls_setting_problems_stop_start_up_naming_the_setting(pki: Pki, tmp_path: Path) -> None:
    """Half a pair, a missing file, a key of another certificate, an expired certificate, and
    mutual TLS with tokens or without auth: each a ConfigError naming what to fix."""
    with pytest.raises(ConfigError, match=r"\[tls\] cert_file and key_file: give both"):
        load_settings(env={"SCREENING_TLS__CERT_FILE": pki.path("server.pem")})
    with pytest.raises(ConfigError, match=r"\[tls\] client_ca_file: mutual TLS needs"):
        load_settings(env={"SCREENING_TLS__CLIENT_CA_FILE": pki.path("ca.pem")})

    def start(**tls: str) -> None:
        files = {"cert_file": pki.path("server.pem"), "key_file": pki.path("server.key")} | tls
        start_server(load_settings(overrides={"tls": files}),
                     auth=Authenticator.with_tokens(TOKENS), port=0)

    with pytest.raises(ConfigError, match=r"\[tls\] key_file .*nope.key: not found"):
        start(key_file=str(tmp_path / "nope.key"))
    with pytest.raises(ConfigError, match=r"\[tls\] key_file .*client-bank.key: not the private "
                                          r"key of cert_file .*server.pem"):
        start(key_file=pki.path("client-bank.key"))
    with pytest.raises(ConfigError, match=r"\[tls\] cert_file .*: no PEM certificate"):
        start(cert_file=pki.path("server.key"))
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    expired = issue_certificate(pki.authority(), "localhost", days=2, now=old, hosts=["localhost"])
    (tmp_path / "old.pem").write_bytes(expired.cert_pem())
    (tmp_path / "old.key").write_bytes(expired.key_pem())
    with pytest.raises(ConfigError, match=r"\[tls\] cert_file .*old.pem: certificate CN=localhost "
                                          r"expired on"):
        start(cert_file=str(tmp_path / "old.pem"), key_file=str(tmp_path / "old.key"))
    mutual = {"cert_file": pki.path("server.pem"), "key_file": pki.path("server.key"),
              "client_ca_file": pki.path("ca.pem")}
    with pytest.raises(ConfigError, match=r"\[auth\] tokens_file: not used under mutual TLS"):
        start_server(load_settings(overrides={"tls": mutual, "auth": {"tokens_file": "t.toml"}}),
                     port=0)
    with pytest.raises(ConfigError, match=r"--no-auth .* with \[tls\] client_ca_file"):
        start_server(load_settings(overrides={"tls": mutual, "auth": {"enabled": False}}), port=0)
    with pytest.raises(ConfigError, match=r"--tls-cert and --tls-key: give both"):
        ClientTls(pki.path("ca.pem"), pki.path("client-bank.pem")).credentials()
    with pytest.raises(ConfigError, match=r"--tls-key .*client-police.key: not the private key"):
        ClientTls(pki.path("ca.pem"), pki.path("client-bank.pem"),
                  pki.path("client-police.key")).credentials()


def test_report_from_the_command_line_over_mutual_tls(mtls: TlsServer, pki: Pki,
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`screening report large-value --server` with --tls-ca/--tls-cert/--tls-key: police gets
    the day; a bank certificate asking for another institution is refused (exit 1)."""
    day = _local_day()
    tls = pki.client("police")
    args = ["report", "large-value", "--server", mtls.address, "--date", day, "--out",
            str(tmp_path / "lv"), "--tls-ca", tls.ca_file]
    assert main([*args, "--tls-cert", tls.cert_file, "--tls-key", tls.key_file]) == 0
    assert "large-value rows of" in capsys.readouterr().out
    bank = pki.client("bank")
    assert main([*args, "--tls-cert", bank.cert_file, "--tls-key", bank.key_file,
                 "--institution", "BANK02"]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    # no client certificate: grpc says only that the socket closed; the command says what to add
    assert main([*args, "--token", _token("police")]) == 1
    err = capsys.readouterr().err
    assert "UNAVAILABLE" in err and "add --tls-cert and --tls-key" in err


# ------------------------------------------------------------------------- revoked certificates
def test_a_revoked_client_certificate_is_refused_once_the_crl_is_re_read(tmp_path: Path) -> None:
    """`serve --tls-crl`: after `screening certs revoke` of the bank's certificate (no signal)
    the bank is UNAUTHENTICATED within RELOAD_POLL_S, naming the serial; police still calls."""
    pki = Pki(tmp_path / "certs")
    assert main(["certs", "dev", "--out", str(pki.dir)]) == 0
    port = free_port()
    address = f"127.0.0.1:{port}"
    took: list[float] = []

    def scenario(_client: ScreeningClient, _proc: subprocess.Popen[str]) -> None:
        with ScreeningClient(address, tls=pki.client("bank")) as bank:
            bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
            serial = x509.load_pem_x509_certificate(
                (pki.dir / "client-bank.pem").read_bytes()).serial_number
            assert main(["certs", "revoke", "--dir", str(pki.dir),
                         str(pki.dir / "client-bank.pem")]) == 0
            t0 = time.monotonic()
            while True:
                try:
                    bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
                    assert f"serial {serial:x}" in (exc.details() or "")
                    assert "revoked ([tls] crl_file)" in (exc.details() or "")
                    break
                assert time.monotonic() - t0 < RELOAD_POLL_S + 3.0, "still accepted"
                time.sleep(0.05)
            took.append(time.monotonic() - t0)
        with ScreeningClient(address, tls=pki.client("police")) as police:
            police.query_account(uid("acct"))

    code, err = serve_process(["--tls-cert", pki.path("server.pem"), "--tls-key",
                               pki.path("server.key"), "--tls-client-ca", pki.path("ca.pem"),
                               "--tls-crl", pki.path("crl.pem")], port, lambda c: None,
                              tls=pki.client("police"), signals=scenario)
    assert code == 0, err[-2000:]
    reloads = [json.loads(x) for x in err.splitlines() if '"auth_reloaded"' in x]
    assert [(r["by"], r["revoked_certificates"]) for r in reloads] == [("file changed", 1)]
    assert took and took[0] <= RELOAD_POLL_S + 3.0


def test_a_crl_not_signed_by_the_client_ca_stops_start_up(pki: Pki, tmp_path: Path) -> None:
    """A revocation list of another CA (or none of any) is refused naming [tls] crl_file."""
    other = Pki(tmp_path / "other")
    assert main(["certs", "dev", "--out", str(other.dir)]) == 0
    mutual = {"cert_file": pki.path("server.pem"), "key_file": pki.path("server.key"),
              "client_ca_file": pki.path("ca.pem")}
    with pytest.raises(ConfigError, match=r"\[tls\] crl_file .*: not signed by a CA of "
                                          r"client_ca_file"):
        start_server(load_settings(overrides={"tls": {**mutual, "crl_file": other.path("crl.pem")}}),
                     port=0)
    with pytest.raises(ConfigError, match=r"\[tls\] crl_file .*: no PEM certificate revocation"):
        start_server(load_settings(overrides={"tls": {**mutual, "crl_file": pki.path("ca.pem")}}),
                     port=0)
    with pytest.raises(ConfigError, match=r"\[tls\] crl_file: revokes client certificates, so it "
                                          r"needs client_ca_file"):
        load_settings(overrides={"tls": {"cert_file": pki.path("server.pem"),
                                         "key_file": pki.path("server.key"),
                                         "crl_file": pki.path("crl.pem")}})


def test_sighup_renews_the_server_certificate_for_new_connections(tmp_path: Path) -> None:
    """`serve` under mutual TLS: new certificate files (of another CA) and SIGHUP, and new
    connections get the new certificate; a broken key on the next SIGHUP is logged and the
    certificate in use stays."""
    old, new = Pki(tmp_path / "old"), Pki(tmp_path / "new")
    for pki in (old, new):
        assert main(["certs", "dev", "--out", str(pki.dir)]) == 0
    live = tmp_path / "live"
    live.mkdir()
    for name in ("server.pem", "server.key"):
        (live / name).write_bytes((old.dir / name).read_bytes())
    police = old.client("police")
    trusting_new = ClientTls(new.path("ca.pem"), police.cert_file, police.key_file)
    port = free_port()
    address = f"127.0.0.1:{port}"

    def scenario(_client: ScreeningClient, proc: subprocess.Popen[str]) -> None:
        with ScreeningClient(address, tls=trusting_new, timeout=2) as c, pytest.raises(grpc.RpcError):
            c.query_account(uid("acct"))  # the old certificate: not trusted by this client
        for name in ("server.pem", "server.key"):
            (live / name).write_bytes((new.dir / name).read_bytes())
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            try:
                with ScreeningClient(address, tls=trusting_new, timeout=2) as c:
                    c.query_account(uid("acct"))
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "the new certificate was not served"
                time.sleep(0.1)
        with ScreeningClient(address, tls=police, timeout=2) as c:
            with pytest.raises(grpc.RpcError) as info:
                c.query_account(uid("acct"))  # a new connection trusting only the old CA
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        (live / "server.key").write_bytes((old.dir / "server.key").read_bytes())  # a mismatch
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        with ScreeningClient(address, tls=trusting_new, timeout=5) as c:
            c.query_account(uid("acct"))

    code, err = serve_process(["--tls-cert", str(live / "server.pem"), "--tls-key",
                               str(live / "server.key"), "--tls-client-ca", old.path("ca.pem")],
                              port, lambda c: None, tls=police, signals=scenario)
    assert code == 0, err[-2000:]
    events = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert [e["by"] for e in events if e["event"] == "tls_reloaded"] == ["SIGHUP"]
    refused = [e for e in events if e["event"] == "tls_refused"]
    assert len(refused) == 1 and "[tls] key_file" in refused[0]["error"]


def test_the_audit_trail_names_the_certificate_s_caller(pki: Pki, tmp_path: Path) -> None:
    """Under mutual TLS there is no token: the regulator's record says who from the certificate
    (CN, OU, O), and the chain verifies."""
    from screening.audit import read_records, verify

    trail = tmp_path / "audit"
    srv = _start(_tls_settings(pki, mutual=True, audit={"dir": str(trail), "flush_interval_ms": 20.0}))
    try:
        with ScreeningClient(srv.address, tls=pki.client("bank")) as bank:
            d = bank.screen(transaction(uid("t"), recent(), uid("a"), uid("b"), 100))
    finally:
        srv.running.stop(0.5)
    decided = [r for r in read_records(trail) if r.get("txn") == d.transaction_id]
    assert len(decided) == 1
    assert (decided[0]["by"], decided[0]["role"], decided[0]["institution"]) == \
        ("dev-bank", "bank", DEV_INSTITUTIONS["bank"])
    assert verify(trail).ok
