"""The fuzzer's server: ``screening`` served in a process of its own, with a state digest on the side.

``python -m bench._fuzz_server`` starts the service (``start_server``, as ``screening serve``
does) with one bearer token per role, prints one JSON line on stdout (``address``, ``tokens``),
then answers commands read from stdin, one per line, with one JSON line each:

    digest   {"digest": sha256 of the engine's state (screening.digest), "ms": time taken}
    changed  {"changed": [part, ...]}: the parts (screening.digest.state_parts) that differ
             between the states of the last two digests
    stats    {"stats": Engine.stats()}
    stop     stops the server (grace 1 s) and exits 0; so does end of input

Logs (JSON lines) go to stderr. In its own process, a crash of the server is seen as the process
dying, and the digest needs no RPC of the service's own (the contract stays as shipped).

Settings are the defaults with small starting sizes (the digest hashes every used row, and the
graph's and relationship table's arrays whole) and a failure throttle that never blocks: the
fuzzer sends thousands of wrong tokens from one address, and blocking it would turn every later
request into RESOURCE_EXHAUSTED. ``SCREENING_*`` environment variables apply on top.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from screening.auth import ROLES, Authenticator
from screening.config import load_settings
from screening.digest import state_digest, state_parts
from screening.engine import EngineSnapshot
from screening.logs import configure_logging
from screening.server import start_server

__all__ = ["INSTITUTION", "OVERRIDES", "TOKENS", "main"]

INSTITUTION = "BANK01"
# token -> (caller name, role[, institution]); the bank's is bound to INSTITUTION
TOKENS: dict[str, tuple[str, str] | tuple[str, str, str]] = {
    f"fuzz-token-{role}": ((f"fuzz-{role}", role, INSTITUTION) if role == "bank"
                           else (f"fuzz-{role}", role))
    for role in ROLES}
OVERRIDES: dict[str, dict[str, Any]] = {
    "server": {"port": 0},
    "state": {"initial_accounts": 1024, "initial_phones": 1024, "initial_devices": 1024,
              "initial_pairs": 4096},
    "graph": {"initial_edges": 4096},
    "auth": {"max_failures": 1_000_000_000, "block_seconds": 1.0},
}


def main() -> int:
    settings = load_settings(overrides=OVERRIDES)
    masker = configure_logging(settings.log, stream=sys.stderr)
    running = start_server(settings, masker=masker,
                           auth=Authenticator.with_tokens(TOKENS), port=0)
    out = sys.stdout
    out.write(json.dumps({"address": running.address,
                          "tokens": {spec[1]: token for token, spec in TOKENS.items()}}) + "\n")
    out.flush()
    snaps: list[EngineSnapshot] = []  # the states of the last two digests
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "digest":
                t0 = time.perf_counter()
                snaps = [*snaps[-1:], running.engine.snapshot()]
                reply: dict[str, object] = {"digest": state_digest(snaps[-1]),
                                            "ms": round((time.perf_counter() - t0) * 1000, 2)}
            elif command == "changed":
                old, new = (state_parts(snaps[0]), state_parts(snaps[-1])) if snaps else ({}, {})
                reply = {"changed": sorted(k for k in old.keys() | new.keys()
                                           if old.get(k) != new.get(k))}
            elif command == "stats":
                reply = {"stats": running.engine.stats()}
            elif command == "stop":
                break
            else:
                reply = {"error": f"unknown command {command[:40]!r}"}
            out.write(json.dumps(reply) + "\n")
            out.flush()
    finally:
        running.stop(1.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
