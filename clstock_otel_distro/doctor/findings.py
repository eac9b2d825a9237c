"""The doctor's report: findings in sections, rendered as text or JSON."""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Status(str, enum.Enum):
    """How a finding counts: only PROBLEM makes the exit status 1."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    PROBLEM = "problem"


_MARKERS = {Status.OK: "✓", Status.INFO: "·", Status.WARNING: "!", Status.PROBLEM: "✗"}
_ASCII_MARKERS = {Status.OK: "+", Status.INFO: "-", Status.WARNING: "!", Status.PROBLEM: "x"}


@dataclass
class Finding:
    """One line of the report: what was checked, what was found, what to do."""

    status: Status
    subject: str
    detail: str = ""
    advice: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "status": self.status.value,
            "subject": self.subject,
            "detail": self.detail,
            "advice": self.advice,
        }


@dataclass
class Section:
    """A titled group of findings."""

    title: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, status: Status, subject: str, detail: str = "", advice: str = "") -> Finding:
        finding = Finding(status, subject, detail, advice)
        self.findings.append(finding)
        return finding

    def ok(self, subject: str, detail: str = "") -> Finding:
        return self.add(Status.OK, subject, detail)

    def info(self, subject: str, detail: str = "", advice: str = "") -> Finding:
        return self.add(Status.INFO, subject, detail, advice)

    def warning(self, subject: str, detail: str = "", advice: str = "") -> Finding:
        return self.add(Status.WARNING, subject, detail, advice)

    def problem(self, subject: str, detail: str = "", advice: str = "") -> Finding:
        return self.add(Status.PROBLEM, subject, detail, advice)


@dataclass
class Report:
    """Everything the doctor found, in sections; rendered as text or JSON."""

    app_dir: Path
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        section = Section(title)
        self.sections.append(section)
        return section

    @property
    def findings(self) -> list[Finding]:
        return [finding for section in self.sections for finding in section.findings]

    def count(self, status: Status) -> int:
        return sum(finding.status is status for finding in self.findings)

    @property
    def problems(self) -> int:
        return self.count(Status.PROBLEM)

    @property
    def warnings(self) -> int:
        return self.count(Status.WARNING)

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def summary(self) -> str:
        return f"{_plural(self.problems, 'problem')}, {_plural(self.warnings, 'warning')}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "app_dir": str(self.app_dir),
            "problems": self.problems,
            "warnings": self.warnings,
            "exit_code": self.exit_code,
            "summary": self.summary(),
            "sections": [
                {"title": s.title, "findings": [f.to_dict() for f in s.findings]}
                for s in self.sections
            ],
        }

    def render(self, *, ascii_only: bool = False) -> str:
        markers = _ASCII_MARKERS if ascii_only else _MARKERS
        lines = [f"clstock-otel doctor ({_versions()}), app dir {self.app_dir}"]
        for section in self.sections:
            lines += ["", section.title]
            for finding in section.findings:
                line = f"  {markers[finding.status]} {finding.subject}"
                if finding.detail:
                    line += f": {finding.detail}"
                lines.append(line)
                if finding.advice:
                    lines.append(f"      fix: {finding.advice}")
        legend = ", ".join(
            f"{markers[status]} {status.value}"
            for status in (Status.OK, Status.INFO, Status.WARNING, Status.PROBLEM)
        )
        lines += ["", f"{self.summary()} ({legend}; exit status 1 on a problem)"]
        return "\n".join(lines) + "\n"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _versions() -> str:
    from clstock_otel_distro.version import __version__

    python = ".".join(map(str, sys.version_info[:3]))
    return f"clstock-otel-distro {__version__}, Python {python}"
