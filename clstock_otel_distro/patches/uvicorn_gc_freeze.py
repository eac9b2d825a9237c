"""Freeze the start-up heap once uvicorn has started: full collections stop walking it.

Spans wait in the batch processor's queue for up to a second, long enough to be
promoted to the collector's oldest generation, so a traced process runs full
collections about three times as often as an untraced one, and each walks the whole
heap: pandas, numpy, FastAPI, the SDK, everything imported at start-up (pauses of
78-110 ms measured on ClStock, bench/gc_pauses.py). ``gc.freeze()`` moves the objects
alive at that moment to a permanent generation the collector no longer scans: a full
collection then takes 10-25 ms, and the collector's CPU per request is back to an
untraced process's.

It is the moment CPython's documentation recommends (after start-up, before serving:
pre-fork servers do it for copy-on-write). What it changes for the application: a
reference cycle among the frozen objects that becomes garbage later is not reclaimed
(reference counting still frees everything else). Start-up objects live as long as
the process, so measured RSS does not change (bench/memory.py).
``OTEL_PYTHON_CLSTOCK_GC_FREEZE=false`` turns it off.
"""

from __future__ import annotations

import gc
from types import ModuleType
from typing import Any

import wrapt

from clstock_otel_distro.patches._hooks import when_imported

__all__ = ["install"]

_MODULE = "uvicorn.server"


def install() -> None:
    """``gc.freeze()`` when uvicorn's ``Server.startup()`` returns, in every worker.

    A post-import hook: nothing is imported here, and a process that never imports
    uvicorn (a batch job, another server) is not touched. gunicorn's uvicorn workers
    and ``--reload``/``--workers`` children run the same ``Server.startup``.
    """
    when_imported(_MODULE, _patch, "no gc.freeze() at start-up")


def _patch(module: ModuleType) -> None:
    wrapt.wrap_function_wrapper(module, "Server.startup", _startup)


async def _startup(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    result = await wrapped(*args, **kwargs)
    # The app is imported and its lifespan has run; no request has been served.
    # No gc.collect() first: at this point it finds next to no garbage (measured) and
    # would add 60-100 ms to start-up.
    gc.freeze()
    return result
