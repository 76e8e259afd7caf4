"""Who may call what: bearer tokens mapped to roles, enforced by a server interceptor.

Tokens are never stored: the tokens file holds sha256(token) -> role, a caller name and, for a
bank or payment institution, optionally the institution code it reports for. Health and
reflection are open (load balancers and tools need them); every other method needs a role
listed for it below. Unknown methods are denied. An address that keeps sending wrong tokens is
refused for a while (``FailureThrottle``); every refusal is logged with the caller's address.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
import tomllib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from screening.config import toml_string
from screening.errors import ConfigError, PermissionDenied, ScreeningError, Throttled, Unauthenticated
from screening.lanes import handler_like

__all__ = [
    "CLEAR_ID_ROLES",
    "INSTITUTION_ROLES",
    "PERMISSIONS",
    "ROLES",
    "AuthInterceptor",
    "Authenticator",
    "Caller",
    "FailureThrottle",
    "add_token",
    "hash_token",
    "new_token",
    "peer_address",
    "report_scope",
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
            raise PermissionDenied("this token is not bound to an institution (create it with "
                                   "`screening token create --institution CODE`)")
        other = [i for i in asked if i != caller.institution]
        if other:
            raise PermissionDenied(f"institutions: '{other[0]}' is not this token's institution")
        return [caller.institution], True
    return (list(asked) or None), caller.role in CLEAR_ID_ROLES


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return "scr_" + secrets.token_urlsafe(32)


class Authenticator:
    """Resolves the bearer token in call metadata to a Caller."""

    def __init__(self, by_hash: Mapping[str, Caller], enabled: bool = True) -> None:
        self._by_hash = dict(by_hash)
        self.enabled = enabled

    @classmethod
    def from_file(cls, path: Path) -> Authenticator:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: tokens file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        by_hash: dict[str, Caller] = {}
        for digest, entry in data.get("tokens", {}).items():
            if not isinstance(entry, dict) or entry.get("role") not in ROLES:
                raise ConfigError(f"{path}: token {digest[:8]}…: role must be one of {ROLES}")
            if len(digest) != 64:
                raise ConfigError(f"{path}: token key {digest[:8]}… is not a sha256 hex digest")
            institution = entry.get("institution", "")
            if not isinstance(institution, str):
                raise ConfigError(f"{path}: token {digest[:8]}…: institution must be text")
            by_hash[digest] = Caller(str(entry.get("name", "")), entry["role"], institution)
        return cls(by_hash)

    @classmethod
    def with_tokens(cls, tokens: Mapping[str, tuple[str, str] | tuple[str, str, str]]
                    ) -> Authenticator:
        """From clear tokens -> (name, role[, institution]); for tests and the demo."""
        return cls({hash_token(t): Caller(*v) for t, v in tokens.items()})

    def caller(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Caller | None:
        if not self.enabled:
            return Caller("anonymous", "admin")
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.strip().partition(" ")
                if scheme.lower() == "bearer":  # RFC 6750 (via RFC 7235): case-insensitive
                    return self._by_hash.get(hash_token(token.strip()))
        return None


def peer_address(peer: str) -> str:
    """The caller's address without its port: ``ipv4:10.0.0.5:53211`` -> ``ipv4:10.0.0.5``."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer


class FailureThrottle:
    """Failed token attempts per caller address, and the addresses refused because of them.

    ``max_failures`` failures within ``block_s`` block the address for ``block_s``; each further
    block of the same address lasts twice as long, up to an hour (the count of blocks is
    forgotten an hour after the last one ends). A blocked address is refused whatever token it
    sends, so guessing learns nothing while blocked. At most ``max_addresses`` are remembered
    (the least recently failing go first), so a flood of addresses cannot grow memory.
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
DeniedHook = Callable[[str, str, str, str], None]


def _deny(error: ScreeningError, handler: grpc.RpcMethodHandler[Any, Any], method: str, role: str,
          throttle: FailureThrottle | None, on_denied: DeniedHook | None
          ) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler that refuses the call with ``error``; it runs in the server's default (control)
    threads, where the caller's address is known: counted, logged, maybe refused as blocked."""

    def abort(_requests: Any, context: grpc.ServicerContext) -> Any:
        peer = context.peer()
        final = error
        if throttle is not None:
            final = throttle.refusal(peer) or error  # blocked addresses learn nothing more
            if isinstance(error, Unauthenticated) and final is error:
                throttle.failed(peer)
        if on_denied is not None:
            outcome = ("throttled" if isinstance(final, Throttled) else
                       "unauthenticated" if isinstance(final, Unauthenticated) else "permission_denied")
            on_denied(method, outcome, role, peer)
        context.abort(final.code, str(final))

    return handler_like(handler, abort)


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Rejects calls without a valid token (UNAUTHENTICATED) or the right role (PERMISSION_DENIED).

    It runs before the request is read. Refusals are answered on the server's default threads
    with the request bytes left undecoded; the handlers it lets through decode their request
    themselves (``screening.rpc``) and refuse blocked addresses (``throttle``) first.
    """

    def __init__(self, auth: Authenticator, on_denied: DeniedHook | None = None,
                 throttle: FailureThrottle | None = None) -> None:
        self.auth = auth
        self.on_denied = on_denied
        self.throttle = throttle

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        caller = self.auth.caller(handler_call_details.invocation_metadata)
        if caller is None:
            return _deny(Unauthenticated("missing or unknown bearer token (metadata "
                                         "'authorization: Bearer …')"),
                         handler, method, "", self.throttle, self.on_denied)
        allowed = PERMISSIONS.get(method)
        if allowed is None or caller.role not in allowed:
            return _deny(PermissionDenied(f"role '{caller.role}' may not call "
                                          f"{method.rsplit('/', 1)[-1]}"),
                         handler, method, caller.role, self.throttle, self.on_denied)
        return handler




def add_token(path: Path, role: str, name: str, institution: str = "") -> str:
    """Create a token for ``role`` (a bank or payment token may name the institution it reports
    for), append its hash to ``path``; returns the clear token once."""
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
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    if existing and "[tokens]" not in existing:
        raise ConfigError(f"{path}: not a tokens file (no [tokens] table)")
    text = existing if existing else "# sha256(token) -> caller; created by `screening token`\n[tokens]\n"
    extra = f", institution = {toml_string(institution)}" if institution else ""
    text += f'"{hash_token(token)}" = {{ role = "{role}", name = {toml_string(name)}{extra} }}\n'
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as f:
        f.write(text)
    tmp.replace(path)
    return token
