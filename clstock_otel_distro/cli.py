"""The ``clstock-otel`` command: developer tools around the distro.

clstock-otel collect   receive OTLP on this machine, print each trace as a tree
clstock-otel report    latency, throughput, errors and dependencies of a span file
                       (--html OUT.html: the same as a page, with waterfalls)
clstock-otel demo      run ClStock's services traced and drive every workflow
clstock-otel doctor    check a deployment: distro, instrumentations, targets, config, endpoint
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from clstock_otel_distro import doctor  # standard library only: cheap to import
from clstock_otel_distro.version import __version__

__all__ = ["build_parser", "main"]

# Every command imports its module when it runs: importing the CLI (and --help) must
# stay fast and must not import grpc or protobuf.


def _collect(args: argparse.Namespace) -> int:
    from clstock_otel_distro.tools.collect import run_collect

    return run_collect(
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        output=getattr(args, "output", None),
        quiet_period=args.quiet_period,
        max_trees_per_second=args.max_trees_per_second,
    )


def _report(args: argparse.Namespace) -> int:
    from clstock_otel_distro.tools.report import run_report

    return run_report(args.file, as_json=args.json, html=args.html)


def _demo(args: argparse.Namespace) -> int:
    from clstock_otel_distro.tools.demo import run_demo

    return run_demo(args.app_dir, keep=args.keep, html=args.html)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0 picks a free one)")
    return port


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``clstock-otel``."""
    parser = argparse.ArgumentParser(prog="clstock-otel", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    collect = commands.add_parser(
        "collect",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="receive OTLP on this machine and print each trace as a tree",
        description="Receive OTLP/HTTP and OTLP/gRPC, print each completed trace as a tree "
        "and optionally append every span to a file (OTLP JSON lines, as the "
        "OpenTelemetry Collector's file exporter writes). Stop with Ctrl-C or SIGTERM.",
    )
    collect.add_argument("--host", default="127.0.0.1", help="address to listen on")
    collect.add_argument("--http-port", type=_port, default=4318, help="OTLP/HTTP port")
    collect.add_argument("--grpc-port", type=_port, default=4317, help="OTLP/gRPC port")
    collect.add_argument(
        "--output",
        type=Path,
        default=argparse.SUPPRESS,
        help="append every span to this file (OTLP JSON lines; default: no file)",
    )
    collect.add_argument(
        "--quiet-period", type=_non_negative, default=1.5, metavar="SECONDS",
        help="a trace prints once its root arrived and no span of it came for this long")
    collect.add_argument(
        "--max-trees-per-second", type=_non_negative, default=20, metavar="N",
        help="print at most this many trees a second, counting the rest (0: no trees)")
    collect.set_defaults(handler=_collect)

    report = commands.add_parser(
        "report",
        help="latency, throughput, errors and service dependencies of a span file",
        description="Per service and span name: count, spans/s, p50/p90/p99 duration "
        "(nearest-rank) and errors; and the calls between services. Reads OTLP JSON lines "
        "from `clstock-otel collect --output` or the OpenTelemetry Collector's file exporter.",
    )
    report.add_argument("file", type=Path, help="an OTLP JSON lines file of spans")
    report.add_argument("--json", action="store_true", help="print JSON for scripts")
    _path_option(report, "--html", "OUT.html",
                 "also write the report as one self-contained page: summary, latency "
                 "histograms, service map, and each trace's waterfall (opens offline)")
    report.set_defaults(handler=_report)

    demo = commands.add_parser(
        "demo",
        help="run the traced ClStock demo",
        description="Start ClStock's market replay, data service and API from a ClStock "
        "checkout, each under opentelemetry-instrument and exporting to a receiver "
        "embedded here; call every workflow once (one fails on purpose); print each "
        "workflow's trace as a tree and the report of every span; write the HTML report "
        "and print its path. Needs no network and no Docker. Exit status 0 when every "
        "call and trace was as expected, 1 otherwise, 2 outside a ClStock checkout.",
    )
    _path_option(demo, "--app-dir", "DIR",
                 "the ClStock application directory (default: ./clstock, or the current "
                 "directory when it is that directory)")
    _path_option(demo, "--html", "OUT.html",
                 "where to write the HTML report (default: clstock-otel-demo.html in the "
                 "current directory, replaced by every run)")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the services' logs and the span file (default: removed when the "
        "demo ends, unless it failed)",
    )
    demo.set_defaults(handler=_demo)

    doctor.register(commands)
    return parser


def _path_option(parser: argparse.ArgumentParser, flag: str, metavar: str, help: str) -> None:
    parser.add_argument(flag, type=Path, default=None, metavar=metavar, help=help)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clstock-otel`` console script."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
