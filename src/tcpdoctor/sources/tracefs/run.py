"""Run a trace: a private instance, the raw reader polled every tick, batches fed to the
tracker (and to a stream callback), stopped after a duration, on a flag, or by a signal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tcpdoctor.model.trace import EventBatch
from tcpdoctor.sources.tracefs.follow import Tracker, summary
from tcpdoctor.sources.tracefs.instance import instance
from tcpdoctor.sources.tracefs.ring import MAX_PAGES, RawReader

TICK = 0.1  # seconds between polls: well inside what the per-CPU buffers hold


class Trace:
    """One trace run; `result()` is its summary (plain data)."""

    def __init__(self, seconds: float | None,
                 on_batch: Callable[[dict[str, np.ndarray], Tracker], None] | None = None,
                 stop: threading.Event | None = None) -> None:
        self.seconds = seconds
        self.on_batch = on_batch
        self.stop = stop or threading.Event()
        self.tracker = Tracker()
        self.reasons: dict[int, str] = {}
        self.lost = 0
        self.elapsed = 0.0
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        """Trace until the duration ends or stop is set (in this thread)."""
        with instance() as path:
            reader = RawReader(path)
            try:
                fmt = reader.formats["tcp/tcp_send_reset"]
                self.reasons = fmt.symbols.get("reason", {})
                start = time.monotonic()
                self.ready.set()
                while not self.stop.is_set():
                    self._drain(reader)
                    self.elapsed = time.monotonic() - start
                    if self.seconds is not None and self.elapsed >= self.seconds:
                        break
                    self.stop.wait(TICK)
                self._drain(reader)
                self.lost = reader.lost()
            finally:
                reader.close()

    def _drain(self, reader: RawReader) -> None:
        while True:
            batch = EventBatch()
            pages = reader.poll(batch)
            if len(batch):
                cols = batch.columns()
                self.tracker.feed(cols, self.reasons)
                if self.on_batch is not None:
                    self.on_batch(cols, self.tracker)
            if pages < MAX_PAGES:  # the buffers are drained
                return

    def start_thread(self) -> threading.Thread:
        """Trace in a thread (alongside a sample); join it after setting stop."""

        def body() -> None:
            try:
                self.run()
            except BaseException as exc:  # handed to the caller, who reports it
                self.error = exc
            finally:
                self.ready.set()

        thread = threading.Thread(target=body, name="tcpdoctor-trace", daemon=True)
        thread.start()
        self.ready.wait(10)
        return thread

    def result(self, netns: int | None = None) -> dict[str, Any]:
        return summary(self.tracker, self.elapsed, self.lost, netns)
