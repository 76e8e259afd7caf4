"""The options of every command that calls a running server (`accounts load`, `report
large-value --server`, `case export --server`): who the caller is and how to reach the server.

    --token T (default $SCREENING_TOKEN)       a bearer token (servers without mutual TLS)
    --tls-ca FILE                              TLS: the CA that signed the server's certificate
    --tls-cert FILE --tls-key FILE             mutual TLS: the caller's certificate and key

Without any --tls-* option the channel is plaintext (a server on loopback, or behind a proxy).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from screening.client import ScreeningClient

__all__ = ["add_client_options", "connect", "rpc_failure"]


def add_client_options(parser: argparse.ArgumentParser, token_help: str) -> None:
    """Add --token and the --tls-* options to ``parser``."""
    parser.add_argument("--token", default=None,
                        help=f"{token_help} (default: $SCREENING_TOKEN; not needed with a client "
                             "certificate under mutual TLS)")
    parser.add_argument("--tls-ca", default=None, metavar="FILE",
                        help="connect with TLS, trusting the CA certificates (PEM) in FILE for "
                             "the server's certificate")
    parser.add_argument("--tls-cert", default=None, metavar="FILE",
                        help="mutual TLS: this caller's certificate (PEM; its OU is the role)")
    parser.add_argument("--tls-key", default=None, metavar="FILE",
                        help="mutual TLS: the private key of --tls-cert (PEM)")


def connect(args: argparse.Namespace, address: str, timeout: float = 10.0) -> ScreeningClient:
    """A client for ``address`` with the options ``add_client_options`` added; ``timeout``
    seconds per call."""
    from screening.client import ScreeningClient
    from screening.tls import ClientTls

    tls = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        tls = ClientTls(args.tls_ca or "", args.tls_cert or "", args.tls_key or "")
    token = args.token or os.environ.get("SCREENING_TOKEN")
    return ScreeningClient(address, token, timeout=timeout, tls=tls)


def rpc_failure(args: argparse.Namespace, address: str, exc: Any) -> str:
    """One line for a failed call (a ``grpc.RpcError``): its status and details, and for
    UNAVAILABLE what to check, since grpc reports a refused TLS handshake only as a closed
    socket."""
    import grpc

    code = exc.code()
    line = f"screening: {address}: {code.name}: {exc.details()}"
    if code != grpc.StatusCode.UNAVAILABLE:
        return line
    if not (args.tls_ca or args.tls_cert):
        hint = ("is the server running there? if it serves TLS, add --tls-ca (and, under mutual "
                "TLS, --tls-cert and --tls-key)")
    elif not args.tls_cert:
        hint = ("is the server running there? a server with mutual TLS closes the connection "
                "of a caller without a client certificate: add --tls-cert and --tls-key")
    else:
        hint = ("is the server running there? a server with mutual TLS closes the connection "
                "when it does not trust the client certificate's CA, the certificate has expired "
                "or its CA's revocation list names it; and --tls-ca must hold the CA of the "
                "server's certificate")
    return f"{line}\n  {hint}"
