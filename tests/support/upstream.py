"""The upstream opentelemetry-distro, installed beside the virtualenv, never into it.

The co-installation tests and the benchmarks' ``upstream`` variant run processes with
upstream's distro and configurator selected. Installing it into the virtualenv would
change what every other process sees, so it goes to a directory of its own that only
the processes that ask for it get first on PYTHONPATH.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["upstream_distro_path"]


def upstream_distro_path(cache_root: Path | None = None) -> Path:
    """A directory holding the upstream opentelemetry-distro, to put first on PYTHONPATH.

    Installed once (``pip install --no-deps --target``) at the version matching our
    opentelemetry-instrumentation: a process given this directory on PYTHONPATH finds
    upstream's distro and configurator entry points before ours, as when both are
    installed, while every other process keeps seeing ours alone.
    """
    version = importlib.metadata.version("opentelemetry-instrumentation")
    root = cache_root or Path(sys.prefix) / "clstock-test-cache"
    target = root / f"opentelemetry-distro-{version}"
    if any(target.glob("opentelemetry_distro-*.dist-info")):
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(staging), f"opentelemetry-distro=={version}"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"cannot install opentelemetry-distro: {result.stderr[-500:]}")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
