"""Inference off the subscription callbacks (docs/architecture.md "ROS interfaces"): a worker thread with a bounded
queue.

``submit`` never blocks; when the queue is full the oldest waiting item is dropped (and counted),
so the model always works on the newest camera set and callbacks keep running at input rate.
``clear`` discards what waits and lets the running item finish (lifecycle deactivate); ``stop`` ends
the thread (cleanup, shutdown).
"""
from __future__ import annotations

import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["InferenceWorker"]

T = TypeVar("T")


class InferenceWorker(Generic[T]):
    """Runs ``process(item)`` for submitted items on one background thread.

    on_drop(item): called (on the submitting thread) for an item dropped because the queue was full.
    on_error(item, exc): called (on the worker thread) when ``process`` raises; the worker keeps going.
    """

    def __init__(self, process: Callable[[T], None], max_queue: int = 1,
                 on_drop: Callable[[T], None] | None = None,
                 on_error: Callable[[T, BaseException], None] | None = None, name: str = "inference") -> None:
        if max_queue < 1:
            raise ValueError(f"InferenceWorker: max_queue must be >= 1, got {max_queue}")
        self.process = process
        self.max_queue = max_queue
        self.on_drop = on_drop
        self.on_error = on_error
        self.dropped = 0
        self.processed = 0
        self.errors = 0
        self._queue: deque[T] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Queue ``item``; returns False when an older item had to be dropped to make room."""
        dropped: list[T] = []
        with self._cond:
            if self._stopping:
                raise RuntimeError("InferenceWorker: submit after stop()")
            while len(self._queue) >= self.max_queue:
                dropped.append(self._queue.popleft())
            self._queue.append(item)
            self.dropped += len(dropped)
            self._cond.notify()
        for old in dropped:
            if self.on_drop is not None:
                self.on_drop(old)
        return not dropped

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        with self._cond:
            return not self._queue and not self._busy

    def wait_idle(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout=timeout_s)

    def clear(self, timeout_s: float = 10.0) -> int:
        """Discard the waiting items and wait up to ``timeout_s`` for the running one; returns how many were
        discarded. The worker stays usable."""
        with self._cond:
            discarded = len(self._queue)
            self._queue.clear()
            self._cond.wait_for(lambda: not self._busy, timeout=timeout_s)
        return discarded

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the running item, discard queued ones, join the thread."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
        self._thread.join(timeout_s)

    def _report(self, item: T, exc: BaseException) -> None:
        if self.on_error is None:
            traceback.print_exception(exc, file=sys.stderr)
            return
        try:
            self.on_error(item, exc)
        except Exception:
            traceback.print_exc(file=sys.stderr)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if self._stopping:
                    return
                item = self._queue.popleft()
                self._busy = True
            try:
                self.process(item)
            except Exception as exc:
                self.errors += 1
                self._report(item, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self.processed += 1
                    self._cond.notify_all()
