"""Just enough PromQL reading for the deployment tests: which metrics and labels an
expression uses, and promtool to check that it parses.

Not a parser: promtool is the judge of syntax (``check_exprs``). This module only pulls
names out of expressions that promtool accepts, to cross-check them against the
collector configuration.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

# PromQL keywords and functions that look like metric names to a regular expression.
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "sum", "min", "max", "avg", "count", "stddev", "stdvar",
    "topk", "bottomk", "quantile", "count_values", "group", "inf", "nan", "atan2",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SELECTOR = re.compile(r"\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w(])")
_DURATION = re.compile(r"\[[^\]]*\]")


def _without_strings(expr: str) -> str:
    return _STRING.sub('""', expr)


def metric_names(expr: str) -> set[str]:
    """Metric names the expression selects (not functions, keywords or label names)."""
    text = _DURATION.sub("", _without_strings(expr))
    text = _SELECTOR.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        name = match.group(1)
        following = text[match.end():].lstrip()
        if name.lower() in _KEYWORDS or following.startswith("("):
            continue
        names.add(name)
    return names


def label_names(expr: str) -> set[str]:
    """Label names the expression matches on, groups by or joins on."""
    text = _without_strings(expr)
    labels = {m for selector in _SELECTOR.findall(text) for m in _MATCHER.findall(selector)}
    for grouping in _GROUPING.findall(text):
        labels.update(part.strip() for part in grouping.split(",") if part.strip())
    return labels


def check_exprs(promtool: str, exprs: Mapping[str, str], workdir: Path) -> tuple[int, str]:
    """Run ``promtool check rules`` on each expression written as a recording rule.

    promtool has no offline "parse this query" command; a recording rule's expression
    goes through the same parser. Returns promtool's exit code and output.
    """
    rules = [
        {"record": f"check:expr_{index}", "expr": expr, "labels": {"source": name}}
        for index, (name, expr) in enumerate(exprs.items())
    ]
    path = workdir / "exprs.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}),
                    encoding="utf-8")
    return run_promtool(promtool, "check", "rules", str(path))


def run_promtool(promtool: str, *args: str, cwd: Path | None = None) -> tuple[int, str]:
    """promtool's exit code and its combined output (bounded in time)."""
    done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)
    return done.returncode, done.stdout + done.stderr


def exprs_of_rules(groups: Iterable[Mapping]) -> dict[str, str]:
    """``{rule name: expr}`` of every recording and alerting rule in the groups."""
    return {
        rule.get("record") or rule.get("alert"): rule["expr"]
        for group in groups
        for rule in group.get("rules") or []
    }
