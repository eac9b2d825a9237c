"""The disk spool: whole files only, claimed once, damaged files skipped with a warning."""

from __future__ import annotations

import logging
import multiprocessing
import os

from clstock_otel_distro.sdk.delivery.spool import Spool, decode, encode


def test_a_file_holds_signal_count_and_payload():
    """The header round-trips; the payload is kept byte for byte."""
    assert decode(encode("metrics", 7, b"\x00payload\xff")) == ("metrics", 7, b"\x00payload\xff")


def test_files_are_claimed_oldest_first_and_deleted_when_done(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    for payload in (b"one", b"two"):
        assert spool.write("spans", 1, payload)
    first = spool.claim_next("spans")
    assert first.payload == b"one"
    assert spool.claim_next("spans").payload == b"two"
    assert spool.claim_next("spans") is None
    spool.done(first)
    assert len(list(tmp_path.iterdir())) == 1  # the second is still claimed


def test_a_file_given_back_is_claimed_again(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    spool.write("logs", 2, b"x")
    claim = spool.claim_next("logs")
    spool.give_back(claim)
    assert spool.claim_next("logs").payload == b"x"


def test_signals_are_kept_apart(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    spool.write("metrics", 1, b"m")
    assert spool.claim_next("spans") is None
    assert spool.claim_next("metrics").payload == b"m"


def test_the_size_bound_refuses_a_file_that_does_not_fit(tmp_path):
    spool = Spool(tmp_path, 100)
    assert spool.write("spans", 1, b"x" * 40)
    assert not spool.write("spans", 1, b"x" * 40)


def test_a_truncated_or_damaged_file_is_skipped_with_one_warning(tmp_path, caplog):
    """The good files are still sent; the bad ones are deleted, one warning each."""
    spool = Spool(tmp_path, 1 << 20)
    for payload in (b"good-1", b"truncated", b"flipped", b"good-2"):
        spool.write("spans", 1, payload)
    names = sorted(tmp_path.iterdir())
    names[1].write_bytes(names[1].read_bytes()[:-3])
    damaged = bytearray(names[2].read_bytes())
    damaged[-1] ^= 0xFF
    names[2].write_bytes(bytes(damaged))
    (tmp_path / "0-1-1.spans.otlp").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        payloads = [spool.claim_next("spans") for _ in range(3)]
    assert [claim.payload for claim in payloads[:2]] == [b"good-1", b"good-2"]
    assert payloads[2] is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert any("truncated" in w for w in warnings) and any("checksum" in w for w in warnings)


def test_a_dead_process_claim_is_given_back(tmp_path):
    """A file claimed by a process that died is sent by the next one."""
    Spool(tmp_path, 1 << 20).write("spans", 1, b"orphan")
    [path] = tmp_path.iterdir()
    child = multiprocessing.get_context("fork").Process(target=lambda: None)
    child.start()
    child.join()
    os.rename(path, path.with_name(f"{path.name}.claimed-{child.pid}"))
    assert Spool(tmp_path, 1 << 20).claim_next("spans").payload == b"orphan"


def _claim_all(directory: str, queue) -> None:
    spool = Spool(directory, 1 << 30)
    taken = []
    while (claim := spool.claim_next("spans")) is not None:
        taken.append(claim.payload)
        spool.done(claim)
    queue.put(taken)


def test_processes_sharing_a_spool_take_each_file_once(tmp_path):
    """Four processes drain 200 files at once: every file is taken exactly once."""
    spool = Spool(tmp_path, 1 << 30)
    payloads = {b"payload-%d" % index for index in range(200)}
    for payload in payloads:
        spool.write("spans", 1, payload)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_claim_all, args=(str(tmp_path), queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    taken = [queue.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(30)
    every = [payload for share in taken for payload in share]
    assert len(every) == len(payloads)
    assert set(every) == payloads
