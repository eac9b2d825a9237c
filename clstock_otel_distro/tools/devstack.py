"""Run ClStock's services locally as subprocesses, traced or not.

The demo command and the integration tests use this to start the market replay
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

__all__ = [
    "GRACEFUL_EXIT_CODES",
    "GunicornProcess",
    "ServiceProcess",
    "ServiceStartError",
    "find_app_dir",
    "free_port",
    "upstream_distro_path",
]

# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so that its exit
# status says "terminated": -SIGTERM is a clean exit here, -SIGKILL is not.
GRACEFUL_EXIT_CODES = (0, -signal.SIGTERM)


class ServiceStartError(RuntimeError):
    """A service did not answer its health check in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS considers free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def find_app_dir(start: Path | None = None) -> Path:
    """The ``clstock/`` application directory of this checkout."""
    candidates = [Path.cwd() / "clstock", Path.cwd()]
    if start is not None:
        candidates.insert(0, start)
    candidates.append(Path(__file__).resolve().parent.parent / "clstock")
    for candidate in candidates:
        if (candidate / "app" / "main.py").is_file():
            return candidate
    raise FileNotFoundError("no ClStock checkout found (looked for clstock/app/main.py)")


def upstream_distro_path(cache_root: Path | None = None) -> Path:
    """A directory holding the upstream opentelemetry-distro, to put first on PYTHONPATH.

    Installed once (``pip install --no-deps --target``) at the version matching our
    opentelemetry-instrumentation, beside the virtualenv's site-packages rather than
    into it: a process given this directory on PYTHONPATH finds upstream's distro and
    configurator entry points before ours, as when both are installed, while every
    other process keeps seeing ours alone. Tests and benchmarks compare against it.
    """
    import importlib.metadata

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

    def command(self) -> list[str]:
        server = [sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1",
                  "--port", str(self.port), "--no-access-log", *self.server_args]
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


class GunicornProcess(ServiceProcess):
    """One ClStock app served by gunicorn with uvicorn workers, in a subprocess.

    ``gunicorn -k uvicorn.workers.UvicornWorker -w WORKERS app``, the way ClStock is
    deployed behind a process manager; ``server_args`` adds options (``--preload``).
    ``stop()`` SIGTERMs the master and its workers, as for uvicorn.
    """

    def __init__(self, name: str, app: str, app_dir: Path, *, workers: int = 2,
                 worker_class: str = "uvicorn.workers.UvicornWorker", **kwargs: object) -> None:
        super().__init__(name, app, app_dir, **kwargs)  # type: ignore[arg-type]
        self.workers = workers
        self.worker_class = worker_class

    def command(self) -> list[str]:
        server = [sys.executable, "-m", "gunicorn", "-k", self.worker_class,
                  "-w", str(self.workers), "--bind", f"127.0.0.1:{self.port}",
                  *self.server_args, self.app]
        return [_bin("opentelemetry-instrument"), *server] if self.instrumented else server
