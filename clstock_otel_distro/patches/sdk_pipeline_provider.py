"""The SDK's configuration builds the distro's span pipeline provider.

``opentelemetry.sdk._configuration._initialize_components`` constructs the
``TracerProvider`` itself, by the name it imported into that (private) module. For
the duration of the configurator's SDK call the name refers to
:class:`~clstock_otel_distro.sdk.pipeline.tracer.PipelineTracerProvider`, a subclass
with the same constructor
(:func:`clstock_otel_distro.sdk.pipeline.wiring.sdk_builds_pipeline_provider`
installs and undoes this patch around that call). Off with
``OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE=sdk``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["PATCH", "patch"]

_NAME = "TracerProvider"


def _shape(module: ModuleType) -> str | None:
    from opentelemetry.sdk.trace import TracerProvider

    if module.__dict__.get(_NAME) is not TracerProvider:
        return f"{_NAME} there is not the SDK's TracerProvider"
    if not callable(module.__dict__.get("_init_tracing")):
        return "_init_tracing is missing"
    return None


def _pipeline_off() -> str | None:
    from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE
    from clstock_otel_distro.sdk.pipeline.wiring import pipeline_enabled

    return None if pipeline_enabled() else f"{OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE}=sdk"


def patch(module: ModuleType) -> Callable[[], None]:
    """Make ``module.TracerProvider`` the pipeline's provider class."""
    from clstock_otel_distro.sdk.pipeline.tracer import PipelineTracerProvider

    original = module.__dict__[_NAME]
    setattr(module, _NAME, PipelineTracerProvider)

    def undo() -> None:
        if module.__dict__.get(_NAME) is PipelineTracerProvider:
            setattr(module, _NAME, original)

    return undo


PATCH = UpstreamPatch(
    name="sdk-pipeline-provider", distribution="opentelemetry-sdk", versions=">=1.45,<1.46",
    module="opentelemetry.sdk._configuration", symbol=_NAME,
    purpose="the span pipeline (the SDK's spans otherwise)",
    shape=_shape, apply=patch, wanted=_pipeline_off,
)
