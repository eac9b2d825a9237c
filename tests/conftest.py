"""Shared test configuration: where ClStock lives, and its import path."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.upstream import upstream_distro_path

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_DIR = REPO_ROOT / "clstock"

# ClStock is imported the way `cd clstock && uvicorn app.main:app` imports it.
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))


TEMP_PREFIX = "clstock-tests-"


@pytest.fixture(scope="session", autouse=True)
def session_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The temp folder of the session and of every process it starts, removed at its end.

    ClStock's services each make a yfinance cache directory (``clstock-yfinance-*``)
    that a SIGTERM'd uvicorn never removes (it dies by the re-raised signal, skipping
    atexit), and services started without a log path log to a temp file: all of it
    lands here instead of the system's temp folder. pytest's own tmp_path directories
    stay where pytest keeps them (its last runs), fixed before the switch.
    """
    tmp_path_factory.getbasetemp()
    root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    previous_env, previous_dir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = str(root)
    try:
        yield root
    finally:
        tempfile.tempdir = previous_dir
        if previous_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous_env
        shutil.rmtree(root, ignore_errors=True)


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
