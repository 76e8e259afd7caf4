"""Who may call what: callers known by a bearer token or, under mutual TLS, by their verified
client certificate; roles enforced by a server interceptor.

Tokens are never stored: the tokens file holds sha256(token) -> role, a caller name, for a bank
or payment institution optionally the institution code it reports for, when it was created and
when it was revoked (a revoked token stays listed, and is refused). The server re-reads the
file when it changes (``Authenticator.reload``). Under mutual TLS
(``[tls] client_ca_file``) the certificate decides instead (``caller_from_certificate``): its
subject's OU is the role, its CN the caller's name, its O the institution of a bank or payment
institution; tokens are not used then, and a certificate the CA revoked (``[tls] crl_file``,
re-read the same way) is refused. Health and reflection are open (load balancers and tools
need them); every other method needs a role listed for it below. Unknown methods are denied. An
address that keeps sending wrong tokens is refused for a while (``FailureThrottle``); every
refusal is logged with the caller's address.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import secrets
import threading
import time
import tomllib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from screening.config import toml_string
from screening.errors import (
    ConfigError,
    InvalidRequest,
    PermissionDenied,
    ScreeningError,
    Throttled,
    Unauthenticated,
)
from screening.lanes import handler_like
from screening.tls import Revoked, revoked_certificates

__all__ = [
    "CLEAR_ID_ROLES",
    "INSTITUTION_ROLES",
    "PERMISSIONS",
    "ROLES",
    "AuthInterceptor",
    "Authenticator",
    "Caller",
    "FailureThrottle",
    "TokenEntry",
    "add_token",
    "caller_from_certificate",
    "hash_token",
    "new_token",
    "peer_address",
    "read_tokens",
    "registry_owners",
    "report_scope",
    "revoke_token",
    "rotate_token",
    "token_id",
    "toml_string",
]

ROLES = ("bank", "payment", "telecom", "police", "regulator", "admin")
_SVC = "/screening.v1.Screening/"
PERMISSIONS: Mapping[str, frozenset[str]] = {
    _SVC + "ScreenTransaction": frozenset({"bank", "payment", "admin"}),
    _SVC + "ScreenStream": frozenset({"bank", "payment", "admin"}),
    _SVC + "ScreenBatch": frozenset({"bank", "payment", "admin"}),
    _SVC + "ReportCall": frozenset({"telecom", "admin"}),
    _SVC + "UpdateWatchlist": frozenset({"police", "regulator", "admin"}),
    _SVC + "QueryAccount": frozenset({"police", "regulator", "admin"}),
    _SVC + "ExportCaseGraph": frozenset({"police", "regulator", "admin"}),
    # the institution that decided (or the police) confirms or clears what the service concluded
    _SVC + "SubmitFeedback": frozenset({"bank", "payment", "police", "admin"}),
    _SVC + "UpsertAccounts": frozenset({"bank", "payment", "admin"}),
    # a bank or payment institution: its own customers only (see report_scope)
    _SVC + "GetLargeValueReport": frozenset({"bank", "payment", "police", "regulator", "admin"}),
    # what every decision follows: the operator's alone
    _SVC + "ReloadPolicy": frozenset({"admin"}),
}
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")
# Roles that see account and phone identifiers in clear in responses; others get them masked.
CLEAR_ID_ROLES = frozenset({"police", "admin"})


# Roles that report for one institution: they see its customers only, and need it in the token.
INSTITUTION_ROLES = frozenset({"bank", "payment"})


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    institution: str = ""  # the institution code a bank or payment token reports for


def report_scope(caller: Caller, asked: Sequence[str]) -> tuple[list[str] | None, bool]:
    """(institutions whose customers ``caller`` gets, None for all; identifiers in clear).

    Police and admin get what they ask for in clear; regulators the same, masked (as in every
    other reply); a bank or payment institution its own customers, in clear (its own records,
    which it files), and nothing without an institution in its token.
    """
    if caller.role in INSTITUTION_ROLES:
        if not caller.institution:
            raise PermissionDenied("this caller is not bound to an institution (a token created "
                                   "with `screening token create --institution CODE`, or a "
                                   "client certificate with O=CODE)")
        other = [i for i in asked if i != caller.institution]
        if other:
            raise PermissionDenied(f"institutions: '{other[0]}' is not this caller's institution")
        return [caller.institution], True
    return (list(asked) or None), caller.role in CLEAR_ID_ROLES


def registry_owners(caller: Caller, named: Sequence[str]) -> tuple[list[str], str | None]:
    """(the owner of each account registry entry ``caller`` upserts, given the institution each
    profile names; the institution whose entries it may overwrite, None for any).

    An entry's owner is the institution that services the account. A bank or payment
    institution writes its own customers' entries: it must be bound to an institution, a
    profile naming none is its own, one naming another is refused (PERMISSION_DENIED naming
    ``accounts[i].institution``). An admin writes any entry and names its owner (a registry
    file's ``institution`` column).
    """
    if caller.role in INSTITUTION_ROLES:
        if not caller.institution:
            raise PermissionDenied("this caller is not bound to an institution, and registry "
                                   "entries belong to the institution that services the "
                                   "account (a token created with `screening token create "
                                   "--institution CODE`, or a client certificate with O=CODE)")
        for i, inst in enumerate(named):
            if inst and inst != caller.institution:
                raise PermissionDenied(f"accounts[{i}].institution: '{inst}' is not this "
                                       "caller's institution")
        return [caller.institution] * len(named), caller.institution
    if caller.role != "admin":
        raise PermissionDenied(f"role {caller.role} does not write the account registry")
    for i, inst in enumerate(named):
        if not inst:
            raise InvalidRequest(f"accounts[{i}].institution",
                                 "is required from an admin (the institution that services "
                                 "the account)")
    return list(named), None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return "scr_" + secrets.token_urlsafe(32)


# A token's id: the first characters of its hash (what `token list` shows and `token revoke`
# takes); the hash of a random 256-bit token gives nothing of the token away.
ID_LENGTH = 12
# what `token revoke` and `token rotate` accept: an id, or any unique prefix this long
MIN_ID_PREFIX = 8


def token_id(digest: str) -> str:
    return digest[:ID_LENGTH]


@dataclass(frozen=True)
class TokenEntry:
    """One token in the tokens file: its hash and who holds it; ``revoked`` (an ISO time) when
    it is no longer accepted."""

    digest: str
    role: str
    name: str = ""
    institution: str = ""
    created: str = ""
    revoked: str = ""

    @property
    def id(self) -> str:
        return token_id(self.digest)

    def caller(self) -> Caller:
        return Caller(self.name, self.role, self.institution)


_ENTRY_KEYS = ("role", "name", "institution", "created", "revoked")


def read_tokens(path: Path) -> list[TokenEntry]:
    """Every token in the tokens file ``path``, revoked ones included, in file order. Raises
    ConfigError naming the file, the token (by id) and the key for anything it cannot use:
    an unknown key is an error, so a misspelt ``revoked`` cannot leave a token valid."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: tokens file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    tokens = data.get("tokens", {})
    if not isinstance(tokens, dict):
        raise ConfigError(f"{path}: [tokens] must be a table")
    entries: list[TokenEntry] = []
    for digest, entry in tokens.items():
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"{path}: token key {digest[:8]}… is not a sha256 hex digest")
        where = f"{path}: token {token_id(digest)}"
        if not isinstance(entry, dict) or entry.get("role") not in ROLES:
            raise ConfigError(f"{where}: role must be one of {ROLES}")
        for key, value in entry.items():
            if key not in _ENTRY_KEYS:
                raise ConfigError(f"{where}: unknown key '{key}' (known: {', '.join(_ENTRY_KEYS)})")
            if not isinstance(value, str):
                raise ConfigError(f"{where}: {key} must be text")
        entries.append(TokenEntry(digest, **entry))
    return entries


def caller_from_certificate(cert: x509.Certificate) -> Caller:
    """The caller a verified client certificate stands for: the subject's OU is the role
    (exactly one, one of ROLES), its CN the caller's name (the scope of its transaction ids, as
    a token's name is), and for a bank or payment institution its O the institution code it
    reports for (none: no large-value report, as for a token without one). Raises
    Unauthenticated naming what the certificate lacks."""
    subject = cert.subject

    def values(oid: x509.ObjectIdentifier) -> list[str]:
        return [str(a.value) for a in subject.get_attributes_for_oid(oid)]

    shown = subject.rfc4514_string()
    roles, names = values(NameOID.ORGANIZATIONAL_UNIT_NAME), values(NameOID.COMMON_NAME)
    if len(roles) != 1 or roles[0] not in ROLES:
        raise Unauthenticated(f"client certificate {shown}: its subject's OU must be one role, "
                              f"one of {', '.join(ROLES)}")
    if len(names) != 1 or not names[0]:
        raise Unauthenticated(f"client certificate {shown}: its subject needs one CN (the "
                              "caller's name)")
    institutions = values(NameOID.ORGANIZATION_NAME) if roles[0] in INSTITUTION_ROLES else []
    if len(institutions) > 1:
        raise Unauthenticated(f"client certificate {shown}: more than one O (institution)")
    return Caller(names[0], roles[0], institutions[0] if institutions else "")


NO_TOKEN = "missing or unknown bearer token (metadata 'authorization: Bearer …')"
NO_CERTIFICATE = ("no verified client certificate (this server uses mutual TLS, [tls] "
                  "client_ca_file)")
_ANONYMOUS = Caller("anonymous", "admin")
# client certificates read, by their PEM (a connection sends the same one on every call)
_CERT_CACHE_SIZE = 1024


class Authenticator:
    """Who is calling: the bearer token in call metadata, looked up in the tokens file; or,
    under mutual TLS (``certificates``), the verified client certificate of the connection,
    unless the certificate revocation list names it.

    ``path`` is the file ``reload`` re-reads: the tokens file, or under mutual TLS the CRL. It
    swaps the whole table at once: a call sees it before or after, never a mix; a file that
    does not load changes nothing.
    """

    def __init__(self, by_hash: Mapping[str, Caller], enabled: bool = True, *,
                 certificates: bool = False, path: Path | None = None,
                 client_ca: Path | None = None) -> None:
        self._by_hash = dict(by_hash)
        self.enabled = enabled
        self.certificates = certificates
        self.path = path
        self._client_ca = client_ca  # the CA that must have signed the CRL
        self._revoked: Revoked = frozenset()
        self._stamp = _file_stamp(path) if path is not None else None
        self._reload_lock = threading.Lock()
        # PEM -> (caller or why not, (issuer, serial) as a CRL names it)
        self._certs: OrderedDict[bytes, tuple[Caller | Unauthenticated, tuple[str, int]]] = \
            OrderedDict()
        self._certs_lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path) -> Authenticator:
        return cls(_active(read_tokens(path)), path=path)

    @classmethod
    def from_certificates(cls, crl: Path | None = None, client_ca: Path | None = None
                          ) -> Authenticator:
        """Callers known by their client certificates (mutual TLS); those the CRL ``crl``
        (signed by a CA of ``client_ca``) lists are refused."""
        auth = cls({}, certificates=True, path=crl, client_ca=client_ca)
        if crl is not None:
            auth.reload()
        return auth

    @classmethod
    def with_tokens(cls, tokens: Mapping[str, tuple[str, str] | tuple[str, str, str]]
                    ) -> Authenticator:
        """From clear tokens -> (name, role[, institution]); for tests and the demo."""
        return cls({hash_token(t): Caller(*v) for t, v in tokens.items()})

    def changed(self) -> bool:
        """Whether ``path`` is not the file last read (another inode, time or size)."""
        return self.path is not None and _file_stamp(self.path) != self._stamp

    def reload(self) -> dict[str, int]:
        """Re-read ``path`` and use it from the next call on; returns what it holds (tokens
        accepted and revoked, or certificates revoked). Raises ConfigError (naming the file and
        what is wrong) and keeps what is in use when the file does not load; it is not read
        again until it changes."""
        if self.path is None:
            raise ConfigError("nothing to reload (no [auth] tokens_file or [tls] crl_file)")
        with self._reload_lock:
            stamp = _file_stamp(self.path)
            try:
                if self.certificates:
                    self._revoked = revoked_certificates(str(self.path), str(self._client_ca))
                    return {"revoked_certificates": len(self._revoked)}
                entries = read_tokens(self.path)
                self._by_hash = _active(entries)  # one assignment: calls see the old or the new
                return {"active": len(self._by_hash),
                        "revoked": sum(1 for e in entries if e.revoked)}
            finally:
                self._stamp = stamp

    def caller(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Caller | None:
        """The caller whose bearer token ``metadata`` holds; None without a known one."""
        if not self.enabled:
            return _ANONYMOUS
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.strip().partition(" ")
                if scheme.lower() == "bearer":  # RFC 6750 (via RFC 7235): case-insensitive
                    return self._by_hash.get(hash_token(token.strip()))
        return None

    def identify(self, metadata: Sequence[tuple[str, str | bytes]] | None,
                 peer: Mapping[str, Sequence[bytes]] | None = None) -> Caller:
        """The caller of a call, from its metadata (a token) or, under mutual TLS, from ``peer``
        (the call's ``auth_context()``); raises Unauthenticated saying what is missing."""
        if not self.enabled:
            return _ANONYMOUS
        if self.certificates:
            pems = (peer or {}).get("x509_pem_cert")
            if not pems:
                raise Unauthenticated(NO_CERTIFICATE)
            return self._from_certificate(pems[0])
        caller = self.caller(metadata)
        if caller is None:
            raise Unauthenticated(NO_TOKEN)
        return caller

    def caller_of(self, context: grpc.ServicerContext) -> Caller:
        """``identify`` for a call being served."""
        # grpcio gives a list of values per property (grpc-stubs says one bytes value)
        peer: Mapping[str, Sequence[bytes]] | None = (
            context.auth_context() if self.certificates else None)  # type: ignore[assignment]
        return self.identify(context.invocation_metadata(), peer)

    def _from_certificate(self, pem: bytes) -> Caller:
        with self._certs_lock:
            known = self._certs.get(pem)
        if known is None:
            try:
                cert = x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise Unauthenticated("client certificate: cannot be read") from None
            caller: Caller | Unauthenticated
            try:
                caller = caller_from_certificate(cert)
            except Unauthenticated as exc:
                caller = exc
            known = caller, (cert.issuer.rfc4514_string(), cert.serial_number)
            with self._certs_lock:
                self._certs[pem] = known
                while len(self._certs) > _CERT_CACHE_SIZE:
                    self._certs.popitem(last=False)
        caller, serial = known
        if serial in self._revoked:
            raise Unauthenticated(f"client certificate serial {serial[1]:x} of {serial[0]}: "
                                  "revoked ([tls] crl_file)")
        if isinstance(caller, Unauthenticated):
            raise Unauthenticated(str(caller))  # a fresh one: calls run in many threads
        return caller


def _active(entries: Sequence[TokenEntry]) -> dict[str, Caller]:
    return {e.digest: e.caller() for e in entries if not e.revoked}


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of a file from the next: the tokens commands replace the file
    (a new inode) and a hand edit changes its time or size."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def peer_address(peer: str) -> str:
    """The caller's address without its port: ``ipv4:10.0.0.5:53211`` -> ``ipv4:10.0.0.5``."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer


class FailureThrottle:
    """Failed token attempts per caller address, and the addresses refused because of them.

    ``max_failures`` failures within ``block_s`` block the address for ``block_s``; each further
    block of the same address lasts twice as long, up to an hour (the count of blocks is
    forgotten an hour after the last one ends). A blocked address's wrong tokens are refused
    RESOURCE_EXHAUSTED, unlogged in the audit trail. A valid token is served from a blocked
    address all the same: callers behind one NAT or proxy share its address, and one guesser
    must not stop another institution's payments (a token is 256 random bits: no guess finds
    one). At most ``max_addresses`` are remembered (the least recently failing go first), so a
    flood of addresses cannot grow memory.
    """

    MAX_BLOCK_S = 3600.0

    def __init__(self, max_failures: int, block_s: float, *, max_addresses: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.block_s = block_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._lock = threading.Lock()
        # address -> [failures in this window, window start, blocked until, blocks so far]
        self._seen: OrderedDict[str, list[float]] = OrderedDict()

    def refusal(self, peer: str) -> Throttled | None:
        """The error to refuse ``peer`` with, or None when it is not blocked."""
        if not self._seen:  # the common case: nobody ever failed
            return None
        address = peer_address(peer)
        with self._lock:
            entry = self._seen.get(address)
            if entry is None:
                return None
            left = entry[2] - self._clock()
        if left <= 0:
            return None
        return Throttled(f"too many failed token attempts from {address}: refused for another "
                         f"{left:.0f} s ([auth] max_failures {self.max_failures}, block_seconds "
                         f"{self.block_s:g})")

    def failed(self, peer: str) -> None:
        """Count a failed attempt from ``peer``; blocks its address at ``max_failures``."""
        if self.max_failures <= 0:
            return
        address = peer_address(peer)
        now = self._clock()
        with self._lock:
            entry = self._seen.pop(address, None)
            if entry is None or (entry[2] < now - self.MAX_BLOCK_S and entry[1] < now - self.block_s):
                entry = [0.0, now, 0.0, 0.0]
            elif now - entry[1] > self.block_s:
                entry[0], entry[1] = 0.0, now  # a new window; the block count is kept
            entry[0] += 1
            if entry[0] >= self.max_failures and entry[2] <= now:
                entry[2] = now + min(self.block_s * 2 ** entry[3], self.MAX_BLOCK_S)
                entry[3] += 1
                entry[0] = 0.0
            self._seen[address] = entry
            while len(self._seen) > self.max_addresses:
                self._seen.popitem(last=False)


# Called with (method, outcome, role, peer) for each refused call.
# (method, outcome, the caller when it is known, peer address)
DeniedHook = Callable[[str, str, "Caller | None", str], None]


def _refuse(error: ScreeningError, context: grpc.ServicerContext, method: str,
            caller: Caller | None,
            throttle: FailureThrottle | None, on_denied: DeniedHook | None) -> NoReturn:
    """Refuse the call with ``error`` where the caller's address is known: counted, logged,
    maybe refused as blocked."""
    peer = context.peer()
    final = error
    if throttle is not None:
        final = throttle.refusal(peer) or error  # blocked addresses learn nothing more
        if isinstance(error, Unauthenticated) and final is error:
            throttle.failed(peer)
    if on_denied is not None:
        outcome = ("throttled" if isinstance(final, Throttled) else
                   "unauthenticated" if isinstance(final, Unauthenticated) else "permission_denied")
        on_denied(method, outcome, caller, peer)
    context.abort(final.code, str(final))


def _deny(error: ScreeningError, handler: grpc.RpcMethodHandler[Any, Any], method: str,
          caller: Caller | None,
          throttle: FailureThrottle | None, on_denied: DeniedHook | None
          ) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler that refuses the call with ``error``; it runs in the server's default (control)
    threads."""

    def abort(_requests: Any, context: grpc.ServicerContext) -> Any:
        _refuse(error, context, method, caller, throttle, on_denied)

    return handler_like(handler, abort)


def _not_permitted(caller: Caller, method: str) -> PermissionDenied | None:
    allowed = PERMISSIONS.get(method)
    if allowed is None or caller.role not in allowed:
        return PermissionDenied(f"role '{caller.role}' may not call {method.rsplit('/', 1)[-1]}")
    return None


def _same_kind(handler: grpc.RpcMethodHandler[Any, Any], behavior: Callable[..., Any]
               ) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of ``handler``'s kind and (de)serializers running ``behavior``."""
    make: Callable[..., grpc.RpcMethodHandler[Any, Any]]
    if handler.request_streaming:
        make = (grpc.stream_stream_rpc_method_handler if handler.response_streaming
                else grpc.stream_unary_rpc_method_handler)
    else:
        make = (grpc.unary_stream_rpc_method_handler if handler.response_streaming
                else grpc.unary_unary_rpc_method_handler)
    return make(behavior, handler.request_deserializer, handler.response_serializer)


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Rejects calls without a known caller (UNAUTHENTICATED) or the right role
    (PERMISSION_DENIED).

    With tokens it runs before the request is read: refusals are answered on the server's
    default threads with the request bytes left undecoded; the handlers it lets through decode
    their request themselves (``screening.rpc``) and refuse blocked addresses (``throttle``)
    first. A client certificate is known only inside the call (grpc gives interceptors the
    metadata, not the connection), so under mutual TLS each handler is wrapped to check its
    caller first, in the thread (lane) the call runs in, before anything reads the request.
    """

    def __init__(self, auth: Authenticator, on_denied: DeniedHook | None = None,
                 throttle: FailureThrottle | None = None) -> None:
        self.auth = auth
        self.on_denied = on_denied
        self.throttle = throttle
        # method -> (the handler wrapped, the wrapper): the same registered handler each call
        self._checked: dict[str, tuple[grpc.RpcMethodHandler[Any, Any],
                                       grpc.RpcMethodHandler[Any, Any]]] = {}

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        if self.auth.certificates:
            return self._checked_in_call(method, handler)
        try:
            caller = self.auth.identify(handler_call_details.invocation_metadata)
        except Unauthenticated as exc:
            return _deny(exc, handler, method, None, self.throttle, self.on_denied)
        refusal = _not_permitted(caller, method)
        if refusal is not None:
            return _deny(refusal, handler, method, caller, self.throttle, self.on_denied)
        return handler

    def _checked_in_call(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
                         ) -> grpc.RpcMethodHandler[Any, Any]:
        known = self._checked.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        inner = (handler.unary_unary or handler.unary_stream or handler.stream_unary
                 or handler.stream_stream)
        assert inner is not None

        def checked(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                caller = self.auth.caller_of(context)
            except Unauthenticated as exc:
                _refuse(exc, context, method, None, None, self.on_denied)
            refusal = _not_permitted(caller, method)
            if refusal is not None:
                _refuse(refusal, context, method, caller, None, self.on_denied)
            return inner(request, context)

        pool = getattr(inner, "experimental_thread_pool", None)
        if pool is not None:  # run where the call would have run (its lane)
            checked.experimental_thread_pool = pool  # type: ignore[attr-defined]
        wrapped = _same_kind(handler, checked)
        self._checked[method] = (handler, wrapped)
        return wrapped


def add_token(path: Path, role: str, name: str, institution: str = "") -> str:
    """Create a token for ``role`` (a bank or payment token may name the institution it reports
    for), add its hash to ``path``; returns the clear token once."""
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}")
    try:
        name.encode("utf-8")
        institution.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("--name, --institution: not valid UTF-8 text") from None
    if institution and role not in INSTITUTION_ROLES:
        raise ConfigError(f"only {' and '.join(sorted(INSTITUTION_ROLES))} tokens name an institution")
    token = new_token()
    with _editing(path) as entries:
        entries.append(TokenEntry(hash_token(token), role, name, institution, created=_now()))
    return token


def revoke_token(path: Path, wanted: str) -> TokenEntry:
    """Mark the token ``wanted`` (its id, or a unique prefix of its hash) revoked in ``path``;
    returns it. A server refuses it once it has re-read the file."""
    with _editing(path, must_exist=True) as entries:
        i = _find(path, entries, wanted)
        entries[i] = replace(entries[i], revoked=_now())
        return entries[i]


def rotate_token(path: Path, wanted: str) -> tuple[str, TokenEntry, TokenEntry]:
    """Give the holder of token ``wanted`` a new token (same role, name and institution) and
    revoke the old one, in one write; returns (the new clear token, old entry, new entry)."""
    token = new_token()
    with _editing(path, must_exist=True) as entries:
        i = _find(path, entries, wanted)
        now = _now()
        old = entries[i] = replace(entries[i], revoked=now)
        new = TokenEntry(hash_token(token), old.role, old.name, old.institution, created=now)
        entries.append(new)
    return token, old, new


def _find(path: Path, entries: Sequence[TokenEntry], wanted: str) -> int:
    """The index of the active token whose hash starts with ``wanted``."""
    wanted = wanted.strip().lower()
    if len(wanted) < MIN_ID_PREFIX:
        raise ConfigError(f"token id {wanted!r}: give at least {MIN_ID_PREFIX} characters of it "
                          "(`screening token list` shows the ids)")
    found = [i for i, e in enumerate(entries) if e.digest.startswith(wanted)]
    if not found:
        raise ConfigError(f"{path}: no token with id {wanted}")
    if len(found) > 1:
        raise ConfigError(f"{path}: token id {wanted} is ambiguous ("
                          + ", ".join(entries[i].id for i in found) + "); give more of it")
    if entries[found[0]].revoked:
        raise ConfigError(f"{path}: token {wanted} was revoked at {entries[found[0]].revoked}")
    return found[0]


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@contextlib.contextmanager
def _editing(path: Path, must_exist: bool = False) -> Iterator[list[TokenEntry]]:
    """The tokens of ``path`` to change in place; written back (0600, replacing the file at
    once) when the block ends without an error. Edits wait for each other (a lock file beside
    it), so two `screening token` commands at once both land."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if text.strip() and "[tokens]" not in text:  # never overwrite another file
                raise ConfigError(f"{path}: not a tokens file (no [tokens] table)")
            entries = read_tokens(path)
        elif must_exist:
            raise ConfigError(f"{path}: tokens file not found")
        else:
            entries = []
        yield entries
        _write_tokens(path, entries)
    finally:
        os.close(fd)  # releases the lock


def _write_tokens(path: Path, entries: Sequence[TokenEntry]) -> None:
    lines = ["# sha256(token) -> caller; written by `screening token` (create, revoke, rotate).",
             "# Revoked tokens stay listed and are refused.", "[tokens]"]
    for e in entries:
        fields = [f"role = {toml_string(e.role)}", f"name = {toml_string(e.name)}"]
        fields += [f"{key} = {toml_string(value)}"
                   for key, value in (("institution", e.institution), ("created", e.created),
                                      ("revoked", e.revoked)) if value]
        lines.append(f'"{e.digest}" = {{ {", ".join(fields)} }}')
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
