"""A benchmark-only uvicorn launcher for ``bench/instructions.py``: flush and settle on signal.

    [opentelemetry-instrument] valgrind --tool=callgrind ... \\
        python bench/_counted_server.py app.main:app --port 8000 ...

It takes uvicorn's command line and runs uvicorn (through ``bench/_gc_probe.py`` when
a ``BENCH_*`` setting asks for the probe), after installing two signal handlers that
make a counted window of requests start and end in the same state:

- SIGUSR2, before a window: ``gc.collect()``, so that every window starts with the
  collector's generations empty and its collections fall at the same places;
- SIGUSR1, after a window: ``force_flush()`` the tracer, meter and logger providers
  (whichever exist), so that every span, metric point and log record the window's
  requests made is encoded and sent inside the window, and the queues are empty for
  the next one.

Each handler appends one line to ``BENCH_ACK_FILE`` when it is done, so the driver
knows when to switch counting off. Nothing here is part of the distro, and ClStock is
not modified.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from pathlib import Path
from typing import Any

ACK_FILE = "BENCH_ACK_FILE"


def _ack(word: str) -> None:
    path = os.environ.get(ACK_FILE)
    if path:
        with open(path, "a") as ack:
            ack.write(word + "\n")


def _providers() -> list[Any]:
    providers = []
    try:
        from opentelemetry import metrics, trace

        providers += [trace.get_tracer_provider(), metrics.get_meter_provider()]
        from opentelemetry import _logs

        providers.append(_logs.get_logger_provider())
    except ImportError:  # plain: no OpenTelemetry at all
        pass
    return providers


def _flush(*_: Any) -> None:
    for provider in _providers():
        flush = getattr(provider, "force_flush", None)  # proxies and no-ops have none
        if flush is not None:
            flush()
    _ack("flushed")


def _settle(*_: Any) -> None:
    gc.collect()
    _ack("settled")


def main() -> None:
    signal.signal(signal.SIGUSR1, _flush)
    signal.signal(signal.SIGUSR2, _settle)
    if any(name.startswith("BENCH_") and name != ACK_FILE for name in os.environ):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import _gc_probe

        _gc_probe.main()
        return
    import uvicorn.main

    sys.argv[0] = "uvicorn"
    uvicorn.main.main()


if __name__ == "__main__":
    main()
