"""The span file: OTLP JSON lines, as the OpenTelemetry Collector's ``file`` exporter writes.

``clstock-otel collect --output`` and ``clstock-otel demo`` write it, ``clstock-otel
report`` reads it, and so can any tool that reads the collector's files (its
``otlpjsonfile`` receiver, ``jq``)::

    from clstock_otel_distro.tools.spanfile import SpanFileWriter, read_spans

    with SpanFileWriter("spans.jsonl") as writer:   # appends, like the collector
        receiver.add_listener(writer.write)          # one line per export request
        ...
    spans, bad_lines = read_spans("spans.jsonl")     # also reads the collector's files

Each line is one ``TracesData`` object (``{"resourceSpans":[...]}``) in the OTLP JSON
encoding (hex trace and span ids, lowerCamelCase keys, enums as integers, 64-bit
integers as decimal strings), laid out field for field as the collector's pdata JSON
marshaler lays it out. The encoding itself is :mod:`~clstock_otel_distro.tools.otlp_json`'s;
this module is the file: appending lines safely from many threads, and reading them
back with a warning per bad line.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from clstock_otel_distro.tools.otlp_data import ReceivedSpan
from clstock_otel_distro.tools.otlp_json import decode_spans, encode_spans

__all__ = ["SpanFileWriter", "read_spans"]

_FILE_BUFFER_BYTES = 1 << 20
_MAX_WARNINGS = 20


class SpanFileWriter:
    """Appends spans to a file as OTLP JSON lines, one line per :meth:`write` call.

    Thread-safe: the line is encoded outside the lock and appended to a buffered file
    under it. Call :meth:`flush` to make what was written visible to readers (``tail
    -f``), :meth:`close` at the end. ``mode="w"`` truncates an existing file first.
    """

    def __init__(self, path: str | os.PathLike[str], *, mode: str = "a") -> None:
        if mode not in ("a", "w"):
            raise ValueError(f"mode must be 'a' or 'w', not {mode!r}")
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: TextIO | None = open(  # noqa: SIM115 - closed by close()
            self.path, mode, encoding="utf-8", newline="\n", buffering=_FILE_BUFFER_BYTES
        )
        self.lines_written = 0
        self.spans_written = 0

    def write(self, spans: Sequence[ReceivedSpan]) -> None:
        """Append ``spans`` as one line; does nothing for no spans."""
        if not spans:
            return
        line = encode_spans(spans) + "\n"
        with self._lock:
            if self._file is None:
                raise ValueError(f"{self.path} is closed")
            self._file.write(line)
            self.lines_written += 1
            self.spans_written += len(spans)

    def flush(self) -> None:
        """Write out the buffer."""
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        """Flush and close; later writes raise ``ValueError``. Idempotent."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> SpanFileWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_spans(
    path: str | Path, *, warn: Callable[[str], None] | None = None
) -> tuple[list[ReceivedSpan], int]:
    """The spans of an OTLP JSON lines file, and how many lines were skipped as bad.

    ``warn`` gets one message per bad line (default: printed to stderr), up to 20,
    then one saying how many more were skipped.
    """
    if warn is None:

        def warn(message: str) -> None:
            print(message, file=sys.stderr)

    spans: list[ReceivedSpan] = []
    bad = 0
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                spans.extend(decode_spans(line))
            except Exception as exc:  # any undecodable line is skipped, not fatal
                bad += 1
                if bad <= _MAX_WARNINGS:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    warn(f"{path}:{number}: skipped, not OTLP JSON traces ({reason[:200]})")
    if bad > _MAX_WARNINGS:
        warn(f"{path}: {bad - _MAX_WARNINGS} more bad lines skipped")
    return spans, bad
