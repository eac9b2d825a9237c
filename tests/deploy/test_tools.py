"""require_tool: a missing tool skips outside CI and fails the test under CI=true."""

from __future__ import annotations

import pytest

from tests.deploy.conftest import require_tool

MISSING = "clstock-no-such-tool"


def test_missing_tool_skips_with_the_package_name(monkeypatch):
    """Outside CI a missing tool skips, and the reason names the Debian package."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Debian package: some-package"):
        require_tool(MISSING, "some-package")


def test_missing_tool_fails_in_ci(monkeypatch):
    """With CI=true a missing tool is a failure, not a skip."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="some-package"):
        require_tool(MISSING, "some-package")


def test_present_tool_is_found(monkeypatch):
    """A tool on PATH is returned as its path, CI or not."""
    monkeypatch.setenv("CI", "true")
    assert require_tool("sh", "dash").endswith("/sh")
