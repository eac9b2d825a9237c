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
knows when to switch counting off. The work is not done in the signal handler itself
but queued on the event loop: a Python signal handler runs between any two bytecodes
of the main thread, possibly inside the tail of the last request (uvicorn has sent
the response, the ASGI middleware has yet to end the server span), and a flush there
would leave that span to the next window. Queued, it runs once the request's task
step is over.

And it slows uvicorn's idle tick from ten a second to one every ``TICK_SECONDS``.
The tick (the Date header, the exit check) costs the same instructions per second of
wall time whatever the load; a request under callgrind takes forty times as long as
natively, so at ten ticks a second the ticks would be counted as a few percent of a
small request, varying with how busy the machine is. Natively they are a fraction of
a per mille. Nothing here is part of the distro, and ClStock is not modified.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ACK_FILE = "BENCH_ACK_FILE"
TICK_SECONDS = 5.0


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


def _flush() -> None:
    for provider in _providers():
        flush = getattr(provider, "force_flush", None)  # proxies and no-ops have none
        if flush is not None:
            flush()
    _ack("flushed")


def _settle() -> None:
    gc.collect()
    _ack("settled")


def _on_the_loop(work: Callable[[], None]) -> Callable[[int, Any], None]:
    """A signal handler that queues ``work`` on the running event loop (or runs it now
    when there is none yet)."""
    def handler(signum: int, frame: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # before uvicorn's loop runs
            work()
            return
        loop.call_soon_threadsafe(work)

    return handler


async def _slow_main_loop(server: Any) -> None:
    # uvicorn's Server.main_loop with one tick every TICK_SECONDS. on_tick refreshes
    # the Date header when its counter is a multiple of 10 (once a second at the usual
    # rate): here every tick does.
    counter = 0
    should_exit = await server.on_tick(counter)
    while not should_exit:
        counter = (counter + 10) % 864000
        await asyncio.sleep(TICK_SECONDS)
        should_exit = await server.on_tick(counter)


def _slow_ticks() -> None:
    import wrapt

    async def main_loop(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> None:
        await _slow_main_loop(instance)

    wrapt.register_post_import_hook(
        lambda module: wrapt.wrap_function_wrapper(module, "Server.main_loop", main_loop),
        "uvicorn.server")


def main() -> None:
    signal.signal(signal.SIGUSR1, _on_the_loop(_flush))
    signal.signal(signal.SIGUSR2, _on_the_loop(_settle))
    _slow_ticks()
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
