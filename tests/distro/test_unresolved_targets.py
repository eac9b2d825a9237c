"""Configured targets whose module the application never imports: one warning per
variable once uvicorn has started, naming the variable and its value; nothing imported
to find out; a default target absent from this layout stays at DEBUG."""

from __future__ import annotations

import logging
import sys
import textwrap
import uuid
from collections.abc import Iterator

import pytest

from clstock_otel_distro.instrumentors._machinery import ClassPatch, TraceSpec, traced
from clstock_otel_distro.instrumentors._machinery.patches import AttributePatch, never_imported
from clstock_otel_distro.instrumentors._machinery.telemetry import InstrumentationTelemetry
from clstock_otel_distro.patches import uvicorn_unresolved_targets
from clstock_otel_distro.patches.uvicorn_unresolved_targets import report_never_imported
from clstock_otel_distro.semconv import CLSTOCK_OPERATION_DURATION, CLSTOCK_OPERATION_NAME

_ORIGIN = "OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS='{module}:Nope'"
_REPORTER = uvicorn_unresolved_targets.__name__


@pytest.fixture(autouse=True)
def nothing_reported_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uvicorn_unresolved_targets, "_reported", set())


@pytest.fixture
def wrappers(telemetry) -> dict:
    tel = InstrumentationTelemetry("tests.unresolved", telemetry.kwargs,
                                   histogram=CLSTOCK_OPERATION_DURATION,
                                   operation_key=CLSTOCK_OPERATION_NAME)
    return {"calculate_score": traced(tel, TraceSpec())}


@pytest.fixture
def absent_module() -> Iterator[str]:
    """A module name nothing imports (and that does not exist)."""
    name = f"clstock_absent_{uuid.uuid4().hex}"
    yield name
    sys.modules.pop(name, None)


def _class_patch(module: str, wrappers: dict, *, level: int = logging.WARNING,
                 origin: str | None = "<origin>") -> ClassPatch:
    return ClassPatch(module, "Nope", wrappers, missing_level=level, origin=origin)


def test_a_watched_patch_is_listed_until_its_module_is_imported(wrappers, patches, module):
    """Listed while its module is not imported; an imported one never is."""
    absent = _class_patch(f"{module.__name__}_later", wrappers)
    present = _class_patch(module.__name__, wrappers)  # its module is already imported
    patches.extend([absent.install(), present.install()])
    assert never_imported() == [absent]
    later = type(sys)(absent.module)
    sys.modules[absent.module] = later
    try:
        assert never_imported() == []
    finally:
        del sys.modules[absent.module]


def test_only_patches_with_an_origin_still_armed_are_watched(wrappers, absent_module):
    unnamed = _class_patch(absent_module, wrappers, origin=None).install()
    named = AttributePatch(absent_module, "function", lambda target: None,
                           origin="<origin>").install()
    try:
        assert never_imported() == [named]
    finally:
        named.uninstall()
        unnamed.uninstall()
    assert never_imported() == []


def test_one_warning_per_variable_naming_its_value_and_targets(wrappers, patches, caplog,
                                                                absent_module):
    origin = _ORIGIN.format(module=absent_module)
    patches.append(_class_patch(absent_module, wrappers, origin=origin).install())
    patches.append(ClassPatch(absent_module, "Other", wrappers, origin=origin).install())
    with caplog.at_level(logging.DEBUG, logger=_REPORTER):
        report_never_imported("when uvicorn finished starting")
        report_never_imported("when uvicorn finished starting")  # once per process
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(
        logging.WARNING,
        f"clstock-otel: {origin}: {absent_module}:Nope, {absent_module}:Other are not traced: "
        f"the application had not imported {absent_module} when uvicorn finished starting "
        "(a module imported later is traced from then on)")]
    assert absent_module not in sys.modules


def test_a_default_target_absent_from_this_layout_is_debug_only(wrappers, patches, caplog,
                                                                absent_module):
    origin = "the default of OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS"
    patches.append(_class_patch(absent_module, wrappers, level=logging.DEBUG,
                                origin=origin).install())
    with caplog.at_level(logging.DEBUG, logger=_REPORTER):
        report_never_imported("when uvicorn finished starting")
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert origin in caplog.records[0].getMessage()


def test_a_missing_class_in_an_imported_module_names_the_variable(wrappers, patches, caplog,
                                                                  module):
    """Reported at import by the instrumentation, with where the target was configured."""
    origin = _ORIGIN.format(module=module.__name__)
    with caplog.at_level(logging.WARNING):
        patches.append(_class_patch(module.__name__, wrappers, origin=origin).install())
    assert [r.getMessage() for r in caplog.records] == [
        f"clstock-otel: {module.__name__} has no class Nope; not traced ({origin})"]


# A uvicorn server started and stopped in-process under opentelemetry-instrument; the
# app imports nothing. Prints whether the existing-but-unimported target module got
# imported by the check.
_SERVE = textwrap.dedent("""
    import asyncio, sys
    import uvicorn

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def main():
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                               lifespan="on", log_level="warning"))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        print("started", file=sys.stderr, flush=True)
        server.should_exit = True
        await serving
        print("xml.dom.minidom" in sys.modules)

    asyncio.run(main())
""")

_VARIABLES = {
    "OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS": "nonexistent.module:Nope",
    "OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS": "nonexistent.provider:Provider",
    "OTEL_PYTHON_CLSTOCK_TRACE_METHODS": "xml.dom.minidom:parseString",
}


def test_under_opentelemetry_instrument_after_uvicorn_started(run_instrumented):
    """One warning per variable, after the start-up, and the existing module not imported."""
    done = run_instrumented(_SERVE, {"OTEL_TRACES_EXPORTER": "none", **_VARIABLES})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # nothing imported to find out
    warnings = [line for line in done.stderr.splitlines() if "are not traced" in line
                or "is not traced" in line]
    assert len(warnings) == 3, done.stderr
    for variable, value in _VARIABLES.items():
        [line] = [line for line in warnings if f"{variable}={value!r}" in line]
        assert f": {value} is not traced: the application had not imported" in line
        assert "when uvicorn finished starting" in line


def test_no_uvicorn_no_warning(run_instrumented):
    """The check waits for uvicorn's start-up: a process that never starts it says nothing."""
    done = run_instrumented("print('done')", {"OTEL_TRACES_EXPORTER": "none", **_VARIABLES})
    assert done.returncode == 0, done.stderr
    assert "not traced" not in done.stderr, done.stderr


def test_under_opentelemetry_instrument_the_defaults_are_silent(run_instrumented):
    """None of the default targets exists in a bare uvicorn app: no warning about them."""
    done = run_instrumented(_SERVE, {"OTEL_TRACES_EXPORTER": "none"})
    assert done.returncode == 0, done.stderr
    assert "not traced" not in done.stderr, done.stderr


def test_gc_freeze_and_this_check_share_one_wrapper_of_server_startup():
    """Both entries active: Server.startup is wrapped once; undone only when both are."""
    from uvicorn import server

    from clstock_otel_distro.patches import registry, uvicorn_gc_freeze
    from clstock_otel_distro.patches.registry import PatchState

    original = vars(server.Server)["startup"]
    entries = (uvicorn_gc_freeze.PATCH, uvicorn_unresolved_targets.PATCH)
    try:
        assert [registry.install(entry) for entry in entries] == [PatchState.ACTIVE] * 2
        wrapper = vars(server.Server)["startup"]
        assert wrapper is not original and wrapper.__wrapped__ is original
        registry.uninstall(uvicorn_gc_freeze.PATCH)
        assert vars(server.Server)["startup"] is wrapper
    finally:
        for entry in entries:
            registry.uninstall(entry)
    assert vars(server.Server)["startup"] is original
