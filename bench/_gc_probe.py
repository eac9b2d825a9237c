"""A benchmark-only uvicorn launcher: records garbage-collector pauses, and can try settings.

    [opentelemetry-instrument] python bench/_gc_probe.py app.main:app --port 8000 ...

It takes uvicorn's command line and runs uvicorn, plain or under
``opentelemetry-instrument`` alike (sitecustomize has run by the time this script
does), after arming what the environment asks for:

- ``BENCH_GC_LOG=FILE``: every collection is timed through ``gc.callbacks``, in wall
  time (the pause the process sees) and in the collecting thread's CPU time (the
  collector's own work, whatever else the machine runs); on SIGUSR1 the collections
  since the last SIGUSR2 (or start) are written to FILE as JSON (``{"pauses":
  {generation: [wall seconds, ...]}, "cpu": {generation: [cpu seconds, ...]}, ...}``);
  SIGUSR2 starts over.
- ``BENCH_GC_FREEZE=1``: import the application, collect, then ``gc.freeze()``
  before serving (start-up objects leave the collector's generations for good);
  ``BENCH_GC_FREEZE=early``: collect and freeze before importing the application,
  i.e. right after ``opentelemetry-instrument``'s sitecustomize (what a distro's
  post-instrument hook can do); ``BENCH_GC_FREEZE=startup``: ``gc.freeze()`` (no
  collection) when uvicorn's ``Server.startup`` returns: the application imported,
  its lifespan started, no request served yet (what a distro can do with a post-import
  hook on ``uvicorn.server``, in every worker: the distro's default now).
- ``BENCH_GC_THRESHOLD=700,10,10``: ``gc.set_threshold`` before serving.
- ``BENCH_FASTAPI_KWARGS={"exclude_spans": ["receive", "send"]}``: extra arguments
  for the FastAPI instrumentation of the app about to be created (``"meter_provider":
  "noop"`` gives it a no-op MeterProvider: no HTTP server metrics), e.g. to give
  upstream's distro the ASGI spans ours leaves out by default.

Nothing here is part of the distro, and ClStock is not modified.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any


class _PauseLog:
    """Collector pauses per generation, written on SIGUSR1, reset on SIGUSR2."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self.cpu: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self.collected = 0
        self._started = (0.0, 0.0)

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        # Collections run with the GIL held, one at a time: one start slot is enough.
        if phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
            return
        wall = time.perf_counter() - self._started[0]
        cpu = time.thread_time() - self._started[1]
        with self.lock:
            self.pauses[info["generation"]].append(wall)
            self.cpu[info["generation"]].append(cpu)
            self.collected += info.get("collected", 0)

    def dump(self, *_: Any) -> None:
        with self.lock:
            data = {"pauses": self.pauses, "cpu": self.cpu, "collected": self.collected,
                    "frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}
            self.path.write_text(json.dumps(data))

    def reset(self, *_: Any) -> None:
        with self.lock:
            self.pauses = {0: [], 1: [], 2: []}
            self.cpu = {0: [], 1: [], 2: []}
            self.collected = 0


def _fastapi_kwargs(raw: str) -> None:
    try:
        from opentelemetry.instrumentation.fastapi import _InstrumentedFastAPI
    except ImportError:  # plain: nothing instrumented
        return
    extra = json.loads(raw)
    if extra.get("meter_provider") == "noop":
        from opentelemetry.metrics import NoOpMeterProvider

        extra["meter_provider"] = NoOpMeterProvider()
    _InstrumentedFastAPI._instrument_kwargs = {**_InstrumentedFastAPI._instrument_kwargs,
                                               **extra}


def _freeze_at_startup() -> None:
    import wrapt

    async def startup(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        result = await wrapped(*args, **kwargs)
        gc.freeze()
        return result

    wrapt.register_post_import_hook(
        lambda module: wrapt.wrap_function_wrapper(module, "Server.startup", startup),
        "uvicorn.server")


def main() -> None:
    if os.environ.get("BENCH_GC_LOG"):
        log = _PauseLog(Path(os.environ["BENCH_GC_LOG"]))
        gc.callbacks.append(log.callback)
        signal.signal(signal.SIGUSR1, log.dump)
        signal.signal(signal.SIGUSR2, log.reset)
    if os.environ.get("BENCH_FASTAPI_KWARGS"):
        _fastapi_kwargs(os.environ["BENCH_FASTAPI_KWARGS"])
    if os.environ.get("BENCH_GC_THRESHOLD"):
        gc.set_threshold(*(int(x) for x in os.environ["BENCH_GC_THRESHOLD"].split(",")))
    if os.environ.get("BENCH_GC_FREEZE") == "startup":
        _freeze_at_startup()
    if os.environ.get("BENCH_GC_FREEZE") == "early":
        gc.collect()
        gc.freeze()
    if os.environ.get("BENCH_GC_FREEZE") == "1":
        # The app module named on the command line, imported now from the app dir
        # (uvicorn then finds it in sys.modules): its start-up objects get frozen.
        app = next(arg for arg in sys.argv[1:] if ":" in arg and not arg.startswith("-"))
        sys.path.insert(0, os.getcwd())
        importlib.import_module(app.split(":", 1)[0])
        gc.collect()
        gc.freeze()
    import uvicorn.main

    sys.argv[0] = "uvicorn"
    uvicorn.main.main()


if __name__ == "__main__":
    main()
