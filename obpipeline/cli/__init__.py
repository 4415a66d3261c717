"""``obpipeline`` command line. Each module in this package that defines ``register(subparsers)``
adds one subcommand, so commands live next to nothing but their own argument parsing."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obpipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from obpipeline.errors import PipelineError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PipelineError as exc:  # bad input or an unusable day: one clear line, never a traceback
        print(f"obpipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
