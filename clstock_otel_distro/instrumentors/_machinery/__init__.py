"""The machinery the five instrumentors share. How a call becomes a span, top to bottom:

1. **Declare** (``specs.py``). An instrumentor lists its targets with a
   :class:`TraceSpec` each: span name and kind, and extractor factories for the
   attributes read from the arguments (:func:`arg`, bound to the signature once by
   ``arguments.py``) and from the result (:func:`result`). An HTTP client whose span
   depends on each call gives a ``per_call`` hook returning a :class:`CallDetail`.
   Its tracer, histogram and settings are one :class:`InstrumentationTelemetry`
   (``telemetry.py``).
2. **Patch lazily** (``patches.py``, ``instrumentor.py``). :class:`AttributePatch` and
   :class:`ClassPatch` register a post-import hook and import nothing; when the
   application imports the module, each target (a method where it is defined, on a
   class and all its subclasses, present and future) is replaced by a marker wrapt
   proxy (``proxies.py``: recognisable, picklable, restored by ``uninstall()``).
   :class:`PatchingInstrumentor` installs and undoes them; :func:`trace_classes` is
   the whole body of an instrumentor of ClStock's classes.
3. **Build the wrapper** (``drivers.py``). At patch time :func:`traced` makes an
   ``Operation`` (``calls.py``): everything known before any call (name, code
   attributes, extractors, metric attributes), and the driver matching the target:
   function, coroutine, generator or async generator.
4. **Begin** (``calls.py``, ``sampling.py``). On each call ``Operation.begin`` calls
   straight through when instrumentation is suppressed; under a non-sampled parent
   whose sampler drops such children it only measures (the fast path); otherwise it
   starts the span, computes the call-time attributes only if it records (each
   extractor guarded, ``values.py``), and makes it current.
5. **End** (``calls.py``, ``values.py``, ``durations.py``). The driver runs the
   target and ends the call with its value or exception: result attributes, a
   hidden failure (an empty frame, an HTTP status) or the exception as status ERROR
   and ``error.type``, the span's end, then the duration in the histogram: at once
   for a recorded span, at the next metrics collection for a non-sampled call. The
   exception itself reaches the application unchanged.

The hot path (steps 4 and 5) is judged by ``bench/per_call.py`` (time) and
``bench/per_call_instructions.py`` (callgrind instructions per call, split into the
machinery, the span, its export and the metric record).
"""

from __future__ import annotations

from clstock_otel_distro.instrumentors._machinery.arguments import ArgumentSlot
from clstock_otel_distro.instrumentors._machinery.drivers import traced
from clstock_otel_distro.instrumentors._machinery.instrumentor import (
    APPLICATION_CODE,
    PatchingInstrumentor,
    configured_targets,
    targets_origin,
    trace_classes,
)
from clstock_otel_distro.instrumentors._machinery.patches import (
    AttributePatch,
    ClassPatch,
    RegisteredPatch,
    install_all,
)
from clstock_otel_distro.instrumentors._machinery.specs import (
    CallDetail,
    CallExtractor,
    PerCall,
    ResultExtractor,
    Target,
    TraceSpec,
    Wrapper,
    WrapperFactory,
    arg,
    result,
)
from clstock_otel_distro.instrumentors._machinery.telemetry import (
    InstrumentationTelemetry,
    clstock_telemetry,
)
from clstock_otel_distro.instrumentors._machinery.values import sized_len

__all__ = [
    "APPLICATION_CODE",
    "ArgumentSlot",
    "AttributePatch",
    "CallDetail",
    "CallExtractor",
    "ClassPatch",
    "InstrumentationTelemetry",
    "PatchingInstrumentor",
    "PerCall",
    "RegisteredPatch",
    "ResultExtractor",
    "Target",
    "TraceSpec",
    "Wrapper",
    "WrapperFactory",
    "arg",
    "clstock_telemetry",
    "configured_targets",
    "install_all",
    "result",
    "sized_len",
    "targets_origin",
    "trace_classes",
    "traced",
]
