"""Who may call what: bearer tokens mapped to roles, enforced by a server interceptor.

Tokens are never stored: the tokens file holds sha256(token) -> role, a caller name and, for a
bank or payment institution, optionally the institution code it reports for. Health and
reflection are open (load balancers and tools need them); every other method needs a role
listed for it below. Unknown methods are denied.
"""

from __future__ import annotations

import hashlib
import secrets
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from screening.errors import ConfigError, PermissionDenied

__all__ = [
    "CLEAR_ID_ROLES",
    "INSTITUTION_ROLES",
    "PERMISSIONS",
    "ROLES",
    "AuthInterceptor",
    "Authenticator",
    "Caller",
    "add_token",
    "hash_token",
    "new_token",
    "report_scope",
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
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                return self._by_hash.get(hash_token(value[7:].strip()))
        return None


def _deny(code: grpc.StatusCode, message: str, handler: grpc.RpcMethodHandler[Any, Any]
          ) -> grpc.RpcMethodHandler[Any, Any]:
    def abort(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(
            abort, handler.request_deserializer, handler.response_serializer)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(
            abort, handler.request_deserializer, handler.response_serializer)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(
            abort, handler.request_deserializer, handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(
        abort, handler.request_deserializer, handler.response_serializer)


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Rejects calls without a valid token (UNAUTHENTICATED) or the right role (PERMISSION_DENIED)."""

    def __init__(self, auth: Authenticator,
                 on_denied: Callable[[str, str, str], None] | None = None) -> None:
        self.auth = auth
        self.on_denied = on_denied

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        caller = self.auth.caller(handler_call_details.invocation_metadata)
        if caller is None:
            self._note(method, "unauthenticated", "")
            return _deny(grpc.StatusCode.UNAUTHENTICATED,
                         "missing or unknown bearer token (metadata 'authorization: Bearer …')",
                         handler)
        allowed = PERMISSIONS.get(method)
        if allowed is None or caller.role not in allowed:
            self._note(method, "permission_denied", caller.role)
            return _deny(grpc.StatusCode.PERMISSION_DENIED,
                         f"role '{caller.role}' may not call {method.rsplit('/', 1)[-1]}", handler)
        return handler

    def _note(self, method: str, outcome: str, role: str) -> None:
        if self.on_denied is not None:
            self.on_denied(method, outcome, role)


def add_token(path: Path, role: str, name: str, institution: str = "") -> str:
    """Create a token for ``role`` (a bank or payment token may name the institution it reports
    for), append its hash to ``path``; returns the clear token once."""
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}")
    if institution and role not in INSTITUTION_ROLES:
        raise ConfigError(f"only {' and '.join(sorted(INSTITUTION_ROLES))} tokens name an institution")
    token = new_token()
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    if existing and "[tokens]" not in existing:
        raise ConfigError(f"{path}: not a tokens file (no [tokens] table)")
    text = existing if existing else "# sha256(token) -> caller; created by `screening token`\n[tokens]\n"
    safe_name = name.replace('"', "'")
    inst = institution.replace('"', "'")
    extra = f', institution = "{inst}"' if inst else ""
    text += f'"{hash_token(token)}" = {{ role = "{role}", name = "{safe_name}"{extra} }}\n'
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)
    return token
