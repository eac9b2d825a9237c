"""The HTML report in a real browser: headless Chromium renders the demo's page and the
tests read what it drew (``--dump-dom`` after the page's script ran).

Needs Debian's ``chromium``: outside CI a missing browser skips (naming the package);
with CI=true it fails (``.ci/run`` installs it). Screenshots are kept in
``.test-artifacts/html-report/`` at the repository's root (ignored by git).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from clstock_otel_distro.tools.html_report import write_html_report
from clstock_otel_distro.tools.spanfile import read_spans
from tests.conftest import REPO_ROOT
from tests.distro.span_lines import line, received, span

CLSTOCK_OTEL = Path(sys.executable).parent / "clstock-otel"
ARTIFACTS = REPO_ROOT / ".test-artifacts" / "html-report"
CHROMIUM_PACKAGE = "chromium"  # Debian's package name
# Chromium's background services would try the network, which a test must not use.
CHROMIUM_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--hide-scrollbars",
    "--virtual-time-budget=5000",  # let the page's script run before the dump
)


# --------------------------------------------------------------------------- a DOM


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n for n in self.walk()
            if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag} class={cls} {attrs}>"
        return found[0]


_VOID = {"meta", "link", "br", "img", "input", "hr", "source", "wbr", "area", "base", "col"}


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


# --------------------------------------------------------------------------- Chromium


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary; a skip outside CI when it is missing, a failure in CI."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        message = f"needs Debian's {CHROMIUM_PACKAGE} (apt-get install {CHROMIUM_PACKAGE})"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    return binary


def run_chromium(binary: str, profile: Path, url: str, *extra: str) -> str:
    """Chromium's stdout for ``url`` with ``extra`` flags (--dump-dom, --screenshot=...)."""
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run as root otherwise
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def dump_dom(binary: str, profile: Path, page: Path, fragment: str = "") -> Node:
    """The document as the page's script left it."""
    dom = parse(run_chromium(binary, profile, page.as_uri() + fragment, "--dump-dom"))
    body = dom.find("body")
    assert body.attrs.get("data-rendered") == "true", "the page's script did not finish"
    return dom


def card(dom: Node, key: str) -> str:
    return dom.find("div", "card", data_key=key).find("div", "value").text()


# --------------------------------------------------------------------------- the demo


@dataclass(frozen=True)
class DemoRun:
    stdout: str
    html: Path
    logs: Path
    spans_file: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One demo run with --keep: its page, and its logs and span file kept."""
    home = tmp_path_factory.mktemp("html-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    env.update(PYTHONIOENCODING="utf-8", TMPDIR=str(home))
    html = home / "report" / "demo.html"
    result = subprocess.run(
        [str(CLSTOCK_OTEL), "demo", "--keep", "--html", str(html)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, encoding="utf-8",
        timeout=180, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [kept] = re.findall(r"^logs and spans\.jsonl kept in (\S+) as asked \(--keep\)$",
                        result.stdout, re.M)
    logs = Path(kept)
    return DemoRun(result.stdout, html, logs, logs / "spans.jsonl")


@pytest.fixture(scope="module")
def failing_trace(demo: DemoRun) -> tuple[str, list[str]]:
    """The failing workflow's trace id (GET /api/v1/predict/6502) and its span ids."""
    spans, _ = read_spans(demo.spans_file)
    [root] = [s for s in spans if s.kind == "SERVER" and s.service_name == "clstock-api"
              and s.attributes.get("url.path") == "/api/v1/predict/6502"]
    assert root.status_code == "ERROR"
    return root.trace_id, [s.span_id for s in spans if s.trace_id == root.trace_id]


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh, empty Chromium profile for the module."""
    return tmp_path_factory.mktemp("chromium-profile")


def test_the_demo_prints_the_page_and_keeps_its_logs_when_asked(demo: DemoRun):
    """--keep: the logs and the span file stay where the demo says; the page is printed."""
    assert f"HTML report (open it in a browser): {demo.html}" in demo.stdout
    assert demo.html.is_file()
    assert demo.logs.parent == demo.html.parent.parent  # in the demo's TMPDIR
    names = {p.name for p in demo.logs.iterdir()}
    assert {"spans.jsonl", "clstock-api.log", "clstock-data-service.log",
            "clstock-market-replay.log"} <= names


def test_the_summary_numbers_are_the_terminal_reports(
    chromium: str, profile: Path, demo: DemoRun
):
    """Traces, spans, services, failed share and traces/s: as `clstock-otel report` prints."""
    terminal = subprocess.run(
        [str(CLSTOCK_OTEL), "report", str(demo.spans_file)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.splitlines()
    first = re.match(r"(\d+) spans in (\d+) traces from (\d+) services? over ", terminal[0])
    overall = re.match(r"failed traces: (\d+) of (\d+) \(([\d.]+%)\); throughput: (\S+) traces/s$",
                       terminal[1])
    assert first and overall, terminal[:2]
    dom = dump_dom(chromium, profile, demo.html)
    assert card(dom, "spans") == first.group(1)
    assert card(dom, "traces") == first.group(2) == overall.group(2)
    assert card(dom, "services") == first.group(3) == "3"
    assert card(dom, "failed-share") == overall.group(3)
    assert overall.group(1) + " of " + overall.group(2) in dom.find(
        "div", "card", data_key="failed-share").text()
    assert card(dom, "traces-per-s") == overall.group(4)
    # One operations row per row of the terminal's table, and the service map's edges.
    header = next(i for i, row in enumerate(terminal) if row.startswith("SERVICE "))
    table_rows = terminal[header + 1 : terminal.index("", header)]
    assert len(dom.find_all("tr", "operation")) == len(table_rows)
    edges = {(e.attrs["data-client"], e.attrs["data-server"]) for e in dom.find_all("g", "edge")}
    assert {("clstock-api", "clstock-data-service"),
            ("clstock-data-service", "clstock-market-replay")} <= edges
    assert len(dom.find_all("div", "hist")) >= 7  # one per route, the API's 7 among them


def test_the_opened_trace_shows_one_waterfall_row_per_span(
    chromium: str, profile: Path, demo: DemoRun, failing_trace: tuple[str, list[str]]
):
    """#trace=<id> opens the trace: a row per span, with the exception's stack."""
    trace_id, span_ids = failing_trace
    dom = dump_dom(chromium, profile, demo.html, f"#trace={trace_id}")
    waterfall = dom.find("section", id="waterfall")
    assert "hidden" not in waterfall.attrs
    assert waterfall.attrs["data-trace-id"] == trace_id
    rows = waterfall.find_all("summary", "wf-row")
    assert sorted(r.attrs["data-span-id"] for r in rows) == sorted(span_ids)
    assert len(rows) == len(span_ids)
    # The first row is the API's server span; every row names a service and a duration.
    first = rows[0]
    assert first.find("span", "wf-service").text() == "clstock-api"
    assert first.find("span", "wf-name").text() == "GET /api/v1/predict/{symbol}"
    assert all(r.find("span", "wf-dur").text().endswith(("ms", " s")) for r in rows)
    # The span that recorded the exception is open, with its stack.
    [opened] = [d for d in waterfall.find_all("details", "wf-span") if "open" in d.attrs]
    assert "error" in opened.classes
    stack = opened.find("pre", "stack").text()
    assert stack.startswith("Traceback (most recent call last):")
    assert "DataFetchError" in opened.text()
    assert dom.find("div", id="overview").attrs.get("hidden") is not None


def test_the_failing_trace_is_marked(
    chromium: str, profile: Path, demo: DemoRun, failing_trace: tuple[str, list[str]]
):
    """The failing trace is listed first, marked FAILED; the others are not."""
    trace_id, _ = failing_trace
    dom = dump_dom(chromium, profile, demo.html)
    rows = dom.find("table", id="trace-table").find_all("tr", "trace")
    assert len(rows) == int(card(dom, "traces"))
    failed = [r for r in rows if "failed" in r.classes]
    assert [r.attrs["data-trace-id"] for r in failed] == [trace_id]
    assert rows[0] is failed[0]
    assert failed[0].find("span", "badge").text() == "FAILED"
    assert {r.find("span", "badge").text() for r in rows[1:]} == {"OK"}
    link = failed[0].find("a")
    assert link.attrs["href"] == f"#trace={trace_id}"


def test_screenshots_are_kept_as_artifacts(
    chromium: str, profile: Path, demo: DemoRun, failing_trace: tuple[str, list[str]]
):
    """The overview and the failing trace's waterfall, as PNG files under .test-artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = {
        ARTIFACTS / "demo-overview.png": "",
        ARTIFACTS / "demo-failing-trace.png": f"#trace={failing_trace[0]}",
    }
    for path, fragment in shots.items():
        path.unlink(missing_ok=True)
        run_chromium(chromium, profile, demo.html.as_uri() + fragment,
                     f"--screenshot={path}", "--window-size=1400,2000")
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == (1400, 2000)
        assert len(data) > 20_000  # a drawn page, not a blank one


HOSTILE = '</script><script>document.title="pwned"</script><img src=x onerror=alert(1)>'


def test_hostile_span_text_renders_as_text(chromium: str, profile: Path, tmp_path: Path):
    """A span name, service and attribute carrying markup show as text; nothing runs."""
    lines = [line({"<img src=x onerror=alert(2)>": [
        span(1, "a" * 16, None, HOSTILE, kind="SERVER", duration_ms=5, error=HOSTILE,
             attributes={"<svg onload=alert(3)>": HOSTILE})]})]
    page = write_html_report(received(tmp_path / "hostile.jsonl", lines), tmp_path / "h.html")
    for fragment in ("", f"#trace={1:032x}"):
        dom = dump_dom(chromium, profile, page, fragment)
        assert dom.find("title").text() == "ClStock traces"
        assert dom.find_all("img") == [] and dom.find_all("svg", onload="alert(3)") == []
        scripts = dom.find_all("script")
        assert len(scripts) == 2  # the data and the page's own script, nothing injected
    names = [n.text() for n in dom.find_all("span", "wf-name")]
    assert names == [HOSTILE]
    attribute_keys = [r.children[0].text() for r in dom.find_all("tr", "attribute")]
    assert "<svg onload=alert(3)>" in attribute_keys
