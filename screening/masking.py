"""Masking of account numbers, phone numbers and device ids for logs and non-police callers.

The regulation forbids identifiers in clear in logs. A masked value keeps the last four
characters (what a customer sees on a statement) and a keyed hash, so two log lines about the
same account can be matched without revealing it. The key comes from config; without one a
random per-process key is used (matching then works within one process only).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import MutableMapping
from typing import Any

__all__ = ["SENSITIVE_KEYS", "Masker", "mask_processor"]

# Log keys whose values are identifiers: masked by the structlog processor whatever the caller
# passed (defence in depth: call sites mask too).
SENSITIVE_KEYS = frozenset({
    "account", "account_id", "payer", "payee", "phone", "payer_phone", "caller", "callee",
    "caller_number", "callee_number", "device", "device_id", "entity", "value",
})


class Masker:
    """Turns an identifier into ``…1234#a1b2c3d4`` (last four, keyed hash)."""

    PREFIX = "…"

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key else os.urandom(32)

    def __call__(self, value: str) -> str:
        if not value:
            return ""
        if self.is_masked(value):
            return value
        digest = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:8]
        return f"{self.PREFIX}{value[-4:] if len(value) > 6 else ''}#{digest}"

    @classmethod
    def is_masked(cls, value: str) -> bool:
        return value.startswith(cls.PREFIX) and "#" in value


def mask_processor(masker: Masker) -> Any:
    """A structlog processor masking every value under a key in ``SENSITIVE_KEYS``."""

    def process(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]
                ) -> MutableMapping[str, Any]:
        for key in SENSITIVE_KEYS.intersection(event_dict):
            value = event_dict[key]
            if isinstance(value, str):
                event_dict[key] = masker(value)
        return event_dict

    return process
