"""Soak: a steady load for a long time while the collector flaps; is anything lost?

    python bench/soak.py [--minutes 30] [--cycle 300] [--down 60] [--rate 10] [--quick]

ClStock's API under ``opentelemetry-instrument`` (this distro, its defaults) serves a
steady load of ``/api/v1/predict/7203`` requests, each in a trace of its own, while
its collector (a receiver on a fixed port) is stopped for ``--down`` seconds at the
start of every ``--cycle`` (1 minute in every 5 by default). Every 30 s it prints:
requests sent, requests whose whole trace arrived (at least once), the distro's drop counter
(``clstock.telemetry.dropped``, exported with the metrics) and the API's RSS.

After the last cycle the collector stays up until everything arrived (or the retry
interval has passed twice), then the goals of issue 13 are judged:

- 100 % of every request's spans delivered;
- no drop counted;
- RSS flat: no growth beyond 5 MiB after the first cycle.

``--quick`` runs 3 minutes of 1-minute cycles with the collector down 12 s each.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: F401 - puts the repository root on sys.path
import requests

from clstock_otel_distro.tools.devstack import ServiceProcess, find_app_dir, free_port
from tests.support.receiver import RecordingReceiver

PATH = "/api/v1/predict/7203"
RSS_GROWTH_LIMIT_KIB = 5 * 1024
REPORT_EVERY = 30.0
DROPPED_METRIC = "clstock.telemetry.dropped"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def traceparent() -> tuple[str, dict[str, str]]:
    import secrets

    trace_id = secrets.token_hex(16)
    return trace_id, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}


class Load(threading.Thread):
    """Requests at a steady rate until stopped; the trace id of each one answered 200."""

    def __init__(self, url: str, rate: float) -> None:
        super().__init__(daemon=True, name="soak-load")
        self.url, self.interval = url, 1.0 / rate
        self.sent: list[str] = []
        self.failures = 0
        self.halt = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        next_at = time.monotonic()
        while not self.halt.is_set():
            trace_id, headers = traceparent()
            try:
                if session.get(self.url, headers=headers, timeout=30).status_code == 200:
                    self.sent.append(trace_id)
                else:
                    self.failures += 1
            except requests.RequestException:
                self.failures += 1
            next_at += self.interval
            self.halt.wait(max(0.0, next_at - time.monotonic()))


class Collector:
    """Receivers on one port, stopped and started again; every span any of them got."""

    def __init__(self) -> None:
        self.port = free_port()
        self._past: list[RecordingReceiver] = []
        self.current: RecordingReceiver | None = None
        self._seen: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self._lock = threading.Lock()
        self.dropped = 0.0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        self.current = RecordingReceiver(http_port=self.port, grpc_port=None).start()
        self.current.add_listener(self._note)

    def down(self) -> None:
        if self.current is not None:
            self._read_metrics(self.current)
            self.current.stop()
            self.current = None

    def _note(self, spans) -> None:
        with self._lock:
            for span in spans:
                self._seen[span.trace_id][span.name] += 1

    def _read_metrics(self, receiver: RecordingReceiver) -> None:
        for metric in receiver.metrics():
            if metric.name == DROPPED_METRIC:
                total = sum(point["value"] for point in metric.data_points)
                self.dropped = max(self.dropped, total)  # cumulative
        receiver.clear()  # keep the soak's own memory flat

    def drops(self) -> float:
        if self.current is not None:
            self._read_metrics(self.current)
        return self.dropped

    def delivered(self, sent: list[str], shape: collections.Counter) -> int:
        """Requests whose every span arrived (at least once)."""
        return len(sent) - len(self.incomplete(sent, shape))

    def incomplete(self, sent: list[str], shape: collections.Counter
                   ) -> dict[str, collections.Counter]:
        """The requests of ``sent`` with a span missing, and what arrived of them."""
        with self._lock:
            seen = {t: collections.Counter(self._seen.get(t, {})) for t in sent}
        return {t: got for t, got in seen.items() if shape - got}

    def duplicated(self, sent: list[str], shape: collections.Counter) -> int:
        """Requests with a span that arrived twice (a batch the collector took whose
        answer was lost, sent again: delivery is at least once)."""
        with self._lock:
            return sum(1 for t in sent if collections.Counter(self._seen.get(t, {})) - shape)

    def shape_of(self, url: str) -> collections.Counter:
        """The spans of one lone request (the first warms the caches)."""
        shape: collections.Counter = collections.Counter()
        for _ in range(2):
            trace_id, headers = traceparent()
            requests.get(url, headers=headers, timeout=30).raise_for_status()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                time.sleep(0.3)
                with self._lock:
                    seen = self._seen.get(trace_id)
                if seen and any(name.startswith("GET ") for name in seen):
                    time.sleep(0.5)
                    break
            with self._lock:
                shape = collections.Counter(self._seen.get(trace_id, {}))
        return shape


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--cycle", type=float, default=300.0, help="seconds per cycle")
    parser.add_argument("--down", type=float, default=60.0, help="collector down, s per cycle")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--quick", action="store_true", help="3 min, 60 s cycles, 12 s down")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.cycle, args.down = 3.0, 60.0, 12.0
    report_every = min(REPORT_EVERY, args.cycle / 4)

    app_dir = find_app_dir()
    collector = Collector()
    collector.up()
    replay = ServiceProcess("replay", "app.market_replay:app", app_dir, instrumented=False).start()
    api = ServiceProcess("soak", "app.main:app", app_dir, env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_SERVICE_NAME": "clstock-soak",
        "OTEL_METRIC_EXPORT_INTERVAL": "5000", "CLSTOCK_YAHOO_URL": replay.url}).start()
    try:
        shape = collector.shape_of(api.url + PATH)
        print(f"soak: {args.minutes:g} min, collector down {args.down:g} s in every "
              f"{args.cycle:g} s, {args.rate:g} requests/s; a request makes "
              f"{sum(shape.values())} spans")
        print(f"{'time':>6}  {'collector':>9}  {'sent':>6}  {'delivered':>9}  "
              f"{'dropped':>7}  {'RSS MiB':>7}")
        load = Load(api.url + PATH, args.rate)
        load.start()
        started = time.monotonic()
        end = started + args.minutes * 60
        rss_by_cycle: dict[int, int] = {}
        next_report = started
        while time.monotonic() < end:
            elapsed = time.monotonic() - started
            cycle, into = divmod(elapsed, args.cycle)
            should_be_up = into >= args.down
            if should_be_up and collector.current is None:
                collector.up()
            elif not should_be_up and collector.current is not None:
                collector.down()
            if time.monotonic() >= next_report:
                rss = rss_kib(api.process.pid)
                rss_by_cycle[int(cycle)] = max(rss_by_cycle.get(int(cycle), 0), rss)
                sent = list(load.sent)
                print(f"{elapsed:6.0f}  {'up' if collector.current else 'DOWN':>9}  "
                      f"{len(sent):6d}  {collector.delivered(sent, shape):9d}  "
                      f"{collector.drops():7.0f}  {rss / 1024:7.1f}", flush=True)
                next_report += report_every
            time.sleep(0.2)
        load.halt.set()
        load.join(60)
        if collector.current is None:
            collector.up()
        sent = list(load.sent)
        settle = time.monotonic() + 70  # twice the default longest retry interval
        while collector.delivered(sent, shape) < len(sent) and time.monotonic() < settle:
            time.sleep(1)
        time.sleep(6)  # one more metric export: the final drop count
        delivered, drops = collector.delivered(sent, shape), collector.drops()
        duplicated = collector.duplicated(sent, shape)
        for trace_id, got in list(collector.incomplete(sent, shape).items())[:5]:
            print(f"  incomplete {trace_id}: missing {dict(shape - got)}")
        rss = rss_kib(api.process.pid)
        print(f"{time.monotonic() - started:6.0f}  {'up':>9}  {len(sent):6d}  {delivered:9d}  "
              f"{drops:7.0f}  {rss / 1024:7.1f}  (settled)")
    finally:
        api.stop()
        replay.stop()
        collector.down()

    # The first cycle's peak (one outage, its backlog, the caches warm) is the baseline.
    first_cycle = rss_by_cycle.get(0, rss)
    growth = max([*[v for k, v in rss_by_cycle.items() if k >= 1], rss]) - first_cycle
    goals = [
        (f"100% delivered: {delivered}/{len(sent)} requests' traces whole "
         f"({duplicated} with a span received twice; {load.failures} requests failed)",
         delivered == len(sent) and sent),
        (f"no drop counted: {drops:.0f}", drops == 0),
        (f"RSS flat after the first cycle: +{growth / 1024:.1f} MiB (limit "
         f"{RSS_GROWTH_LIMIT_KIB / 1024:.0f} MiB)", growth <= RSS_GROWTH_LIMIT_KIB),
    ]
    print()
    for text, met in goals:
        print(f"  {'MET    ' if met else 'NOT MET'}  {text}")
    return 0 if all(met for _, met in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
