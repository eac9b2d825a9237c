"""``clstock-otel doctor``: each finding, in-process and through ``python -m``."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import socket
import subprocess
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from clstock_otel_distro import doctor
from clstock_otel_distro.doctor import Finding, Report, Status, instrumentations
from clstock_otel_distro.tools.otlp_receiver import OTLPReceiver
from tests.conftest import APP_DIR

# Our instrumentors' entry points, as pyproject registers them.
OWN_ENTRY_POINTS = {
    "clstock_predictor": "clstock_otel_distro.instrumentors.predictor:ClStockPredictorInstrumentor",
    "clstock_data_provider":
        "clstock_otel_distro.instrumentors.data_provider:ClStockDataProviderInstrumentor",
    "yfinance": "clstock_otel_distro.instrumentors.yfinance:YFinanceInstrumentor",
    "curl_cffi": "clstock_otel_distro.instrumentors.curl_cffi:CurlCffiInstrumentor",
    "clstock_methods": "clstock_otel_distro.instrumentors.methods:ClStockMethodsInstrumentor",
}
ADVICE = "OTEL_PYTHON_DISTRO=clstock OTEL_PYTHON_CONFIGURATOR=clstock"


def make_dist(
    root: Path,
    name: str,
    *,
    version: str = "1.0",
    entry_points: Mapping[str, Mapping[str, str]] | None = None,
    requires: tuple[str, ...] = (),
    modules: Mapping[str, str] | None = None,
) -> Path:
    """An installed-looking distribution (dist-info and modules) under ``root``."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {requirement}" for requirement in requires]
    (info / "METADATA").write_text("\n".join(metadata) + "\n")
    if entry_points:
        (info / "entry_points.txt").write_text(
            "".join(
                f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
                for group, eps in entry_points.items()
            )
        )
    for module, source in (modules or {}).items():
        (root / f"{module}.py").write_text(source)
    return root


@pytest.fixture(scope="session")
def own_entry_points(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Path entries that register our instrumentors' entry points, if the install lacks them.

    The lead adds them to pyproject; until the editable install is refreshed, a
    dist-info carrying the missing ones stands in (an empty list once installed).
    """
    installed = {
        ep.name
        for ep in importlib.metadata.entry_points(group="opentelemetry_instrumentor")
        if ep.value.startswith("clstock_otel_distro.")
    }
    missing = {name: value for name, value in OWN_ENTRY_POINTS.items() if name not in installed}
    if not missing:
        return []
    root = tmp_path_factory.mktemp("own-entry-points")
    make_dist(
        root, "clstock-otel-distro-entry-points",
        entry_points={"opentelemetry_instrumentor": missing},
    )
    return [str(root)]


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch, own_entry_points: list[str]) -> None:
    """Our instrumentors are registered in this process's entry points."""
    for entry in own_entry_points:
        monkeypatch.syspath_prepend(entry)


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver(grpc_port=None) as running:
        yield running


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def in_section(report: Report, title: str) -> list[Finding]:
    (section,) = [s for s in report.sections if s.title.startswith(title)]
    return section.findings


def the(report: Report, title: str, subject: str) -> Finding:
    """The one finding of that section whose subject starts with ``subject``."""
    (finding,) = [f for f in in_section(report, title) if f.subject.startswith(subject)]
    return finding


def run_doctor(
    cwd: Path,
    *args: str,
    app_dir: Path = APP_DIR,
    env: Mapping[str, str] | None = None,
    pythonpath: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """``python -m clstock_otel_distro.doctor`` in ``cwd``, with a clean OTEL_* environment.

    ``cwd`` matters: ``python -m`` puts it first on ``sys.path``, and the repository
    root holds our egg-info, which would come before anything on PYTHONPATH.
    """
    child = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTHONPATH"))}
    child.update(env or {})
    if pythonpath:
        child["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "clstock_otel_distro.doctor", "--app-dir", str(app_dir), *args],
        cwd=cwd, env=child, capture_output=True, text=True, encoding="utf-8", timeout=60,
        check=False,
    )


# --------------------------------------------------------------------------- healthy


def test_healthy_run_exits_0(monkeypatch, capsys, registered, receiver):
    """Our distro, loadable instrumentations, ClStock found, endpoint answering: exit 0."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
    assert doctor.main(["--app-dir", str(APP_DIR)]) == 0
    out = capsys.readouterr().out
    assert "\n0 problems, " in out
    assert "✓ distro: clstock -> clstock_otel_distro.distro:ClStockDistro" in out
    assert "✓ configurator: clstock -> clstock_otel_distro.configurator:ClStockConfigurator" in out
    assert "OTEL_PYTHON_CONFIGURATOR='clstock' (ClStockDistro's default)" in out
    for name in OWN_ENTRY_POINTS:
        assert f"✓ {name}: will load" in out
    assert "✓ predictor models.predictor:StockPredictor: found with subclasses" in out
    assert "traced: calculate_score, predict, predict_score" in out
    # A default target of another ClStock layout is information, not a problem.
    assert "· predictor models.core.interfaces:StockPredictor: not in this layout" in out
    assert "✓ data provider data.async_stock_data:AsyncStockDataProvider" in out
    assert f"POST {receiver.http_endpoint}/v1/traces: HTTP 200" in out
    # The empty export really reached the receiver.
    assert receiver.stats()["http"].trace_requests == 1


def test_json_parses(monkeypatch, capsys, registered, receiver):
    """--json prints one JSON document with the counts and every finding."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
    assert doctor.main(["--app-dir", str(APP_DIR), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["problems"] == 0 and data["exit_code"] == 0
    assert data["summary"].startswith("0 problems, ")
    titles = [section["title"] for section in data["sections"]]
    assert titles[0] == "Distro and configurator" and titles[-1] == "OTLP endpoint"
    (endpoint,) = data["sections"][-1]["findings"]
    assert endpoint["status"] == "ok" and "HTTP 200" in endpoint["detail"]


def test_grpc_endpoint_is_tcp_checked(monkeypatch, registered):
    """With protocol grpc, the host:port of the endpoint is connected to."""
    with OTLPReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint)
        report = doctor.diagnose(APP_DIR)
        port = receiver.grpc_port
    (finding,) = in_section(report, "OTLP endpoint")
    assert finding.status is Status.OK
    assert finding.subject == f"traces over grpc: 127.0.0.1:{port}"
    assert report.exit_code == 0


def test_ascii_markers_when_stdout_cannot_encode(monkeypatch, registered):
    """A stdout that cannot encode ✓ gets ASCII markers."""
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    args = doctor.add_arguments(argparse.ArgumentParser()).parse_args(
        ["--app-dir", str(APP_DIR), "--no-network"]
    )
    assert args.handler is doctor.run
    assert doctor.run(args, stream) == 0
    stream.seek(0)
    text = stream.read()
    assert "  + distro: clstock" in text
    assert "  - OTLP endpoint: not checked (--no-network)" in text


def test_register_adds_the_doctor_command():
    """``register`` wires ``doctor`` into a ``clstock-otel``-style parser (handler=run)."""
    parser = argparse.ArgumentParser(prog="clstock-otel")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor.register(commands)
    args = parser.parse_args(["doctor", "--app-dir", "/srv/clstock", "--json", "--timeout", "1"])
    assert args.handler is doctor.run
    assert (args.app_dir, args.json, args.no_network, args.timeout) == (
        Path("/srv/clstock"), True, False, 1.0
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["doctor", "--timeout", "0"])


# --------------------------------------------------------------------------- 1. selection


def test_other_distro_winning_is_a_problem(tmp_path, other_distro_path, own_entry_points):
    """opentelemetry-distro found first: exit 1, naming the winner and what to set."""
    result = run_doctor(
        tmp_path, "--no-network", pythonpath=[other_distro_path, *own_entry_points]
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "distro: distro -> opentelemetry.distro:OpenTelemetryDistro wins" in result.stdout
    assert (
        "configurator: configurator -> opentelemetry.distro:OpenTelemetryConfigurator wins"
        in result.stdout
    )
    assert f"fix: set {ADVICE}" in result.stdout
    assert "ClStockDistro does not run: its defaults are not applied" in result.stdout
    # The winner's own defaults apply instead: its grpc protocol, for one.
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='grpc': OpenTelemetryDistro default" in result.stdout


@pytest.mark.parametrize(
    ("env", "configurator", "code"),
    [
        ({"OTEL_PYTHON_DISTRO": "clstock"}, "ok", 0),
        ({"OTEL_PYTHON_DISTRO": "clstock", "OTEL_PYTHON_CONFIGURATOR": "configurator"},
         "problem", 1),
    ],
)
def test_other_distro_pinned(
    tmp_path, other_distro_path, own_entry_points, env, configurator, code
):
    """Pinning our distro wins (it pins our configurator); pinning theirs does not."""
    result = run_doctor(
        tmp_path, "--no-network", "--json", env=env,
        pythonpath=[other_distro_path, *own_entry_points],
    )
    assert result.returncode == code, result.stdout + result.stderr
    data = json.loads(result.stdout)
    chosen = {f["subject"]: f for f in data["sections"][0]["findings"]}
    assert chosen["distro"]["status"] == "ok"
    assert "OTEL_PYTHON_DISTRO='clstock' picks by name" in chosen["distro"]["detail"]
    assert chosen["configurator"]["status"] == configurator
    assert data["problems"] == code


# --------------------------------------------------------------------------- 2. instrumentations


def test_disabled_instrumentation_listed(monkeypatch, registered):
    """A disabled instrumentation is listed as skipped; an unknown name is a warning."""
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "requests, yfinance,reqeusts")
    report = doctor.diagnose(APP_DIR, network=False)
    for name in ("requests", "yfinance"):
        finding = the(report, "Instrumentations", name)
        assert finding.status is Status.INFO
        assert "skipped: disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS" in finding.detail
    assert the(report, "Instrumentations", "fastapi").detail.startswith("will load")
    unknown = the(report, "Instrumentations", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
    assert unknown.status is Status.WARNING and "'reqeusts' match no instrumentation" in (
        unknown.detail
    )
    assert report.exit_code == 0


def test_dependency_conflicts(monkeypatch, tmp_path, registered):
    """A wrong library version is a problem; a library not installed only skips it."""
    never_import = "raise AssertionError('a conflicting instrumentation must not be imported')\n"
    make_dist(
        tmp_path, "fake-old-yf-instrumentation",
        requires=('yfinance < 0.1 ; extra == "instruments"',),
        entry_points={"opentelemetry_instrumentor": {"old_yf": "never_imported:X"}},
        modules={"never_imported": never_import},
    )
    make_dist(
        tmp_path, "fake-absent-instrumentation",
        requires=('clstock-no-such-library >= 1 ; extra == "instruments"',),
        entry_points={"opentelemetry_instrumentor": {"absent_lib": "never_imported:X"}},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    report = doctor.diagnose(APP_DIR, network=False)
    old = the(report, "Instrumentations", "old_yf")
    assert old.status is Status.PROBLEM
    assert old.detail.startswith("skipped: dependency conflict: ")
    installed = importlib.metadata.version("yfinance")
    assert 'only instruments "yfinance<0.1' in old.detail
    assert f'installed version ("yfinance {installed}") falls outside' in old.detail
    absent = the(report, "Instrumentations", "absent_lib")
    assert absent.status is Status.INFO
    assert absent.detail.startswith("skipped: library not installed")
    assert "clstock-no-such-library>=1" in absent.detail
    assert report.problems == 1


def test_own_entry_point_missing_is_a_problem(monkeypatch, registered):
    """An instrumentor of ours missing from the entry points is a problem."""
    discover = instrumentations._entry_points

    def without_methods(group: str) -> list:
        return [ep for ep in discover(group) if ep.name != "clstock_methods"]

    monkeypatch.setattr(instrumentations, "_entry_points", without_methods)
    report = doctor.diagnose(APP_DIR, network=False)
    finding = the(report, "Instrumentations", "clstock_methods")
    assert finding.status is Status.PROBLEM
    assert "entry point is not registered" in finding.detail
    assert report.exit_code == 1


def test_instrumentor_import_error(tmp_path, own_entry_points):
    """An instrumentor whose module raises ImportError: skipped, a problem, exit 1."""
    make_dist(
        tmp_path, "fake-native-instrumentation",
        entry_points={"opentelemetry_instrumentor": {"native_lib": "native_instr:Instr"}},
        modules={"native_instr": "raise ImportError('libnative.so.1: cannot open shared "
                                 "object file')\n"},
    )
    result = run_doctor(
        tmp_path, "--no-network", pythonpath=[str(tmp_path), *own_entry_points]
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "native_lib: skipped: import error: ImportError: libnative.so.1: cannot open shared "
        "object file (native_instr:Instr, fake-native-instrumentation 1.0)"
    ) in result.stdout
    assert "fix: reinstall the package, or disable it: " \
           "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=native_lib" in result.stdout
    assert "\n1 problem, 0 warnings" in result.stdout


# --------------------------------------------------------------------------- 3. targets


def test_trace_methods_that_do_not_exist(monkeypatch, registered):
    """A configured method or function that does not exist is a problem; a real one is fine."""
    monkeypatch.setenv(
        "OTEL_PYTHON_CLSTOCK_TRACE_METHODS",
        "models.predictor:StockPredictor.no_such_method,"
        "models.predictor:MomentumPredictor.train,"
        "models.predictor:StockPredictor._latest_features,"
        "data.stock_data:no_such_function",
    )
    report = doctor.diagnose(APP_DIR, network=False)
    prefix = "OTEL_PYTHON_CLSTOCK_TRACE_METHODS models."
    missing = the(report, "ClStock targets", f"{prefix}predictor:StockPredictor.no_such_method")
    assert missing.status is Status.PROBLEM
    assert missing.detail == "StockPredictor defines no method no_such_method: not traced"
    inherited = the(report, "ClStock targets", f"{prefix}predictor:MomentumPredictor.train")
    assert inherited.status is Status.PROBLEM
    assert "(inherited from StockPredictor: name that class)" in inherited.detail
    found = the(report, "ClStock targets", f"{prefix}predictor:StockPredictor._latest_features")
    assert found.status is Status.OK
    function = the(report, "ClStock targets", "OTEL_PYTHON_CLSTOCK_TRACE_METHODS data.")
    assert function.status is Status.PROBLEM
    assert function.detail == "data.stock_data has no function no_such_function"
    assert report.problems == 3


def test_target_class_missing(monkeypatch, registered):
    """A configured predictor class that does not exist is a problem, and so is having none."""
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS", "models.predictor:NoSuchPredictor")
    report = doctor.diagnose(APP_DIR, network=False)
    missing = the(report, "ClStock targets", "predictor models.predictor:NoSuchPredictor")
    assert missing.status is Status.PROBLEM
    assert missing.detail.startswith("models.predictor has no class NoSuchPredictor")
    none = the(report, "ClStock targets", "predictor targets")
    assert none.status is Status.PROBLEM and "no predictor class found" in none.detail
    assert report.problems == 2


def test_no_clstock_in_app_dir(tmp_path, own_entry_points):
    """Outside a ClStock checkout each default is absent (information), no predictor a problem."""
    # A subprocess: this test process has ClStock on sys.path (tests/conftest.py).
    result = run_doctor(
        tmp_path, "--no-network", "--json", app_dir=tmp_path, pythonpath=own_entry_points
    )
    assert result.returncode == 1, result.stdout + result.stderr
    sections = {s["title"]: s["findings"] for s in json.loads(result.stdout)["sections"]}
    found = {f["subject"]: f for f in sections["ClStock targets"]}
    defaults = [f for f in found.values() if "not in this layout" in f["detail"]]
    assert len(defaults) == 6 and {f["status"] for f in defaults} == {"info"}
    assert found["predictor targets"]["status"] == "problem"
    assert "no predictor class found" in found["predictor targets"]["detail"]
    assert found["data provider targets"]["status"] == "warning"


# --------------------------------------------------------------------------- 4. libraries


def test_yfinance_version_check(monkeypatch, tmp_path, registered):
    """The installed yfinance satisfies our requirement; an older one is a problem."""
    report = doctor.diagnose(APP_DIR, network=False)
    good = the(report, "Libraries", "yfinance")
    installed = importlib.metadata.version("yfinance")
    assert good.status is Status.OK
    assert good.detail == f"yfinance {installed} satisfies yfinance >= 0.2.40"

    monkeypatch.syspath_prepend(str(make_dist(tmp_path, "yfinance", version="0.1.0")))
    report = doctor.diagnose(APP_DIR, network=False)
    old = the(report, "Libraries", "yfinance")
    assert old.status is Status.PROBLEM
    assert old.detail.startswith("yfinance 0.1.0 is installed; the instrumentation supports "
                                 "yfinance >= 0.2.40")
    assert old.advice == "pip install 'yfinance >= 0.2.40'"
    assert the(report, "Libraries", "curl_cffi").status is Status.OK


# --------------------------------------------------------------------------- 5. configuration


def test_secrets_masked(monkeypatch, capsys, registered, receiver):
    """Header values and URL credentials never appear, in text or JSON, even in warnings."""
    authority = receiver.http_endpoint.removeprefix("http://")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=SECRET123,malformed")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://user:pass@{authority}")
    # Invalid, so the validator's warning quotes it: the report must still mask it.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"ftp://user:pass@{authority}")
    monkeypatch.setenv("OTEL_PYTHON_MY_AUTH", "SECRET123")
    for argv in ([], ["--json"]):
        doctor.main(["--app-dir", str(APP_DIR), *argv])
        out = capsys.readouterr().out
        assert "SECRET123" not in out and "pass" not in out
        assert "OTEL_EXPORTER_OTLP_HEADERS=***" in out
        assert "OTEL_PYTHON_MY_AUTH=***" in out
        assert f"'http://***@{authority}'" in out
        # The endpoint still answered, credentials sent, only hidden from the report.
        assert f"POST http://***@{authority}/v1/traces" in out
        assert "HTTP 200" in out


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("OTEL_PYTHON_CLSTOCK_GC_FREEZE", "later", "expected true or false"),
    ("OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE", "2", "expected true or false"),
    ("OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE", "maybe", "expected true or false"),
    ("OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS", "never", "expected true or false"),
    ("OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES", "lines", "expected one of all, function, none"),
])
def test_invalid_performance_settings_flagged(monkeypatch, registered, name, value, reason):
    """Variables read at start-up, by the configurator or by each instrumentor alike."""
    monkeypatch.setenv(name, value)
    report = doctor.diagnose(APP_DIR, network=False)
    finding = the(report, "Configuration", f"invalid {name}")
    assert finding.status is Status.PROBLEM
    assert finding.detail.startswith(f"{name}={value!r} is invalid ({reason}); using the default")


def test_invalid_values_flagged(monkeypatch, registered):
    """Each bad value is a problem, with the configurator's own validation message."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "-5")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "sometimes")
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT", "soon")
    monkeypatch.setenv("OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS", "finance.yahoo.com/(v8")
    report = doctor.diagnose(APP_DIR, network=False)
    queue = the(report, "Configuration", "invalid OTEL_BSP_MAX_QUEUE_SIZE")
    assert queue.status is Status.PROBLEM
    assert queue.detail.startswith(
        "OTEL_BSP_MAX_QUEUE_SIZE='-5' is invalid (below the minimum 1); using the default "
    )
    sampler = the(report, "Configuration", "invalid OTEL_TRACES_SAMPLER")
    assert sampler.detail.startswith("OTEL_TRACES_SAMPLER='sometimes' is invalid (expected one of")
    timeout = the(report, "Configuration", "invalid OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT")
    assert "'soon' is invalid (not an integer)" in timeout.detail
    regex = the(report, "Configuration", "invalid OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS")
    assert regex.status is Status.PROBLEM and "not a regular expression" in regex.detail
    assert report.problems == 4
    # The effective configuration lists what is set, and the distro's defaults.
    assert the(report, "Configuration", "OTEL_TRACES_SAMPLER='sometimes'").detail == "set"
    assert the(report, "Configuration", "OTEL_TRACES_EXPORTER='otlp'").detail == (
        "ClStockDistro default"
    )


# --------------------------------------------------------------------------- 6. endpoint


def test_endpoint_unreachable(monkeypatch, capsys, registered, closed_port):
    """Nothing listening at the endpoint: a problem with the error, exit 1."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    assert doctor.main(["--app-dir", str(APP_DIR), "--timeout", "1"]) == 1
    out = capsys.readouterr().out
    assert f"POST http://127.0.0.1:{closed_port}/v1/traces: unreachable: " in out
    assert "\n1 problem, 0 warnings" in out


def test_no_network_skips_the_endpoint(monkeypatch, registered, closed_port):
    """--no-network: the endpoint is not contacted and does not count."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    report = doctor.diagnose(APP_DIR, network=False)
    (finding,) = in_section(report, "OTLP endpoint")
    assert (finding.status, finding.detail) == (Status.INFO, "not checked (--no-network)")
    assert report.exit_code == 0


_PATCHES = "Patches of upstream code"


def test_every_upstream_patch_is_listed_with_its_state(monkeypatch, registered):
    """Each registry entry: will apply here; switched off; or standing aside, and why."""
    from clstock_otel_distro.patches import ALL_PATCHES, registry

    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_GC_FREEZE", "false")
    real_version = registry.installed_version
    monkeypatch.setattr(registry, "installed_version",
                        lambda name: "9.9" if name == "opentelemetry-sdk" else real_version(name))
    report = doctor.diagnose(APP_DIR, network=False)
    assert len(in_section(report, _PATCHES)) == len(ALL_PATCHES)
    route = the(report, _PATCHES, "fastapi-route-cache")
    assert route.status is Status.OK and route.detail.startswith("will apply: ")
    frozen = the(report, _PATCHES, "uvicorn-gc-freeze")
    assert frozen.status is Status.INFO
    assert frozen.detail.startswith("off (OTEL_PYTHON_CLSTOCK_GC_FREEZE=false)")
    hashed = the(report, _PATCHES, "resource-hash-cache")
    assert hashed.status is Status.WARNING
    assert "opentelemetry-sdk 9.9 is outside the verified range >=1.45,<1.46" in hashed.detail


_INSTRUMENTATIONS = "Instrumentations (opentelemetry_instrumentor entry points)"


def test_instrumentations_the_distro_leaves_out_are_explained(registered):
    report = doctor.diagnose(APP_DIR, network=False)
    click = the(report, _INSTRUMENTATIONS, "click")
    assert click.status is Status.INFO
    assert click.detail.startswith("left out by clstock-otel-distro in server processes")
    assert "OTEL_PYTHON_CLSTOCK_CLICK_IN_SERVERS=true loads it" in click.detail
    sqlite = the(report, _INSTRUMENTATIONS, "sqlite3")
    assert "OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS=true loads it" in sqlite.detail
    starlette = the(report, _INSTRUMENTATIONS, "starlette")
    assert starlette.status is Status.OK and "here: none for ClStock's FastAPI apps" in \
        starlette.detail


def test_a_switched_on_instrumentation_will_load(monkeypatch, registered):
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS", "true")
    report = doctor.diagnose(APP_DIR, network=False)
    assert the(report, _INSTRUMENTATIONS, "sqlite3").detail.startswith("will load")


def test_unmet_pins_between_opentelemetry_packages_are_flagged(monkeypatch, registered):
    """What `pip check` says: an instrumentation pinned to another instrumentation core."""
    from importlib import metadata

    from clstock_otel_distro.doctor import compatibility

    real = compatibility.installed_distributions

    pinned = types.SimpleNamespace(
        metadata={"Name": "opentelemetry-instrumentation-pinned"}, version="0.1b0",
        requires=["opentelemetry-instrumentation==0.1b0", "wrapt<3"])
    monkeypatch.setattr(compatibility, "installed_distributions", lambda: [*real(), pinned])
    report = doctor.diagnose(APP_DIR, network=False)
    (finding,) = [f for f in in_section(report, _INSTRUMENTATIONS) if f.subject == "versions"]
    assert finding.status is Status.WARNING
    installed = metadata.version("opentelemetry-instrumentation")
    assert finding.detail == ("opentelemetry-instrumentation-pinned 0.1b0 requires "
                              "opentelemetry-instrumentation==0.1b0, but "
                              f"opentelemetry-instrumentation {installed} is installed")


def test_upstream_distro_beside_ours_is_explained(monkeypatch, registered):
    from importlib import metadata

    real = metadata.version
    monkeypatch.setattr(metadata, "version",
                        lambda name: "0.66b1" if name == "opentelemetry-distro" else real(name))
    report = doctor.diagnose(APP_DIR, network=False)
    finding = the(report, "Distro and configurator", "opentelemetry-distro")
    assert "Configuration of configurator not loaded, clstock already loaded" in finding.detail
    assert "OTEL_PYTHON_DISTRO=clstock OTEL_PYTHON_CONFIGURATOR=clstock" in finding.advice
