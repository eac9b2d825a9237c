"""The per-call workload of ``bench/per_call_instructions.py``, run under callgrind.

    opentelemetry-instrument python bench/_call_worker.py

ClStock's real predictor (``models.predictor.create_predictor()``: a
``MomentumPredictor``), imported from this checkout's ``clstock/`` after the distro
instrumented the process, so its ``calculate_score`` is wrapped by the distro's own
predictor instrumentor (its real spec: ``clstock.symbol``, ``clstock.score``, code
attributes, runtime class). Its data access (``_latest_features``: a price history and
pandas indicators, some millions of instructions) is replaced on the instance by a
precomputed features dict, so that a call's own work is a few dict reads and the
window measures the wrapper, not pandas. Every call runs under one sampled parent
span of the distro's provider, made current once.

The driver talks to it one line at a time on stdin/stdout: ``settle`` (a full
collection; answers ``settled``), ``run MODE N`` (N calls in MODE, then the tracer
provider's ``force_flush()``, so the window's spans are encoded and sent before it
ends; answers ``done``), ``quit``. The modes (each a way to split the traced call):

- ``bare``       the unwrapped method: the call's own work;
- ``traced``     the wrapped method: everything (wrapper, machinery, span, processor,
                 encoding, sending, the duration's ``Histogram.record``);
- ``noexport``   the wrapped method with the tracers' end hook off (spans are not
                 queued, so neither encoded nor sent);
- ``nometric``   the wrapped method with the operation's duration recording off;
- ``span``       no wrapper: the span the wrapper makes, by hand (``start_span`` with
                 the same attributes, ``set_attributes`` of the score, ``end``), end hook
                 off: the span pipeline's start and end alone.

Before the first command it warms every mode up and answers ``ready``.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

HERE = Path(__file__).resolve().parent
MODES = ("bare", "traced", "noexport", "nometric", "span")
SYMBOLS = ("7203", "6758", "9984", "8306", "6861", "9432", "4063", "6098", "8035", "4502")
WARM_UP_CALLS = 64
# What MomentumPredictor.calculate_score reads (the last row of technical_features()).
FEATURES = {"return_5d": 0.01, "return_20d": 0.03, "return_60d": 0.07,
            "price_to_sma20": 0.012, "sma20_to_sma60": 0.021, "rsi_14": 0.56,
            "volatility_20d": 0.018, "volume_ratio": 0.1}


def _operation_of(wrapper: Any) -> Any:
    """The machinery's Operation behind a traced method (held by its driver's closure)."""
    from clstock_otel_distro.instrumentors._machinery.calls import Operation

    function = getattr(wrapper, "_self_wrapper", None)
    for cell in getattr(function, "__closure__", None) or ():
        if isinstance(cell.cell_contents, Operation):
            return cell.cell_contents
    raise RuntimeError(f"{wrapper!r} is not a method traced by the distro")


class Workload:
    """The predictor, its traced method, and the switches of each mode."""

    def __init__(self) -> None:
        sys.path.insert(0, str(HERE.parent / "clstock"))
        from models.predictor import create_predictor

        self.provider = trace.get_tracer_provider()
        self.predictor = create_predictor()
        self.predictor._latest_features = lambda symbol: FEATURES
        cls = type(self.predictor)
        self.wrapper = cls.__dict__["calculate_score"]
        self.original = self.wrapper.__wrapped__
        self.operation = _operation_of(self.wrapper)
        self.tracer = self.operation.tracer
        self.parent = self.tracer.start_span("bench.request")
        otel_context.attach(trace.set_span_in_context(self.parent))

    def _tracers(self) -> list[Any]:
        return [tracer for tracer in getattr(self.provider, "_tracers", {}).values()
                if hasattr(tracer, "_on_end")]

    def _loop(self, mode: str) -> Callable[[int], None]:
        predictor, original, operation = self.predictor, self.original, self.operation
        if mode == "bare":
            def loop(count: int) -> None:
                for number in range(count):
                    original(predictor, SYMBOLS[number % 10])
        elif mode == "span":
            tracer, name, kind = self.tracer, operation.name, operation.kind
            static = operation.static_attributes
            key = next(key for key, _ in operation.call_extractors)
            result_key = next(key for key, _ in operation.result_extractors)

            def loop(count: int) -> None:
                for number in range(count):
                    symbol = SYMBOLS[number % 10]
                    span = tracer.start_span(name, None, kind, {**static, key: symbol})
                    span.set_attributes({result_key: original(predictor, symbol)})
                    span.end()
        else:
            method = predictor.calculate_score

            def loop(count: int) -> None:
                for number in range(count):
                    method(SYMBOLS[number % 10])
        return loop

    def run(self, mode: str, count: int) -> None:
        tracers = self._tracers()
        saved_ends = [tracer._on_end for tracer in tracers]
        records = self.operation._records
        if mode in ("noexport", "span"):
            for tracer in tracers:
                tracer._on_end = None
        if mode == "nometric":
            self.operation._records = False
        try:
            self._loop(mode)(count)
        finally:
            for tracer, on_end in zip(tracers, saved_ends):
                tracer._on_end = on_end
            self.operation._records = records
        self.provider.force_flush()


def main() -> int:
    workload = Workload()
    for mode in MODES:
        workload.run(mode, WARM_UP_CALLS)
    print("ready", flush=True)
    for line in sys.stdin:
        command, *arguments = line.split()
        if command == "settle":
            gc.collect()
            print("settled", flush=True)
        elif command == "run":
            mode, count = arguments
            workload.run(mode, int(count))
            print("done", flush=True)
        elif command == "quit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
