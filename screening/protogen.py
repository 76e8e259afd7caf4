"""Regenerate ``screening/v1`` from ``proto/``: ``python -m screening.protogen``.

The generated modules are committed so the package installs without grpcio-tools; a test
regenerates into a temporary folder and fails when the committed copy is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["PROTO_DIR", "ROOT", "generate"]

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) on every .proto under proto/; returns the files written."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    # only the folders protoc wrote to (never the whole tree: a virtualenv may live there)
    folders = {out_dir / Path(p).parent for p in protos}
    written = sorted(p for folder in folders for p in folder.glob("*_pb2*.py*"))
    for p in written:
        init = p.parent / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated from proto/ by python -m screening.protogen; do not edit."""\n')
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: repo root)")
    args = parser.parse_args(argv)
    for p in generate(args.out):
        print(p.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
