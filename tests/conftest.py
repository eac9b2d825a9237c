"""Shared test configuration: where ClStock lives, and its import path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.upstream import upstream_distro_path

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_DIR = REPO_ROOT / "clstock"

# ClStock is imported the way `cd clstock && uvicorn app.main:app` imports it.
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))


@pytest.fixture(scope="session")
def app_dir() -> Path:
    """The ClStock application directory."""
    return APP_DIR


@pytest.fixture(scope="session")
def other_distro_path() -> str:
    """A directory holding the upstream opentelemetry-distro, for co-installation tests."""
    try:
        return str(upstream_distro_path())
    except RuntimeError as error:
        # The co-installation tests are part of the contract: fail, never skip silently.
        pytest.fail(str(error))
