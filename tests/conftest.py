"""Shared test configuration: where ClStock lives, and its import path."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_DIR = REPO_ROOT / "clstock"

# ClStock is imported the way `cd clstock && uvicorn app.main:app` imports it.
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))


@pytest.fixture(scope="session")
def app_dir() -> Path:
    """The ClStock application directory."""
    return APP_DIR


# The upstream opentelemetry-distro, installed once beside (not into) the venv's
# site-packages and put first on PYTHONPATH by the co-installation tests, so that its
# entry points are found before ours, as when both are installed.
_CACHE_ROOT = Path(sys.prefix) / "clstock-test-cache"


@pytest.fixture(scope="session")
def other_distro_path() -> str:
    """A directory holding opentelemetry-distro (matching our instrumentation version)."""
    version = importlib.metadata.version("opentelemetry-instrumentation")
    target = _CACHE_ROOT / f"opentelemetry-distro-{version}"
    if not any(target.glob("opentelemetry_distro-*.dist-info")):
        _CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=_CACHE_ROOT))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(staging),
                f"opentelemetry-distro=={version}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            # The co-installation tests are part of the contract: fail, never skip silently.
            pytest.fail(f"cannot install opentelemetry-distro from PyPI: {result.stderr[-300:]}")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return str(target)
