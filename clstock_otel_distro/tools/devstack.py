"""Run ClStock's services locally as subprocesses, traced or not.

The demo command (and the tests and benchmarks) use this to start the market replay
service, the data service and the API from a ClStock checkout, each under
``opentelemetry-instrument`` (or plain, for comparison), on 127.0.0.1 ports of their
own, and to stop them with SIGTERM the way a process manager does.

Usage::

    with ServiceProcess("api", "app.main:app", app_dir, env=env) as api:
        requests.get(api.url + "/health")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["ServiceProcess", "ServiceStartError", "find_app_dir", "free_port"]


class ServiceStartError(RuntimeError):
    """A service did not answer its health check in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS considers free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def find_app_dir(start: Path | None = None) -> Path:
    """The ``clstock/`` application directory: ``start``, or the working directory's.

    Only these: an editable install finds the same checkout as a wheel would, so the
    demo behaves the same wherever it was installed from.
    """
    candidates = [Path.cwd() / "clstock", Path.cwd()]
    if start is not None:
        candidates.insert(0, start)
    for candidate in candidates:
        if (candidate / "app" / "main.py").is_file():
            return candidate
    raise FileNotFoundError("no ClStock checkout found (looked for clstock/app/main.py)")


def _bin(name: str) -> str:
    """A console script installed beside this interpreter (the virtualenv's)."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


class ServiceProcess:
    """One uvicorn-served ClStock app in a subprocess."""

    def __init__(
        self,
        name: str,
        app: str,
        app_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        instrumented: bool = True,
        server_args: Sequence[str] = (),
        port: int | None = None,
        health_path: str = "/health",
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.app = app
        self.app_dir = Path(app_dir)
        self.env = dict(env or {})
        self.instrumented = instrumented
        self.server_args = list(server_args)
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.health_path = health_path
        self.log_path = log_path or Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_command(self) -> list[str]:
        """The server's own command line (a subclass may serve the app another way)."""
        return [sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1",
                "--port", str(self.port), "--no-access-log", *self.server_args]

    def command(self) -> list[str]:
        """The command run: the server's, under ``opentelemetry-instrument`` if traced."""
        server = self.server_command()
        return [_bin("opentelemetry-instrument"), *server] if self.instrumented else server

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        """Start the service and wait until its health check answers."""
        for attempt in range(3):
            try:
                self._spawn()
                self._wait_healthy(timeout)
                return self
            except ServiceStartError:
                # A port picked free can be taken before uvicorn binds it: pick another.
                if self._fixed_port or attempt == 2 or "in use" not in self.log_tail(5):
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        env = {**os.environ, **self.env}
        # The app is imported from its own directory, as `cd clstock && uvicorn` does.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.app_dir), env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.app_dir, env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def _wait_healthy(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceStartError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + self.health_path, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise ServiceStartError(f"{self.name} not healthy after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the service (and its workers); SIGKILL if it outlives ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
