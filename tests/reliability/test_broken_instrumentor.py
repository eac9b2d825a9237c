"""A broken instrumentation package installed beside the distro costs nothing but itself.

A throwaway distribution is put on PYTHONPATH (a module and a ``*.dist-info`` with an
``opentelemetry_instrumentor`` entry point), found before the real ones, whose
``_instrument`` raises. Upstream's loader re-raises such an exception, which ends the
loop: every instrumentor after it stays unloaded. Under the distro it is skipped with
one warning naming it, and the API, with all the other instrumentations, works.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import otlp_env
from tests.reliability.conftest import traceparent, wait_for_traces
from tests.support.processes import GRACEFUL_EXIT_CODES

_MODULE = textwrap.dedent('''
    """An instrumentation whose _instrument always fails."""
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor


    class BrokenInstrumentor(BaseInstrumentor):
        def instrumentation_dependencies(self):
            return ()

        def _instrument(self, **kwargs):
            raise RuntimeError("broken on purpose")

        def _uninstrument(self, **kwargs):
            pass
''')


@pytest.fixture
def broken_distribution(tmp_path: Path) -> Path:
    """A directory holding an installed-looking package with a raising instrumentor."""
    (tmp_path / "clstock_broken_instrumentation.py").write_text(_MODULE)
    dist_info = tmp_path / "clstock_broken_instrumentation-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: clstock-broken-instrumentation\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[opentelemetry_instrumentor]\n"
        "broken_lib = clstock_broken_instrumentation:BrokenInstrumentor\n")
    return tmp_path


def test_broken_instrumentor_is_skipped_and_the_rest_work(launch, receiver, replay,
                                                          broken_distribution):
    """The raising instrumentor: one warning naming it; FastAPI and ClStock spans still come."""
    api = launch("broken-instrumentor", env={
        **otlp_env(receiver), "OTEL_SERVICE_NAME": "clstock-broken",
        "CLSTOCK_YAHOO_URL": replay.url, "PYTHONPATH": str(broken_distribution)})
    trace_id, headers = traceparent()
    answer = requests.get(api.url + "/api/v1/predict/7203", headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["symbol"] == "7203"
    assert api.stop() in GRACEFUL_EXIT_CODES

    log = api.log_text()
    assert log.count("Instrumentation 'broken_lib' failed and was skipped "
                     "(RuntimeError: broken on purpose)") == 1, log
    assert "Traceback" not in log
    spans = wait_for_traces(receiver, [trace_id])
    scopes = {s.scope_name for s in spans}
    # The upstream FastAPI instrumentation and the distro's own ClStock instrumentors.
    assert "opentelemetry.instrumentation.fastapi" in scopes
    assert any(scope.startswith("clstock_otel_distro.instrumentors") for scope in scopes), scopes
    assert any(s.name == "StockPredictor.predict" for s in spans), [s.name for s in spans]
