"""InferenceWorker: bounded queue that drops the oldest, survives errors, clear() waits for the running item."""
from __future__ import annotations

import threading
import time

import pytest

from protoocc_ros.ros.runtime.inference_worker import InferenceWorker


def test_worker_drops_oldest_when_busy_and_runs_the_newest() -> None:
    gate, started = threading.Event(), threading.Event()
    done: list[int] = []
    dropped: list[int] = []

    def process(item: int) -> None:
        started.set()
        gate.wait(5.0)
        done.append(item)

    worker = InferenceWorker(process, max_queue=1, on_drop=dropped.append)
    worker.submit(0)  # picked up at once, blocks on the gate
    assert started.wait(5.0) and not worker.idle
    results = [worker.submit(i) for i in range(1, 5)]
    assert results == [True, False, False, False]
    gate.set()
    assert worker.wait_idle(5.0)
    worker.stop()
    assert done == [0, 4] and dropped == [1, 2, 3] and worker.dropped == 3 and worker.processed == 2


def test_worker_survives_errors_and_reports_them() -> None:
    errors: list[tuple[int, str]] = []

    def process(item: int) -> None:
        if item == 1:
            raise RuntimeError("boom")

    worker = InferenceWorker(process, max_queue=4, on_error=lambda i, e: errors.append((i, str(e))))
    for i in range(3):
        worker.submit(i)
    assert worker.wait_idle(5.0)
    worker.stop()
    assert errors == [(1, "boom")] and worker.errors == 1 and worker.processed == 3
    with pytest.raises(RuntimeError, match="after stop"):
        worker.submit(5)
    with pytest.raises(ValueError, match="max_queue"):
        InferenceWorker(process, max_queue=0)


def test_worker_survives_a_failing_error_handler(capfd: pytest.CaptureFixture[str]) -> None:
    done: list[int] = []

    def process(item: int) -> None:
        if item == 0:
            raise RuntimeError("bad set")
        done.append(item)

    def handler(item: int, exc: BaseException) -> None:
        raise ValueError("handler broke")

    worker = InferenceWorker(process, max_queue=4, on_error=handler)
    worker.submit(0)
    worker.submit(1)
    assert worker.wait_idle(5.0)
    worker.stop()
    assert done == [1]
    assert "handler broke" in capfd.readouterr().err


def test_clear_discards_waiting_items_and_waits_for_the_running_one() -> None:
    gate, started = threading.Event(), threading.Event()
    done: list[int] = []

    def process(item: int) -> None:
        started.set()
        gate.wait(5.0)
        done.append(item)

    worker = InferenceWorker(process, max_queue=3)
    worker.submit(0)
    assert started.wait(5.0)
    worker.submit(1)
    worker.submit(2)
    threading.Timer(0.2, gate.set).start()
    assert worker.clear(timeout_s=5.0) == 2
    assert done == [0] and worker.idle
    worker.submit(3)  # still usable after clear
    assert worker.wait_idle(5.0)
    worker.stop()
    assert done == [0, 3]


def test_submit_does_not_block_while_the_model_runs() -> None:
    gate = threading.Event()
    worker = InferenceWorker(lambda item: gate.wait(5.0), max_queue=1)
    start = time.monotonic()
    for i in range(50):
        worker.submit(i)
    assert time.monotonic() - start < 0.5
    gate.set()
    worker.stop()
