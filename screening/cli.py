"""Command line: `screening serve | demo | token | policy | features | ...` (see --help)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from screening.case_cli import add_case_command
from screening.errors import ConfigError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _settings(args: argparse.Namespace) -> object:
    from screening.config import load_settings

    overrides: dict[str, dict[str, object]] = {
        "server": {"host": getattr(args, "host", None), "port": getattr(args, "port", None)},
        "policy": {"file": str(args.policy) if getattr(args, "policy", None) else None},
        "log": {"level": getattr(args, "log_level", None), "format": getattr(args, "log_format", None)},
    }
    if getattr(args, "no_auth", False):
        overrides["auth"] = {"enabled": False}
    if getattr(args, "tokens", None):
        overrides.setdefault("auth", {})["tokens_file"] = str(args.tokens)
    return load_settings(args.config, os.environ, overrides)


def _cmd_serve(args: argparse.Namespace) -> int:
    from screening.config import Settings
    from screening.logs import configure_logging
    from screening.server import serve_forever, start_server

    settings = _settings(args)
    assert isinstance(settings, Settings)
    masker = configure_logging(settings.log)
    running = start_server(settings, masker=masker)
    serve_forever(running, settings.server.grace_seconds)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from screening.demo import run_demo

    return run_demo(sys.stdout, args.log_dir)


def _cmd_token(args: argparse.Namespace) -> int:
    from screening.auth import add_token

    token = add_token(args.file, args.role, args.name)
    print(f"token for role {args.role} ({args.name}); shown once, only its hash is stored in "
          f"{args.file}:\n{token}")
    return 0


def _cmd_policy_check(args: argparse.Namespace) -> int:
    from screening.policy import load_policy

    policy = load_policy(args.file)
    print(f"{args.file or 'default policy'}: OK, version {policy.version}, "
          f"{len(policy.txn_rules)} transaction rules, {len(policy.call_rules)} call rules")
    return 0


def _cmd_policy_show(_args: argparse.Namespace) -> int:
    from screening.policy import default_policy_text

    sys.stdout.write(default_policy_text())
    return 0


def _cmd_features(_args: argparse.Namespace) -> int:
    from features.layout import ACCOUNT_FEATURES, CALL_FEATURES, TXN_FEATURES

    for title, names in (("transaction rules ([[rule]])", TXN_FEATURES),
                         ("call rules ([[call_rule]])", CALL_FEATURES),
                         ("QueryAccount features", ACCOUNT_FEATURES)):
        print(f"# {title}")
        for name in names:
            if not name.startswith("reserved_"):
                print(f"  {name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="screening",
        description="Transaction screening against telecom fraud and illegal fundraising: "
                    "a gRPC service with streaming features, graph patterns and police exports.",
    )
    parser.add_argument("--config", type=Path, default=None,
                        help="settings TOML (else $SCREENING_CONFIG); env SCREENING_<SECTION>__<KEY> "
                             "overrides single keys")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the gRPC server (embedded state) until SIGTERM")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 50051; 0 = any free)")
    p.add_argument("--policy", type=Path, default=None, help="policy TOML (default: shipped policy)")
    p.add_argument("--tokens", type=Path, default=None, help="tokens file (sha256 -> role)")
    p.add_argument("--no-auth", action="store_true",
                   help="treat every caller as admin (local development only)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None)
    p.add_argument("--log-format", choices=("json", "console"), default=None)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("demo", help="start a server and play a scripted day of fraud scenarios")
    p.add_argument("--log-dir", type=Path, default=None, help="where the server log goes")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("token", help="manage caller tokens")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    t = tsub.add_parser("create", help="create a token for a role; prints it once")
    t.add_argument("--role", required=True,
                   choices=("bank", "payment", "telecom", "police", "regulator", "admin"))
    t.add_argument("--name", required=True, help="who holds it (shows in audit logs)")
    t.add_argument("--file", type=Path, default=Path("tokens.toml"), help="tokens file")
    t.set_defaults(func=_cmd_token)

    p = sub.add_parser("policy", help="check or print a policy file")
    psub = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    c = psub.add_parser("check", help="validate a policy file (names the line of a problem)")
    c.add_argument("file", type=Path, nargs="?", default=None)
    c.set_defaults(func=_cmd_policy_check)
    s = psub.add_parser("show", help="print the default policy (a starting point for your own)")
    s.set_defaults(func=_cmd_policy_show)

    p = sub.add_parser("features", help="list the feature names rules can use")
    p.set_defaults(func=_cmd_features)
    add_case_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"screening: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
