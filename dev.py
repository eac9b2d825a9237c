#!/usr/bin/env python3
"""One entry point for developers and CI, needing nothing but Python 3.9+.

    python3 dev.py demo [ARGS] # the traced ClStock demo, and its HTML report (ARGS: --keep, ...)
    python3 dev.py test [ARGS] # the whole test suite (ARGS go to pytest)
    python3 dev.py bench [ARGS]# the benchmarks under bench/
    python3 dev.py --help      # this text

Each command first makes sure ``.venv`` exists and holds the distro (editable, with
its dev and zipkin extras) and ClStock's own requirements; it reinstalls only when
one of those files changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".dev-install-stamp"
INPUTS = (ROOT / "pyproject.toml", ROOT / "clstock" / "requirements.txt")


def _inputs_digest() -> str:
    digest = hashlib.sha256()
    for path in INPUTS:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv() -> None:
    """Create .venv and install what the project needs, unless already current."""
    if not PYTHON.exists():
        print(f"[dev] creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = _inputs_digest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("[dev] installing the distro and ClStock's requirements into .venv", flush=True)
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run(
        [*pip, "install", "-q", "-e", f"{ROOT}[dev,zipkin]",
         "-r", str(ROOT / "clstock" / "requirements.txt")],
        check=True,
    )
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    if argv and argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    if not argv or argv[0] not in {"demo", "test", "bench"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    ensure_venv()
    if command == "demo":
        return subprocess.call([str(BIN / "clstock-otel"), "demo", *args], cwd=ROOT)
    if command == "bench":
        return subprocess.call([str(PYTHON), str(ROOT / "bench" / "run.py"), *args], cwd=ROOT)
    code = subprocess.call([str(PYTHON), "-m", "pytest", *args], cwd=ROOT)
    if code == 5:  # pytest ran no test: for CI that is a failure, not a pass
        print("[dev] pytest collected no tests", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
