"""ClStock served the ways only the tests try, and what a clean exit of one looks like."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from clstock_otel_distro.tools.devstack import ServiceProcess

__all__ = ["GRACEFUL_EXIT_CODES", "GunicornProcess"]

# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so that its exit
# status says "terminated": -SIGTERM is a clean exit here, -SIGKILL is not.
GRACEFUL_EXIT_CODES = (0, -signal.SIGTERM)


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

    def server_command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "-k", self.worker_class,
                "-w", str(self.workers), "--bind", f"127.0.0.1:{self.port}",
                *self.server_args, self.app]
