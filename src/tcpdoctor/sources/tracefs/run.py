"""Run a trace: a private instance, its raw buffers (or the text pipe) polled every tick,
batches fed to the tracker in time order (and to a stream callback), stopped after a
duration, on a flag, or by a signal."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.trace import EventBatch, Reorder
from tcpdoctor.sources.tracefs.follow import Tracker, summary
from tcpdoctor.sources.tracefs.instance import instance, switched_off
from tcpdoctor.sources.tracefs.ring import RawReader
from tcpdoctor.sources.tracefs.text import TextReader

TICK = 0.1  # seconds between polls: well inside what the per-CPU buffers hold


class Trace:
    """One trace run; `result()` is its summary (plain data)."""

    def __init__(self, seconds: float | None,
                 on_batch: Callable[[dict[str, np.ndarray], Tracker], None] | None = None,
                 stop: threading.Event | None = None, reader: str = "auto",
                 families: tuple[int, ...] | None = None) -> None:
        self.seconds = seconds
        self.families = families  # address families kept (-4/-6); None: both
        self.mode = reader  # raw, text, or auto: raw, else the text pipe (with a note)
        self.reader = ""
        self.note = ""
        self.on_batch = on_batch
        self.stop = stop or threading.Event()
        self.tracker = Tracker()
        self.order = Reorder()
        self.reasons: dict[int, str] = {}
        self.lost = 0
        self.elapsed = 0.0
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.lock = threading.Lock()  # the tracker is fed here and read by window()
        self.window_start = time.monotonic()
        self.lost_before = 0
        self._lost: Callable[[], int] = lambda: 0

    def run(self) -> None:
        """Trace until the duration ends or stop is set (in this thread)."""
        with instance() as path:
            reader = self._open(path)
            self._lost = reader.lost
            try:
                fmt = reader.formats["tcp/tcp_send_reset"]  # reset reasons by number
                self.reasons = fmt.symbols.get("reason", {})
                start = self.window_start = time.monotonic()
                self.ready.set()
                # Ctrl-C ends the trace; what the buffers hold by then is still read.
                with contextlib.suppress(KeyboardInterrupt):
                    while not self.stop.is_set():
                        self._drain(reader)
                        self.elapsed = time.monotonic() - start
                        if self.seconds is not None and self.elapsed >= self.seconds:
                            break
                        self.stop.wait(TICK)
                self._drain(reader, final=True)
                self.lost = reader.lost()
                if switched_off(path):
                    self.note = Msg("something else switched this trace's tracing off (or "
                                    "removed it) before it ended: the counts miss what "
                                    "happened after that")
            finally:
                reader.close()

    def _open(self, path: str) -> RawReader | TextReader:
        if self.mode != "text":
            try:
                self.reader = "raw"
                return RawReader(path)
            except (OSError, TcpDoctorError) as exc:
                if self.mode == "raw":
                    raise TcpDoctorError(Msg("cannot read the raw ring buffers: {exc}",
                                             exc=exc)) from None
                self.note = Msg("the raw ring buffers could not be read ({exc}); read the text "
                                "pipe instead, which is slower and loses events sooner", exc=exc)
        self.reader = "text"
        return TextReader(path)

    def _drain(self, reader: RawReader | TextReader, final: bool = False) -> None:
        while True:
            batch = EventBatch()
            more, safe = reader.poll(batch)
            drained = not more
            cols = self.order.take(batch, None if final and drained else safe)
            if self.families is not None and len(self.families) < 2:
                keep = np.isin(cols["family"], self.families)
                cols = {k: v[keep] for k, v in cols.items()}
            if cols["ts"].shape[0]:
                with self.lock:
                    self.tracker.feed(cols, self.reasons)
                if self.on_batch is not None:
                    self.on_batch(cols, self.tracker)
            if drained:
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

    def window(self, netns: int | None = None) -> dict[str, Any]:
        """The summary since the previous window (a trace running in its thread), and a
        new window begun: `watch --trace` takes one per sample."""
        with self.lock:
            now, lost = time.monotonic(), self._lost()
            out = summary(self.tracker, now - self.window_start, lost - self.lost_before,
                          netns)
            self.tracker.new_window()
            self.window_start, self.lost_before = now, lost
        return self._labelled(out)

    def result(self, netns: int | None = None) -> dict[str, Any]:
        return self._labelled(summary(self.tracker, self.elapsed, self.lost, netns))

    def _labelled(self, out: dict[str, Any]) -> dict[str, Any]:
        out["reader"] = self.reader
        if self.note:
            out["note"] = self.note
        return out
