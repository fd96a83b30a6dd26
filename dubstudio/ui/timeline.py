"""The timeline: one draggable region per line, waveforms, a playhead and a frame grid (pyqtgraph).

The x axis is time in seconds. The view is split into lanes along y:

    y in [2, 3]: the original video's audio (min/max envelope)
    y in [1, 2]: line regions carry their labels here (regions span every lane)
    y in [0, 1]: the rendered take of each line, drawn inside its slot

The widget knows nothing about the project: the main window feeds it `RegionSpec` values and
listens to its signals. A drag only changes the region on screen; when the mouse is released the
new slot, snapped to whole frames, is reported through `line_timing_edited` and the main window
turns it into an undoable core command. The model change then comes back through `set_regions`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

logger = logging.getLogger(__name__)

#: Fit-forecast colours shared by the table and the timeline (fill of the region).
FORECAST_COLOURS: dict[str, tuple[int, int, int]] = {
    "fits": (46, 160, 67),
    "tight": (219, 163, 0),
    "impossible": (207, 34, 46),
    "unknown": (110, 118, 129),
}

# Above this many pixels per frame the frame grid is drawn (fewer would be a grey smear).
_GRID_MIN_PX_PER_FRAME = 6.0
# Points of a waveform envelope drawn per lane; more adds nothing visible.
_ENVELOPE_BINS = 4000


@dataclass(frozen=True)
class RegionSpec:
    """What the timeline shows for one line.

    Attributes:
        line_id: Stable id of the line.
        start_frame: First frame of the slot.
        end_frame: First frame after the slot.
        label: Text drawn on the region (the line's text).
        forecast: ``fits`` / ``tight`` / ``impossible`` / ``unknown``; picks the colour.
    """

    line_id: str
    start_frame: int
    end_frame: int
    label: str
    forecast: str = "unknown"


def envelope(samples: np.ndarray, bins: int = _ENVELOPE_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Min/max envelope of a mono signal, interleaved so one polyline draws it.

    Args:
        samples: Audio, shape ``(N,)``.
        bins: Number of min/max pairs.

    Returns:
        ``(positions, values)``, both shape ``(2 * bins',)`` where ``bins' <= bins``;
        positions are sample indices.
    """
    n = len(samples)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    bins = max(1, min(bins, n))
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    lows = np.minimum.reduceat(samples, edges[:-1])
    highs = np.maximum.reduceat(samples, edges[:-1])
    x = np.repeat(edges[:-1], 2).astype(np.float64)
    y = np.empty(2 * bins, dtype=np.float64)
    y[0::2] = lows
    y[1::2] = highs
    return x, y


class LineRegionItem(pg.LinearRegionItem):
    """A line's slot: drag the body to move it, an edge to trim it."""

    def __init__(self, spec: RegionSpec, fps: Fraction) -> None:
        super().__init__(
            values=(spec.start_frame / fps, spec.end_frame / fps),
            orientation="vertical",
            swapMode="block",
        )
        self.line_id = spec.line_id
        self.spec = spec
        self.label = pg.InfLineLabel(
            self.lines[0], text="", position=0.55, anchors=[(0, 0.5), (0, 0.5)]
        )
        self.label.setColor(pg.mkColor(235, 235, 235))
        self.apply(spec, fps, selected=False)

    def apply(self, spec: RegionSpec, fps: Fraction, *, selected: bool) -> None:
        """Show ``spec`` (position, label, colour) without reporting an edit."""
        self.spec = spec
        self.blockSignals(True)
        try:
            self.setRegion((float(spec.start_frame / fps), float(spec.end_frame / fps)))
        finally:
            self.blockSignals(False)
        self.fit_label()
        red, green, blue = FORECAST_COLOURS.get(spec.forecast, FORECAST_COLOURS["unknown"])
        alpha = 120 if selected else 55
        self.setBrush(pg.mkBrush(red, green, blue, alpha))
        self.setHoverBrush(pg.mkBrush(red, green, blue, alpha + 40))
        edge = pg.mkPen(red, green, blue, 255, width=3 if selected else 1)
        for line in self.lines:
            line.setPen(edge)
            line.setHoverPen(pg.mkPen(255, 255, 255, 255, width=3))
        self.update()

    def fit_label(self) -> None:
        """Elide the label to the region's width on screen (labels never run into neighbours)."""
        text = self.spec.label.replace("\n", " ")
        view = self.getViewBox()
        if view is None or view.width() <= 0:
            self.label.setFormat(text if len(text) <= 40 else text[:39] + "…")
            return
        left, right = view.viewRange()[0]
        seconds = self.lines[1].value() - self.lines[0].value()
        pixels = int(seconds / max(1e-9, right - left) * view.width()) - 8
        metrics = QtGui.QFontMetrics(self.label.textItem.font())
        elided = metrics.elidedText(text, QtCore.Qt.TextElideMode.ElideRight, max(0, pixels))
        self.label.setFormat(elided if pixels > metrics.horizontalAdvance("…") else "")


class FrameGridItem(pg.GraphicsObject):
    """Vertical lines on every frame boundary, drawn only when frames are wide enough to see."""

    def __init__(self, fps: Fraction) -> None:
        super().__init__()
        self.fps = fps
        self.setZValue(-20)
        self._pen = pg.mkPen(128, 128, 128, 70, width=0)

    def boundingRect(self) -> QtCore.QRectF:
        view = self.getViewBox()
        if view is None:
            return QtCore.QRectF()
        return view.viewRect()

    def frames_in_view(self) -> range:
        """Frame boundaries drawn now: all visible ones when frames are wide enough, else none."""
        view = self.getViewBox()
        if view is None:
            return range(0)
        left, right = view.viewRange()[0]
        width_px = max(1.0, float(view.width()))
        fps = float(self.fps)
        frames_visible = (right - left) * fps
        if frames_visible <= 0 or width_px / frames_visible < _GRID_MIN_PX_PER_FRAME:
            return range(0)
        return range(max(0, math.floor(left * fps)), math.ceil(right * fps) + 1)

    def paint(self, painter: QtGui.QPainter, *args: object) -> None:
        view = self.getViewBox()
        frames = self.frames_in_view()
        if view is None or not frames:
            return
        rect = view.viewRect()
        painter.setPen(self._pen)
        for frame in frames:
            x = frame / float(self.fps)
            painter.drawLine(QtCore.QPointF(x, rect.top()), QtCore.QPointF(x, rect.bottom()))

    def viewRangeChanged(self) -> None:
        self.prepareGeometryChange()
        self.update()


class TimelineWidget(pg.PlotWidget):
    """Regions, waveforms, playhead and frame grid of the whole programme.

    Signals:
        line_timing_edited(str, int, int): a drag finished: line id, new start and end frame.
        line_clicked(str): a region was clicked.
        playhead_moved(float): the user clicked empty timeline space (seconds).
    """

    line_timing_edited = QtCore.Signal(str, int, int)
    line_clicked = QtCore.Signal(str)
    playhead_moved = QtCore.Signal(float)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent=parent, background=pg.mkColor(32, 34, 38))
        self.fps: Fraction = Fraction(25)
        self.duration_s = 60.0
        self.regions: dict[str, LineRegionItem] = {}
        self.take_curves: dict[str, pg.PlotDataItem] = {}
        self.selected_id: str | None = None
        self.setMinimumHeight(160)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)

        item = self.getPlotItem()
        item.hideAxis("left")
        item.showGrid(x=True, y=False, alpha=0.15)
        item.setLabel("bottom", "time", units="s")
        item.setMenuEnabled(False)
        self.view = item.getViewBox()
        self.view.setMouseEnabled(x=True, y=False)
        self.view.setYRange(0, 3, padding=0.02)
        self.view.setLimits(yMin=-0.05, yMax=3.05, xMin=-1.0, minXRange=0.05)

        self.grid = FrameGridItem(self.fps)
        self.addItem(self.grid, ignoreBounds=True)
        self.original_curve = pg.PlotDataItem(pen=pg.mkPen(120, 170, 230, 200))
        self.addItem(self.original_curve)
        self.playhead = pg.InfiniteLine(
            pos=0.0, angle=90, movable=True, pen=pg.mkPen(255, 80, 80, 230, width=2)
        )
        self.playhead.setZValue(100)
        self.playhead.sigPositionChangeFinished.connect(
            lambda line: self.playhead_moved.emit(float(line.value()))
        )
        self.addItem(self.playhead, ignoreBounds=True)
        for y, name in ((2.92, "original"), (1.92, "lines"), (0.92, "takes")):
            text = pg.TextItem(name, color=(170, 170, 170), anchor=(0, 0))
            text.setPos(0, y)
            text.setZValue(-10)
            self.addItem(text, ignoreBounds=True)
        self.scene().sigMouseClicked.connect(self._on_scene_clicked)
        self.view.sigXRangeChanged.connect(self._refit_labels)
        self.view.sigResized.connect(self._refit_labels)

    def _refit_labels(self, *_args: object) -> None:
        for region in self.regions.values():
            region.fit_label()

    # -- content ------------------------------------------------------------------------------

    def set_fps(self, fps: Fraction) -> None:
        """Use ``fps`` for snapping and for the frame grid."""
        self.fps = Fraction(fps)
        self.grid.fps = self.fps
        self.grid.update()

    def set_duration(self, seconds: float) -> None:
        """Allow scrolling over ``seconds`` of programme and show all of it."""
        self.duration_s = max(1.0, float(seconds))
        self.view.setLimits(xMax=self.duration_s + 1.0)
        self.view.setXRange(0, self.duration_s, padding=0.01)

    def set_regions(self, specs: list[RegionSpec]) -> None:
        """Show exactly these lines (adds, updates and removes regions by id)."""
        wanted = {spec.line_id for spec in specs}
        for line_id in list(self.regions):
            if line_id not in wanted:
                self.removeItem(self.regions.pop(line_id))
                curve = self.take_curves.pop(line_id, None)
                if curve is not None:
                    self.removeItem(curve)
        for spec in specs:
            self.update_region(spec)

    def update_region(self, spec: RegionSpec) -> None:
        """Add or refresh one line's region."""
        region = self.regions.get(spec.line_id)
        selected = spec.line_id == self.selected_id
        if region is None:
            region = LineRegionItem(spec, self.fps)
            region.apply(spec, self.fps, selected=selected)
            region.sigRegionChangeFinished.connect(self._on_region_finished)
            self.regions[spec.line_id] = region
            self.addItem(region)
            region.fit_label()
        else:
            region.apply(spec, self.fps, selected=selected)

    def select(self, line_id: str | None) -> None:
        """Highlight ``line_id`` and scroll it into view."""
        previous, self.selected_id = self.selected_id, line_id
        for rid in {previous, line_id}:
            if rid is not None and rid in self.regions:
                region = self.regions[rid]
                region.apply(region.spec, self.fps, selected=rid == line_id)
        if line_id in self.regions:
            start, end = self.regions[line_id].getRegion()
            left, right = self.view.viewRange()[0]
            if start < left or end > right:
                width = right - left
                self.view.setXRange(start - 0.1 * width, start + 0.9 * width, padding=0)

    def set_original_audio(self, samples: np.ndarray | None, sample_rate: int) -> None:
        """Draw the video's own audio in the top lane (None clears it)."""
        if samples is None or len(samples) == 0:
            self.original_curve.setData([], [])
            return
        x, y = envelope(np.asarray(samples, dtype=np.float32))
        peak = max(1e-6, float(np.max(np.abs(y))))
        self.original_curve.setData(x / sample_rate, 2.5 + 0.48 * y / peak)

    def set_take_audio(
        self, line_id: str, samples: np.ndarray | None, sample_rate: int, start_s: float
    ) -> None:
        """Draw a line's rendered take in the bottom lane from ``start_s`` (None clears it)."""
        curve = self.take_curves.get(line_id)
        if samples is None or len(samples) == 0:
            if curve is not None:
                self.removeItem(curve)
                del self.take_curves[line_id]
            return
        if curve is None:
            curve = pg.PlotDataItem(pen=pg.mkPen(140, 220, 140, 220))
            self.take_curves[line_id] = curve
            self.addItem(curve)
        x, y = envelope(np.asarray(samples, dtype=np.float32), bins=1000)
        # Shown peak-normalised like the original track, so quiet takes are still readable.
        peak = max(0.05, float(np.max(np.abs(y))))
        curve.setData(start_s + x / sample_rate, 0.5 + 0.48 * np.clip(y / peak, -1.0, 1.0))

    def has_take_curve(self, line_id: str) -> bool:
        """Whether a take waveform is shown for ``line_id`` (used by tests and the status bar)."""
        curve = self.take_curves.get(line_id)
        return curve is not None and curve.xData is not None and len(curve.xData) > 0

    def set_playhead(self, seconds: float) -> None:
        """Move the playhead without reporting it back."""
        self.playhead.blockSignals(True)
        try:
            self.playhead.setValue(float(seconds))
        finally:
            self.playhead.blockSignals(False)

    # -- navigation ---------------------------------------------------------------------------

    def zoom(self, factor: float) -> None:
        """Zoom the time axis around the playhead (factor < 1 zooms in)."""
        left, right = self.view.viewRange()[0]
        centre = float(self.playhead.value())
        if not left <= centre <= right:
            centre = (left + right) / 2
        self.view.setXRange(
            centre - (centre - left) * factor, centre + (right - centre) * factor, padding=0
        )

    def scroll(self, fraction: float) -> None:
        """Scroll by ``fraction`` of the visible width (negative scrolls left)."""
        left, right = self.view.viewRange()[0]
        shift = (right - left) * fraction
        self.view.setXRange(left + shift, right + shift, padding=0)

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        key = event.key()
        if key in (QtCore.Qt.Key.Key_Plus, QtCore.Qt.Key.Key_Equal):
            self.zoom(0.5)
        elif key == QtCore.Qt.Key.Key_Minus:
            self.zoom(2.0)
        elif key == QtCore.Qt.Key.Key_PageDown:
            self.scroll(0.8)
        elif key == QtCore.Qt.Key.Key_PageUp:
            self.scroll(-0.8)
        else:
            super().keyPressEvent(event)

    # -- edits ---------------------------------------------------------------------------------

    def _on_region_finished(self, region: LineRegionItem) -> None:
        start_s, end_s = region.getRegion()
        start = max(0, round(Fraction(start_s) * self.fps))
        end = max(start + 1, round(Fraction(end_s) * self.fps))
        if (start, end) == (region.spec.start_frame, region.spec.end_frame):
            # Snapping took it back to where it was: show the snapped position again.
            region.apply(region.spec, self.fps, selected=region.line_id == self.selected_id)
            return
        logger.debug("timeline drag of %s -> frames %d..%d", region.line_id, start, end)
        # Put the region back where the model says; the model's change will move it for real
        # (or not, if the command is refused).
        region.apply(region.spec, self.fps, selected=region.line_id == self.selected_id)
        self.line_timing_edited.emit(region.line_id, start, end)

    def _on_scene_clicked(self, event: object) -> None:
        pos = event.scenePos()  # type: ignore[attr-defined]
        if not self.view.sceneBoundingRect().contains(pos):
            return
        x = float(self.view.mapSceneToView(pos).x())
        for line_id, region in self.regions.items():
            start, end = region.getRegion()
            if start <= x <= end:
                self.line_clicked.emit(line_id)
                break
        self.set_playhead(max(0.0, x))
        self.playhead_moved.emit(max(0.0, x))
