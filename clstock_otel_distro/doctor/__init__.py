"""``clstock-otel doctor``: check that a ClStock deployment will be traced, and how.

Run it where ClStock runs (the current directory is the ClStock checkout, as for
``opentelemetry-instrument uvicorn app.main:app``), with the deployment's environment::

    clstock-otel doctor                       # readable report
    clstock-otel doctor --app-dir /srv/clstock --no-network
    clstock-otel doctor --json | jq .problems  # for scripts
    python -m clstock_otel_distro.doctor      # the same, without the console script

It reports, in seven sections:

1. the distro and configurator ``opentelemetry-instrument`` will choose, computed as
   ``_load_distro`` / ``_load_configurators`` do (entry point order,
   ``OTEL_PYTHON_DISTRO`` / ``OTEL_PYTHON_CONFIGURATOR``, the chosen distro's defaults);
2. every ``opentelemetry_instrumentor`` entry point: will load (and what a known
   third-party one does to a ClStock trace), left out by the distro, or skipped and
   why (disabled, dependency conflict, import error: each module is actually
   imported); installed OpenTelemetry packages whose pinned requirements are not met;
3. ClStock's targets: the predictor and data-provider classes and the
   ``OTEL_PYTHON_CLSTOCK_TRACE_METHODS`` entries, imported from the app directory,
   with the methods that will be traced;
4. whether the installed yfinance and curl_cffi are versions our instrumentations support;
5. the effective configuration (every ``OTEL_*`` variable set, plus the defaults the
   distro and configurator add), secrets masked, and every invalid value, found by
   the validators the configurator itself uses;
6. the distro's patches of upstream code (:mod:`clstock_otel_distro.patches`): each
   will apply, is switched off, or will stand aside (an upstream version outside the
   verified range, or a changed shape) and what is lost then;
7. whether the OTLP traces endpoint answers (an empty export over http/protobuf, a
   TCP connect for grpc); ``--no-network`` skips it.

Each finding is marked ✓ (fine), · (information), ! (warning) or ✗ (problem); ASCII
markers are used when stdout cannot encode those. The exit status is 1 when there
is at least one problem, else 0: warnings (an unusual but working setup) and
information (a default target absent from this ClStock layout) keep it 0.

Importing this module is cheap (the standard library only): everything else is
imported when the checks run, so ``clstock-otel --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from clstock_otel_distro.doctor import compatibility
from clstock_otel_distro.doctor._common import (
    _app_on_path,
    _captured_config_warnings,
    _environ,
    _Redactor,
)
from clstock_otel_distro.doctor.configuration import (
    _check_configuration,
    _check_excluded_urls,
    _report_invalid_values,
)
from clstock_otel_distro.doctor.endpoint import _check_endpoint
from clstock_otel_distro.doctor.findings import _MARKERS, Finding, Report, Section, Status
from clstock_otel_distro.doctor.instrumentations import (
    _check_instrumentors,
    _check_libraries,
    _check_targets,
)
from clstock_otel_distro.doctor.patches import check_patches
from clstock_otel_distro.doctor.selection import (
    _apply_distro,
    _choose_configurator,
    _choose_distro,
    _Selection,
)

__all__ = [
    "DESCRIPTION",
    "HELP",
    "Finding",
    "Report",
    "Section",
    "Status",
    "add_arguments",
    "diagnose",
    "main",
    "register",
    "run",
]

HELP = "check that this deployment will be traced (distro, instrumentations, config, endpoint)"
DESCRIPTION = (
    "Check a ClStock deployment's OpenTelemetry setup: which distro and configurator "
    "opentelemetry-instrument will choose, which instrumentations load, whether ClStock's "
    "classes and methods are found, library versions, the effective configuration "
    "(secrets masked) and whether the OTLP endpoint answers. Exit status 1 when a "
    "problem is found."
)

_DEFAULT_TIMEOUT = 3.0


# --------------------------------------------------------------------------- entry points


def diagnose(
    app_dir: str | os.PathLike[str] | None = None,
    *,
    network: bool = True,
    timeout: float = _DEFAULT_TIMEOUT,
) -> Report:
    """Run every check against this environment; ``app_dir`` defaults to the working directory.

    The process's environment and ``sys.path`` are left as they were; the application
    modules the checks import stay imported.
    """
    root = Path(app_dir if app_dir is not None else os.getcwd()).resolve()
    report = Report(root)
    selection_section = report.section("Distro and configurator")
    instrumentors = report.section("Instrumentations (opentelemetry_instrumentor entry points)")
    targets = report.section("ClStock targets")
    libraries = report.section("Libraries")
    configuration = report.section("Configuration")
    upstream_patches = report.section("Patches of upstream code")
    endpoint = report.section("OTLP endpoint")
    selection = _Selection()
    with _app_on_path(root), _captured_config_warnings() as captured:
        _choose_distro(selection_section, selection)
        _apply_distro(selection_section, selection)
        with _environ(selection.distro_defaults):
            redact = _Redactor(dict(os.environ))
            _choose_configurator(selection_section, selection)
            plan = _check_configuration(configuration, selection)
            _check_instrumentors(instrumentors)
            compatibility.check_version_conflicts(instrumentors)
            compatibility.explain_upstream_distro(selection_section)
            _check_targets(targets, root)
            _check_libraries(libraries)
            _report_invalid_values(configuration, captured)
            _check_excluded_urls(configuration)
            _check_endpoint(endpoint, plan, network=network, timeout=timeout)
            check_patches(upstream_patches)
    redact.apply(report)
    return report


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds > 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the doctor's options to ``parser`` (and ``handler=run``); returns it."""
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=None,
        help="the ClStock checkout the application runs from (default: the current directory)",
    )
    parser.add_argument(
        "--no-network", action="store_true", help="do not contact the OTLP endpoint"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=_DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long the endpoint check waits (default {_DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(handler=run)
    return parser


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``doctor`` command to ``add_subparsers()``'s result; returns its parser."""
    return add_arguments(subparsers.add_parser("doctor", help=HELP, description=DESCRIPTION))


def _can_encode(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Run the checks for parsed arguments, print the report; returns the exit status."""
    out = stream if stream is not None else sys.stdout
    report = diagnose(args.app_dir, network=not args.no_network, timeout=args.timeout)
    if args.json:
        out.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=True) + "\n")
    else:
        ascii_only = not _can_encode(out, "".join(_MARKERS.values()))
        text = report.render(ascii_only=ascii_only)
        if ascii_only:
            text = text.encode("ascii", "backslashreplace").decode("ascii")
        out.write(text)
    out.flush()
    return report.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m clstock_otel_distro.doctor [options]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="clstock-otel doctor", description=DESCRIPTION)
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
