"""Import / instrument / uninstrument orders, each in a fresh interpreter.

Like dd-trace-py's patch matrix: whatever the order in which the application imports
its modules and the instrumentor is (un)installed, a target is wrapped exactly once
while instrumented and is the original object otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# A small application package with the upstream layout: a base predictor and a
# subclass overriding the traced method (calling super()).
_APP = {
    "toyapp/__init__.py": "",
    "toyapp/models.py": textwrap.dedent("""
        class StockPredictor:
            def calculate_score(self, symbol):
                return float(len(symbol))

        class MomentumPredictor(StockPredictor):
            def calculate_score(self, symbol):
                return super().calculate_score(symbol) + 1
    """),
}

# Runs the steps given as argv[1] and prints what it saw as JSON.
_SCRIPT = textwrap.dedent("""
    import json, sys
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from clstock_otel_distro.instrumentors._machinery.proxies import is_traced
    from clstock_otel_distro.instrumentors.predictor import ClStockPredictorInstrumentor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = ClStockPredictorInstrumentor()
    app = originals = None
    late = []
    for step in sys.argv[1].split(","):
        if step == "import":
            import toyapp.models as app
            originals = {cls: vars(cls)["calculate_score"]
                         for cls in (app.StockPredictor, app.MomentumPredictor)}
            originals = {c: getattr(f, "__wrapped__", f) for c, f in originals.items()}
        elif step == "instrument":
            instrumentor.instrument(tracer_provider=provider,
                                    targets=["toyapp.models:StockPredictor"])
        elif step == "uninstrument":
            instrumentor.uninstrument()
        elif step == "subclass":
            class LatePredictor(app.StockPredictor):
                def calculate_score(self, symbol):
                    return super().calculate_score(symbol) * 2
            late.append(LatePredictor)
    classes = [app.StockPredictor, app.MomentumPredictor, *late]
    for cls in classes:
        cls().calculate_score("7203")
    print(json.dumps({
        "spans": sorted(span.name for span in exporter.get_finished_spans()),
        "traced": {cls.__name__: is_traced(vars(cls)["calculate_score"]) for cls in classes},
        "originals_back": all(vars(cls)["calculate_score"] is original
                              for cls, original in originals.items()),
        "subclass_hook": "__init_subclass__" in vars(app.StockPredictor),
    }))
""")

_TRACED_SPANS = [  # StockPredictor(), then MomentumPredictor() calling super()
    "MomentumPredictor.calculate_score", "StockPredictor.calculate_score",
    "StockPredictor.calculate_score"]
_ALL_TRACED = {"StockPredictor": True, "MomentumPredictor": True}
_NONE_TRACED = {"StockPredictor": False, "MomentumPredictor": False}


@pytest.fixture(scope="module")
def app_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toyapp")
    for name, source in _APP.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(source)
    return root


def _run(app_path: Path, steps: str) -> dict:
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(app_path), str(REPO_ROOT)]),
           "OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS": ""}
    done = subprocess.run([sys.executable, "-c", _SCRIPT, steps], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("steps", [
    "import,instrument",
    "instrument,import",
    "instrument,instrument,import",
    "instrument,import,uninstrument,instrument",
    "import,instrument,uninstrument,instrument",
])
def test_patching_instrumented_orders_wrap_once(app_path, steps):
    """Every order that ends instrumented traces each defining class exactly once."""
    seen = _run(app_path, steps)
    assert seen["spans"] == _TRACED_SPANS
    assert seen["traced"] == _ALL_TRACED
    assert seen["subclass_hook"] is True


@pytest.mark.parametrize("steps", [
    "import,instrument,uninstrument",
    "instrument,import,uninstrument",
    "instrument,uninstrument,import",
    "import",
])
def test_patching_uninstrumented_orders_leave_originals(app_path, steps):
    """Every order that ends uninstrumented leaves the original functions, untraced."""
    seen = _run(app_path, steps)
    assert seen == {"spans": [], "traced": _NONE_TRACED, "originals_back": True,
                    "subclass_hook": False}


@pytest.mark.parametrize("steps", ["import,instrument,subclass", "instrument,import,subclass"])
def test_patching_subclass_defined_after_instrument(app_path, steps):
    """A subclass created while instrumented is traced; its super() call nests."""
    seen = _run(app_path, steps)
    assert seen["traced"] == {**_ALL_TRACED, "LatePredictor": True}
    assert seen["spans"] == sorted([*_TRACED_SPANS, "LatePredictor.calculate_score",
                                    "StockPredictor.calculate_score"])
