"""Flush on SIGTERM: a terminated process still delivers its queued spans."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

_PROGRAM = textwrap.dedent("""
    import os, signal, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from clstock_otel_distro.sdk.shutdown import install_flush_on_terminate

    {setup}
    provider = TracerProvider()
    # A one-minute delay: only a flush can print the span before the process dies.
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(),
                                                   schedule_delay_millis=60000))
    trace.set_tracer_provider(provider)
    print("installed", [int(s) for s in install_flush_on_terminate()], flush=True)
    with trace.get_tracer("t").start_as_current_span("queued-span"):
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    print("survived the signal", flush=True)
""")


def _run(setup: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PROGRAM.format(setup=setup)],
                          capture_output=True, text=True, timeout=30, check=False)


def test_sigterm_flushes_then_terminates():
    """The queued span is exported, and the process still dies of SIGTERM."""
    result = _run()
    assert f"installed [{int(signal.SIGTERM)}]" in result.stdout
    assert '"name": "queued-span"' in result.stdout
    assert "survived the signal" not in result.stdout
    assert result.returncode == -signal.SIGTERM


def test_application_handler_is_left_alone():
    """A SIGTERM handler the application already has is not replaced."""
    result = _run("signal.signal(signal.SIGTERM, lambda *a: print('app handler', flush=True))")
    assert "installed []" in result.stdout
    assert "app handler" in result.stdout
    assert "survived the signal" in result.stdout
    assert result.returncode == 0


def test_not_installed_off_the_main_thread():
    """Signal handlers belong to the main thread: elsewhere nothing is installed."""
    code = textwrap.dedent("""
        import threading
        from clstock_otel_distro.sdk.shutdown import install_flush_on_terminate
        result = []
        thread = threading.Thread(target=lambda: result.append(install_flush_on_terminate()))
        thread.start(); thread.join()
        print(result)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert out.strip() == "[[]]"
