"""gc.freeze() once uvicorn has started: in subprocesses, since it freezes the whole heap."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A uvicorn server started and stopped in-process; the app's lifespan records the
# freeze count while it runs. Prints: before start-up, during lifespan, after start-up.
_SERVE = textwrap.dedent("""
    import asyncio, gc
    {setup}
    import uvicorn

    during = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    during.append(gc.get_freeze_count())
                    await send({{"type": "lifespan.startup.complete"}})
                elif message["type"] == "lifespan.shutdown":
                    await send({{"type": "lifespan.shutdown.complete"}})
                    return

    async def main():
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                               lifespan="on", log_level="warning"))
        before = gc.get_freeze_count()
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        after = gc.get_freeze_count()
        server.should_exit = True
        await serving
        print(before, during[0], after)

    asyncio.run(main())
""")

_INSTALL = ("from clstock_otel_distro.patches import registry, uvicorn_gc_freeze; "
            "registry.install(uvicorn_gc_freeze.PATCH)")


def _counts(output: str) -> tuple[int, int, int]:
    before, during, after = (int(word) for word in output.split())
    return before, during, after


def _run(setup: str) -> tuple[int, int, int]:
    done = subprocess.run([sys.executable, "-c", _SERVE.format(setup=setup)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return _counts(done.stdout)


@pytest.mark.parametrize("setup", [_INSTALL, "import uvicorn.server\n" + _INSTALL],
                         ids=["installed-before-uvicorn-import", "after"])
def test_freezes_once_the_server_has_started(setup):
    """Nothing is frozen before or during the app's lifespan start-up; all of it after."""
    before, during, after = _run(setup)
    assert before == 0
    assert during == 0
    assert after > 10_000  # the app, uvicorn, asyncio...: the start-up heap


def test_nothing_frozen_without_the_hook():
    assert _run("") == (0, 0, 0)


@pytest.mark.parametrize(("value", "frozen"), [(None, True), ("false", False),
                                               ("off", False), ("bogus", True)])
def test_under_opentelemetry_instrument(run_instrumented, value, frozen):
    """The distro installs it by default; OTEL_PYTHON_CLSTOCK_GC_FREEZE=false does not."""
    env = {"OTEL_TRACES_EXPORTER": "none"}
    if value is not None:
        env["OTEL_PYTHON_CLSTOCK_GC_FREEZE"] = value
    done = run_instrumented(_SERVE.format(setup=""), env)
    assert done.returncode == 0, done.stderr
    before, during, after = _counts(done.stdout)
    assert (before, during) == (0, 0)
    assert (after > 0) is frozen
    if value == "bogus":
        assert "OTEL_PYTHON_CLSTOCK_GC_FREEZE='bogus' is invalid" in done.stderr
