"""Payloads kept on disk when memory cannot hold them or the process exits.

One file per payload in ``OTEL_PYTHON_CLSTOCK_SPOOL_DIR``, named
``<time ns>-<pid>-<seq>.<signal>.otlp`` so that a listing sorted by name is oldest
first. A file is written under a hidden temporary name and renamed into place, so a
reader never sees half of one. Its header holds the signal, the item count, the
payload's length and CRC-32: a truncated or damaged file is recognised, deleted, and
reported in one warning.

Several processes may share the directory (``uvicorn --workers``, gunicorn, the next
process after a restart). A process takes a file by renaming it to
``<name>.claimed-<pid>`` (atomic: exactly one process wins), sends it and deletes it,
or renames it back when the collector is still away. A claim left by a process that
died is given back by the next process that opens the spool on the same host.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Claim", "CorruptSpoolFile", "Spool", "decode", "encode"]

_logger = logging.getLogger(__name__)

MAGIC = b"CLSPOOL1"
_HEADER = struct.Struct(">8sB8sIQI")  # magic, signal length, signal, items, length, crc32
SUFFIX = ".otlp"
_CLAIMED = ".claimed-"
_TEMP_PREFIX = ".tmp-"


class CorruptSpoolFile(ValueError):
    """A spool file whose header or payload does not check out."""


def encode(signal: str, items: int, payload: bytes) -> bytes:
    """The file's bytes: header, then the payload."""
    name = signal.encode("ascii")
    return _HEADER.pack(MAGIC, len(name), name.ljust(8, b"\0"), items, len(payload),
                        zlib.crc32(payload)) + payload


def decode(data: bytes) -> tuple[str, int, bytes]:
    """(signal, items, payload) of a file's bytes; raises :class:`CorruptSpoolFile`."""
    if len(data) < _HEADER.size:
        raise CorruptSpoolFile("shorter than its header")
    magic, name_length, name, items, length, crc = _HEADER.unpack_from(data)
    if magic != MAGIC or name_length > 8:
        raise CorruptSpoolFile("not a spool file")
    payload = data[_HEADER.size:]
    if len(payload) != length:
        raise CorruptSpoolFile(f"truncated: {len(payload)} of {length} payload bytes")
    if zlib.crc32(payload) != crc:
        raise CorruptSpoolFile("checksum mismatch")
    return name[:name_length].decode("ascii", "replace"), items, payload


@dataclass(frozen=True)
class Claim:
    """A spool file this process has taken."""

    path: Path
    """The claimed file."""
    original: Path
    """Its name before the claim (to give it back)."""
    items: int
    payload: bytes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """One spool directory with a size bound."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._sequence = itertools.count()
        self._lock = threading.Lock()
        self._ready = False
        # The directory's size, re-read at most once a second: an exit that spools
        # hundreds of payloads must not list the directory for each.
        self._size = 0
        self._size_read_at: float | None = None

    def reset_after_fork(self) -> None:
        """A forked child's lock is its own (a parent's thread may have held it)."""
        self._lock = threading.Lock()

    def _prepare(self) -> bool:
        """Create the directory and give back dead processes' claims, once."""
        if self._ready:
            return True
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _logger.warning("clstock-otel: spool directory %s cannot be created: %s",
                            self.directory, exc)
            return False
        self._ready = True
        for entry in self._entries():
            name, _, pid = entry.name.rpartition(_CLAIMED)
            if name and pid.isdigit() and not _pid_alive(int(pid)):
                # Another process may give it back first.
                with contextlib.suppress(OSError):
                    os.rename(entry, self.directory / name)
        return True

    def _entries(self) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(self.directory) as listing:
                return list(listing)
        except OSError:
            return []

    def size(self) -> int:
        """Bytes held by the spool's files (every process's)."""
        total = 0
        for entry in self._entries():
            try:
                total += entry.stat().st_size
            except OSError:
                continue  # claimed and deleted meanwhile
        return total

    def write(self, signal: str, items: int, payload: bytes) -> bool:
        """Keep one payload on disk; False when the bound or the disk refuses it."""
        if not self._prepare():
            return False
        data = encode(signal, items, payload)
        with self._lock:
            now = time.monotonic()
            if self._size_read_at is None or now - self._size_read_at > 1.0:
                self._size, self._size_read_at = self.size(), now
            if self._size + len(data) > self.max_bytes:
                return False
            self._size += len(data)
            sequence = next(self._sequence)
        stem = f"{time.time_ns():020d}-{os.getpid()}-{sequence}.{signal}{SUFFIX}"
        temporary = self.directory / f"{_TEMP_PREFIX}{stem}"
        try:
            with open(temporary, "wb") as file:
                file.write(data)
            os.rename(temporary, self.directory / stem)
        except OSError as exc:
            _logger.warning("clstock-otel: cannot write to the spool %s: %s", self.directory, exc)
            with contextlib.suppress(OSError):
                temporary.unlink()
            return False
        return True

    def pending(self, signal: str) -> list[Path]:
        """The unclaimed files of ``signal``, oldest first."""
        if not self._prepare():
            return []
        ending = f".{signal}{SUFFIX}"
        return sorted(self.directory / entry.name for entry in self._entries()
                      if entry.name.endswith(ending) and not entry.name.startswith("."))

    def claim_next(self, signal: str) -> Claim | None:
        """Take the oldest unclaimed file of ``signal``; corrupt ones are deleted on the way."""
        for path in self.pending(signal):
            claimed = path.with_name(f"{path.name}{_CLAIMED}{os.getpid()}")
            try:
                os.rename(path, claimed)
            except OSError:
                continue  # another process took it
            try:
                stored_signal, items, payload = decode(claimed.read_bytes())
                if stored_signal != signal:
                    raise CorruptSpoolFile(f"holds {stored_signal!r}, named {signal!r}")
            except (OSError, CorruptSpoolFile) as exc:
                self._discard(claimed, path, exc)
                continue
            return Claim(claimed, path, items, payload)
        return None

    def _discard(self, claimed: Path, original: Path, problem: Exception) -> None:
        _logger.warning("clstock-otel: spool file %s skipped and deleted: %s",
                        original, problem)
        with contextlib.suppress(OSError):
            claimed.unlink()

    def done(self, claim: Claim) -> None:
        """The claimed payload was delivered (or dropped for good): delete its file."""
        with contextlib.suppress(OSError):
            claim.path.unlink()

    def give_back(self, claim: Claim) -> None:
        """The collector is still away: leave the file for a later try (any process)."""
        with contextlib.suppress(OSError):
            os.rename(claim.path, claim.original)
