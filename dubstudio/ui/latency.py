"""Event-loop latency probe: how late a 10 ms QTimer fires while the engine renders.

A GUI thread blocked by model work would show lateness of seconds; a responsive one shows a few
milliseconds. The editor runs the probe while renders are in flight and shows the worst value in
the status bar tooltip; tests and the screenshot script read `max_late_ms`.
"""

from __future__ import annotations

import time

from PySide6 import QtCore


class LatencyProbe(QtCore.QObject):
    """Measures the lateness of a periodic timer on the thread it lives in.

    Args:
        interval_ms: Timer period.
    """

    def __init__(self, interval_ms: int = 10, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last = 0.0
        self.max_late_ms = 0.0
        self.ticks = 0
        self.samples_ms: list[float] = []

    def start(self) -> None:
        """Start measuring (keeps earlier numbers; see `reset`)."""
        if not self._timer.isActive():
            self._last = time.perf_counter()
            self._timer.start()

    def stop(self) -> None:
        """Stop measuring."""
        self._timer.stop()

    def reset(self) -> None:
        """Forget what was measured."""
        self.max_late_ms = 0.0
        self.ticks = 0
        self.samples_ms.clear()

    @property
    def active(self) -> bool:
        """Whether the probe is running."""
        return self._timer.isActive()

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) of lateness in ms (0 when nothing was measured)."""
        if not self.samples_ms:
            return 0.0
        ordered = sorted(self.samples_ms)
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[index]

    def _tick(self) -> None:
        now = time.perf_counter()
        late = max(0.0, (now - self._last) * 1000.0 - self.interval_ms)
        self._last = now
        self.ticks += 1
        self.samples_ms.append(late)
        if len(self.samples_ms) > 100_000:
            del self.samples_ms[:50_000]
        self.max_late_ms = max(self.max_late_ms, late)
