"""Traces any extra ClStock callable named in ``OTEL_PYTHON_CLSTOCK_TRACE_METHODS``.

Each comma-separated entry is ``module:Class.method`` or ``module:function``:

    OTEL_PYTHON_CLSTOCK_TRACE_METHODS="models.predictor:StockPredictor._latest_features,data.stock_data:frame_from_rows"

A method gets an INTERNAL span named ``Class.method`` where it is defined, on the
class and on every subclass overriding it (present and future), with
``clstock.runtime_class`` for subclass instances; a function gets a span named after
it. Spans carry the code attributes; coroutine functions, generators and async
generators are traced for their whole run. Durations go to the
``clstock.operation.duration`` histogram. A malformed entry is skipped with one
warning naming the variable and the entry; the others still apply. Usage::

    ClStockMethodsInstrumentor().instrument(tracer_provider=provider)
    ClStockMethodsInstrumentor().instrument(targets=["pkg.mod:Cls.meth"])  # no env var

Module-level functions are replaced in their module: code that imported the function
itself (``from module import function``) before the module was patched keeps calling
the original.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from clstock_otel_distro.environment_variables import (
    DEFAULT_CLSTOCK_TRACE_METHODS,
    OTEL_PYTHON_CLSTOCK_TRACE_METHODS,
)
from clstock_otel_distro.instrumentors._machinery import (
    APPLICATION_CODE,
    AttributePatch,
    ClassPatch,
    PatchingInstrumentor,
    TraceSpec,
    clstock_telemetry,
    configured_targets,
    install_all,
    targets_origin,
    traced,
)

__all__ = ["ClStockMethodsInstrumentor"]

_instruments = APPLICATION_CODE

_SPEC = TraceSpec()  # the span name and code attributes say it all


class ClStockMethodsInstrumentor(PatchingInstrumentor):
    """Traces the extra methods and functions listed in OTEL_PYTHON_CLSTOCK_TRACE_METHODS."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _install(self, **kwargs: Any) -> list[Any]:
        telemetry = clstock_telemetry(__name__, kwargs)
        wrapper = traced(telemetry, _SPEC)
        targets, missing_level = configured_targets(
            kwargs, OTEL_PYTHON_CLSTOCK_TRACE_METHODS, DEFAULT_CLSTOCK_TRACE_METHODS)
        origin = targets_origin(kwargs, OTEL_PYTHON_CLSTOCK_TRACE_METHODS)
        patches = []
        for module, qualname in targets:
            owner, _, name = qualname.rpartition(".")
            if owner:  # module:Class.method
                patches.append(ClassPatch(module, owner, {name: wrapper}, group=telemetry,
                                          missing_level=missing_level, require_methods=True,
                                          origin=origin))
            else:  # module:function
                patches.append(AttributePatch(module, name, wrapper, group=telemetry,
                                              missing_level=missing_level, origin=origin))
        return install_all(patches)
