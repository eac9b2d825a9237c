"""Which installed instrumentations the distro leaves out by default, and why.

``opentelemetry-bootstrap -a install`` installs an instrumentation for every library
it finds, and ``opentelemetry-instrument`` loads every one installed. Two of them
change what a ClStock trace looks like for the worse:

- **click**, in a server process. uvicorn's command line is a click command: the
  click instrumentation opens a span for the command, which lasts as long as the
  server, and every request then starts inside it. The ASGI middleware sees an active
  span and makes the request an INTERNAL child of it instead of a SERVER span, the
  incoming ``traceparent`` is ignored and all requests of the process collapse into
  one trace. In a server process (launched as ``uvicorn``, ``python -m uvicorn``,
  ``gunicorn``, ``hypercorn``, ``daphne`` or ``granian``) it is left out;
  ``OTEL_PYTHON_CLSTOCK_CLICK_IN_SERVERS=true`` keeps it. A click command that is not
  a server (a batch job) keeps its span.
- **sqlite3**: ClStock uses no database; yfinance keeps its timezone and cookie caches
  in SQLite, which would add dozens of CLIENT spans of cache bookkeeping to every
  recommendation. Left out; ``OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS=true`` brings it back,
  with the current database semantic conventions (the distro's default
  ``OTEL_SEMCONV_STABILITY_OPT_IN`` includes ``database``).

An instrumentation left out is never imported (start-up stays as fast as without it).
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` still disables any instrumentation as usual.

One more waits instead of being left out: **grpc**. bootstrap installs its four
instrumentations wherever grpcio is installed, and grpcio is there as soon as the
OTLP gRPC exporter is (this distro's dependency), whether or not the application
uses gRPC. Instrumenting imports grpc (about 9 MiB of resident memory in ClStock's
API). They are instrumented when the application first imports ``grpc`` (at once if
it already has), through a post-import hook: an application that uses gRPC gets the
same instrumentation, one that does not pays nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from clstock_otel_distro import config
from clstock_otel_distro.environment_variables import (
    OTEL_PYTHON_CLSTOCK_CLICK_IN_SERVERS,
    OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS,
)

__all__ = [
    "POLICIES",
    "SERVER_PROGRAMS",
    "WAITS_FOR_IMPORT",
    "LeftOut",
    "launched_server",
    "left_out",
    "waits_for",
]

SERVER_PROGRAMS = frozenset({"uvicorn", "gunicorn", "hypercorn", "daphne", "granian"})
"""Programs whose process is a long-running server."""

# Interpreter options that take the next argument as their value.
_OPTIONS_WITH_VALUE = frozenset({"-X", "-W", "-Q"})


def _program(argv: Sequence[str]) -> str | None:
    """The program an interpreter command line runs: ``-m`` module or script name."""
    args = iter(argv[1:])
    for arg in args:
        if arg == "-m":
            module = next(args, "")
            return module.split(".")[0] or None
        if arg == "-c":
            return None
        if arg in _OPTIONS_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            name = os.path.basename(arg)
            return name[:-3] if name.endswith(".py") else name
    return None


def launched_server(argv: Sequence[str] | None = None) -> str | None:
    """The server program this process was launched as, or None."""
    if argv is None:
        # sys.orig_argv (3.10+) keeps "-m uvicorn", which sys.argv loses while the
        # module is located; the script path of a console script is in both.
        argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    if argv and os.path.basename(argv[0]) in SERVER_PROGRAMS:
        return os.path.basename(argv[0])  # a frozen or directly executed program
    program = _program(argv)
    return program if program in SERVER_PROGRAMS else None


@dataclass(frozen=True)
class LeftOut:
    """An instrumentation the distro does not load unless its switch says so."""

    entry_point: str
    switch: str
    servers_only: bool
    why: str


POLICIES: tuple[LeftOut, ...] = (
    LeftOut("click", OTEL_PYTHON_CLSTOCK_CLICK_IN_SERVERS, True,
            "in a server process its command span would parent every request"),
    LeftOut("sqlite3", OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS, False,
            "yfinance's cache bookkeeping would add dozens of spans to each request"),
)


def left_out(entry_point: str, *, server: bool | None = None) -> LeftOut | None:
    """The policy that leaves this instrumentation out, if any.

    ``server`` says whether the process is a server; by default, this process.
    """
    for policy in POLICIES:
        if policy.entry_point != entry_point or config.switch(policy.switch):
            continue
        if policy.servers_only and not (launched_server() is not None if server is None
                                        else server):
            continue
        return policy
    return None


WAITS_FOR_IMPORT: dict[str, str] = {
    "grpc_client": "grpc",
    "grpc_server": "grpc",
    "grpc_aio_client": "grpc",
    "grpc_aio_server": "grpc",
}
"""Instrumentations instrumented only once the application imports their library."""


def waits_for(entry_point: str) -> str | None:
    """The module whose first import instruments this instrumentation, if it waits for one
    that is not imported yet."""
    module = WAITS_FOR_IMPORT.get(entry_point)
    return module if module is not None and module not in sys.modules else None
