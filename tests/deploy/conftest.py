"""Shared fixtures of the deployment tests: the repository's deploy files and promtool."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_PACKAGE = "prometheus"  # the Debian package that ships promtool


def require_tool(name: str, package: str) -> str:
    """The path of ``name``; skipped outside CI when missing, a failure under CI=true."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian package: {package}; apt-get install {package})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; .ci/run installs it in CI")
    pytest.skip(message)


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool, from the Debian `prometheus` package."""
    return require_tool("promtool", PROMETHEUS_PACKAGE)
