"""What a new user meets first: --version, --help with defaults, the demo outside a
checkout, ``dev.py --help``, trees in request order, and a clean temp folder."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from clstock_otel_distro.cli import main
from clstock_otel_distro.tools.collect import TraceAssembler
from clstock_otel_distro.version import __version__
from tests.conftest import REPO_ROOT, TEMP_PREFIX
from tests.distro.span_lines import line, received, span

CLSTOCK_OTEL = Path(sys.executable).parent / "clstock-otel"


def test_version_prints_the_distros_version(capsys: pytest.CaptureFixture[str]):
    """`clstock-otel --version` prints the version and exits 0."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"clstock-otel {__version__}"


def test_collect_help_shows_the_default_host_and_ports(capsys: pytest.CaptureFixture[str]):
    """The defaults a user needs to point an exporter here are in --help."""
    with pytest.raises(SystemExit):
        main(["collect", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "address to listen on (default: 127.0.0.1)" in text
    assert "OTLP/HTTP port (default: 4318)" in text
    assert "OTLP/gRPC port (default: 4317)" in text
    assert "(default: 1.5)" in text and "(default: 20)" in text
    assert "default: None" not in text


def test_demo_help_describes_the_demo(capsys: pytest.CaptureFixture[str]):
    """`demo --help` says what the demo does, and its options."""
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "market replay, data service and API" in text
    assert "write the HTML report and print its path" in text
    assert "--keep" in text and "--html OUT.html" in text


def test_demo_outside_a_checkout_is_one_line_and_exit_status_2(tmp_path: Path):
    """No traceback: one line naming what is missing and what to do."""
    result = subprocess.run(
        [str(CLSTOCK_OTEL), "demo"], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    [message] = result.stderr.splitlines()
    assert message == (
        "clstock-otel demo: no ClStock checkout found (looked for clstock/app/main.py); "
        "run it in a clone of clstock-otel-distro or pass --app-dir"
    )
    assert list(tmp_path.iterdir()) == []  # not even an empty log directory


def test_dev_py_help_exits_0_and_an_unknown_command_2():
    """`python3 dev.py --help` prints the usage; an unknown command is an error."""
    helped = subprocess.run([sys.executable, str(REPO_ROOT / "dev.py"), "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert helped.returncode == 0
    assert "python3 dev.py test [ARGS]" in helped.stdout
    assert "python3 dev.py demo" in helped.stdout
    wrong = subprocess.run([sys.executable, str(REPO_ROOT / "dev.py"), "tset"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert wrong.returncode == 2 and "python3 dev.py test" in wrong.stderr


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_collect_prints_trees_in_the_order_the_traces_started(tmp_path: Path):
    """Traces completing together come out by their earliest span start, not by arrival."""
    # Trace 2 started first but its spans arrive last (a slow request).
    lines = [
        line({"api": [span(t, f"{t:016x}", None, "GET /x", kind="SERVER", start_ms=start,
                           duration_ms=5)]})
        for t, start in ((1, 300), (3, 200), (2, 100))
    ]
    spans = received(tmp_path / "s.jsonl", lines)
    clock = FakeClock()
    assembler = TraceAssembler(1.0, clock=clock)
    for one in spans:  # arrival order: 1, 3, 2
        assembler.add([one])
        clock.now += 0.1
    clock.now += 2
    assert [int(t.trace_id, 16) for t in assembler.pop_complete()] == [2, 3, 1]
    # At shutdown too.
    for one in spans:
        assembler.add([one])
    assert [int(t.trace_id, 16) for t in assembler.pop_all()] == [2, 3, 1]


def test_processes_started_by_the_tests_make_temp_files_in_the_sessions_folder(
    session_temp_dir: Path,
):
    """A child's temp directory (as ClStock's clstock-yfinance-* one) lands in the
    session's folder, which the session removes when it ends."""
    made = subprocess.run(
        [sys.executable, "-c",
         "import tempfile; print(tempfile.mkdtemp(prefix='clstock-yfinance-'))"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()
    assert Path(made).parent == session_temp_dir
    assert session_temp_dir.name.startswith(TEMP_PREFIX)
    assert Path(tempfile.mkstemp(suffix=".log")[1]).parent == session_temp_dir
