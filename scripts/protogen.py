"""Generate the gRPC stubs from streamlearn/serve/proto/*.proto, or check they are current.

    python scripts/protogen.py          # regenerate (make proto)
    python scripts/protogen.py --check  # fail if the checked-in stubs differ (make lint)

The stubs depend on the grpcio-tools version (pinned in pyproject's dev extra), so a
version bump regenerates them in the same commit.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = Path("streamlearn/serve/proto")


def generate(out: Path) -> list[Path]:
    """Run protoc for every .proto; returns the generated files, relative to ``out``."""
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / PROTO_DIR).glob("*.proto"))
    # Run from the repository root so the stubs import each other as package modules.
    args = [
        "protoc",
        f"-I{ROOT}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p.relative_to(out) for p in (out / PROTO_DIR).glob("*_pb2*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generated = generate(out)
        stale = [
            str(p)
            for p in generated
            if not (ROOT / p).exists() or not filecmp.cmp(out / p, ROOT / p, shallow=False)
        ]
        if not args.check:
            for path in generated:
                (ROOT / path).write_bytes((out / path).read_bytes())
            print(f"wrote {len(generated)} files")
            return 0
    if stale:
        print("gRPC stubs out of date (run `make proto`): " + ", ".join(stale), file=sys.stderr)
        return 1
    print("gRPC stubs up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
