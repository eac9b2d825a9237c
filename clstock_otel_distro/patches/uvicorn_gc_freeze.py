"""Freeze the start-up heap once uvicorn has started: full collections stop walking it.

Spans wait in the batch processor's queue for up to a second, long enough to be
promoted to the collector's oldest generation, so a traced process runs full
collections about three times as often as an untraced one, and each walks the whole
heap: pandas, numpy, FastAPI, the SDK, everything imported at start-up (the pauses
and their cost are measured by bench/gc_pauses.py). ``gc.freeze()`` moves the objects
alive at that moment to a permanent generation the collector no longer scans: full
collections get short, and the collector's CPU per request is back to an untraced
process's.

It is the moment CPython's documentation recommends (after start-up, before serving:
pre-fork servers do it for copy-on-write). What it changes for the application: a
reference cycle among the frozen objects that becomes garbage later is not reclaimed
(reference counting still frees everything else). Start-up objects live as long as
the process, so measured RSS does not change (bench/memory.py).
``OTEL_PYTHON_CLSTOCK_GC_FREEZE=false`` turns it off. The wrapper of
``Server.startup`` is shared with the other start-up actions (``_uvicorn_startup``).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from types import ModuleType

from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_GC_FREEZE
from clstock_otel_distro.patches._uvicorn_startup import add_action, shape
from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["PATCH", "patch"]


def patch(module: ModuleType) -> Callable[[], None]:
    """``gc.freeze()`` when uvicorn's ``Server.startup()`` returns, in every worker.

    gunicorn's uvicorn workers and ``--reload``/``--workers`` children run the same
    ``Server.startup``; a process that never imports uvicorn is not touched.
    """
    return add_action(module, _freeze)


def _freeze() -> None:
    # The app is imported and its lifespan has run; no request has been served.
    # No gc.collect() first: at this point it finds next to no garbage and would make
    # start-up slower (bench/gc_pauses.py, bench/startup.py).
    gc.freeze()


PATCH = UpstreamPatch(
    name="uvicorn-gc-freeze", distribution="uvicorn", versions=">=0.29,<1",
    module="uvicorn.server", symbol="Server.startup",
    purpose="gc.freeze() once uvicorn has started",
    shape=shape, apply=patch, switch=OTEL_PYTHON_CLSTOCK_GC_FREEZE,
)
