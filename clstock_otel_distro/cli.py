"""The ``clstock-otel`` command: developer tools around the distro.

clstock-otel demo      run ClStock's services traced and drive every workflow
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from clstock_otel_distro.demo import run_demo  # imported lazily: it pulls in the receiver

    return run_demo(args.app_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clstock-otel", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the traced ClStock demo")
    demo.add_argument(
        "--app-dir",
        type=Path,
        default=None,
        help="the ClStock checkout (default: ./clstock or this repository's)",
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clstock-otel`` console script."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
