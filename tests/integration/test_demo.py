"""``clstock-otel demo`` end to end: three services under opentelemetry-instrument, every
workflow's trace printed as a tree, then the report of every span received, and nothing
left in the temp folder. (The demo's HTML page is tested in test_html_browser.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

CLSTOCK_OTEL = Path(sys.executable).parent / "clstock-otel"


@pytest.fixture(scope="module")
def demo_temp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's temp folder (TMPDIR), empty when it starts."""
    return tmp_path_factory.mktemp("demo-tmpdir")


@pytest.fixture(scope="module")
def demo_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the demo writes its page."""
    return tmp_path_factory.mktemp("demo-html") / "demo.html"


@pytest.fixture(scope="module")
def demo(demo_temp: Path, demo_html: Path) -> subprocess.CompletedProcess[str]:
    """One run of the demo, as a developer starts it (the page written out of the way)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    env["PYTHONIOENCODING"] = "utf-8"
    env["TMPDIR"] = str(demo_temp)
    return subprocess.run(
        [str(CLSTOCK_OTEL), "demo", "--html", str(demo_html)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def workflow_blocks(output: str) -> dict[str, str]:
    """Each workflow's section ("== name: METHOD /path -> status" and its tree), by name."""
    blocks = {}
    for block in output.split("\n== ")[1:]:
        title, _, body = block.partition("\n")
        if not title.startswith("report of every span"):
            blocks[title.split(":", 1)[0]] = title + "\n" + body
    return blocks


def depth(line: str) -> int:
    """Indentation of a tree line (two spaces a level)."""
    return len(line) - len(line.lstrip())


def test_demo_succeeds(demo: subprocess.CompletedProcess[str]):
    """Exit status 0: every call answered as expected and every trace arrived."""
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "[BAD]" not in demo.stdout


def test_a_request_trace_crosses_api_data_service_and_replay(
    demo: subprocess.CompletedProcess[str],
):
    """The recommendations trace shows the hops API -> data service -> market replay."""
    tree = workflow_blocks(demo.stdout)["API request"].splitlines()[1:]
    assert tree[0].startswith("trace ")
    assert tree[1].startswith("[clstock-api] GET /api/v1/recommendations")
    data_hops = [line for line in tree if line.lstrip().startswith("[clstock-data-service] ")]
    assert data_hops and depth(tree[1]) < depth(data_hops[0])
    # The data service reaches the replay through yfinance and curl_cffi, whose client
    # spans carry the trace context across.
    replay_hops = [line for line in tree if line.lstrip().startswith("[clstock-market-replay] ")]
    assert replay_hops and depth(data_hops[0]) < depth(replay_hops[0])
    assert ", 3 services," in tree[0]


def test_the_failing_request_is_marked_as_an_error(demo: subprocess.CompletedProcess[str]):
    """GET /api/v1/predict/6502 answers 502 and its trace says ERROR from the root down."""
    block = workflow_blocks(demo.stdout)["failing request"]
    lines = block.splitlines()
    assert lines[0] == "failing request: GET /api/v1/predict/6502 -> 502"
    assert lines[1].startswith("trace ") and " error" in lines[1]
    assert lines[2].startswith("[clstock-api] GET /api/v1/predict/{symbol}")
    assert "ERROR" in lines[2]
    assert any(
        line.lstrip().startswith("[clstock-data-service] ") and "ERROR" in line
        for line in lines[3:]
    )


def test_every_workflow_prints_its_trace(demo: subprocess.CompletedProcess[str]):
    """Seven workflows, seven trees, each rooted at the API's server span."""
    blocks = workflow_blocks(demo.stdout)
    assert len(blocks) == 7
    for block in blocks.values():
        lines = block.splitlines()
        assert lines[1].startswith("trace "), block
        assert lines[2].startswith("[clstock-api] "), block


def test_the_report_table_follows(demo: subprocess.CompletedProcess[str]):
    """The report of every span received: header, the API's rows, the dependency edges."""
    report = demo.stdout[demo.stdout.index("\n== report of every span received") :]
    lines = report.splitlines()
    [header] = [line for line in lines if line.startswith("SERVICE ")]
    assert header.split() == [
        "SERVICE",
        "SPAN",
        "COUNT",
        "SPANS/S",
        "P50",
        "MS",
        "P90",
        "MS",
        "P99",
        "MS",
        "ERRORS",
    ]
    assert any(
        line.split()[:4] == ["clstock-api", "GET", "/api/v1/predict/{symbol}", "2"]
        for line in lines
    )
    edges = [line.split() for line in lines if "->" in line]
    assert ["clstock-api", "->", "clstock-data-service"] in [edge[:3] for edge in edges]
    assert ["clstock-data-service", "->", "clstock-market-replay"] in [edge[:3] for edge in edges]


def test_the_demo_leaves_nothing_in_the_temp_folder(
    demo: subprocess.CompletedProcess[str], demo_temp: Path, demo_html: Path
):
    """Without --keep the logs, spans and the services' yfinance caches are all removed."""
    assert demo.returncode == 0
    assert list(demo_temp.iterdir()) == []
    [removed] = [line for line in demo.stdout.splitlines() if line.startswith("logs removed")]
    assert removed.startswith(f"logs removed ({demo_temp}{os.sep}clstock-demo-")
    assert removed.endswith("; --keep keeps them")
    # What the user opens stays, and is the last thing said before the cleanup.
    assert f"HTML report (open it in a browser): {demo_html}" in demo.stdout
    assert demo_html.is_file()
