"""The editor's real widgets, offscreen: table and timeline adapters, drags, undo, emotion edits."""

from __future__ import annotations

from fractions import Fraction

from PySide6 import QtCore, QtWidgets

from dubstudio.core.model import EmotionMode, Project
from dubstudio.ui.files import import_subtitles
from dubstudio.ui.models import LineTableModel

SRT_SLOTS_25FPS = [(25, 88), (100, 155), (170, 245), (260, 310), (325, 413), (430, 500)]


def test_import_subtitles_fills_table_and_timeline(make_window, srt_file):
    window = make_window(Project(fps=25))
    assert window.table_model.rowCount() == 0

    assert import_subtitles(window, srt_file) == 6

    model = window.table_model
    assert model.rowCount() == 6
    assert len(window.timeline.regions) == 6
    for row, line in enumerate(window.project.lines):
        assert (line.start_frame, line.end_frame) == SRT_SLOTS_25FPS[row]
        region = window.timeline.regions[line.id]
        start, end = region.getRegion()
        assert (start, end) == (line.start_frame / 25, line.end_frame / 25)
        assert model.index(row, LineTableModel.COL_TEXT).data() == line.text
        assert model.index(row, LineTableModel.COL_IN).data() == (
            f"00:00:{line.start_frame // 25:02d}:{line.start_frame % 25:02d}"
        )
    assert model.index(0, LineTableModel.COL_CHAR).data() == "Maya"
    assert window.timeline.regions[window.project.lines[0].id].label.format.startswith("Did you")

    window.undo_stack.undo()  # the import is one undo step
    assert model.rowCount() == 0 and not window.timeline.regions


def test_table_adapter_both_ways(make_window, voiced_project):
    window = make_window(voiced_project)
    model = window.table_model
    line = voiced_project.lines[1]

    voiced_project.update_line(line.id, text="Changed in the model.")  # model -> view
    assert model.index(1, LineTableModel.COL_TEXT).data() == "Changed in the model."

    assert model.setData(model.index(1, LineTableModel.COL_OUT), "00:00:03:10")  # view -> model
    assert line.end_frame == 3 * 25 + 10
    assert model.index(1, LineTableModel.COL_DUR).data() == "1.20s (30f)"
    window.undo_stack.undo()
    assert line.end_frame == 80


def _drag(widget: QtWidgets.QWidget, start: QtCore.QPoint, end: QtCore.QPoint, check_mid) -> None:
    """A real left-button drag on a widget's viewport, in small steps."""
    import pyqtgraph as pg
    from PySide6 import QtGui
    from PySide6.QtTest import QTest

    # pyqtgraph drops mouse moves closer than 1/mouseRateLimit s apart; a test sends them at once.
    rate_limit = pg.getConfigOption("mouseRateLimit")
    pg.setConfigOption("mouseRateLimit", -1)
    viewport = widget.viewport()
    QTest.mouseMove(viewport, start)
    QTest.mousePress(
        viewport, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier(0), start
    )
    steps = 8
    for i in range(1, steps + 1):
        pos = QtCore.QPointF(
            start.x() + (end.x() - start.x()) * i / steps,
            start.y() + (end.y() - start.y()) * i / steps,
        )
        event = QtGui.QMouseEvent(
            QtCore.QEvent.Type.MouseMove,
            pos,
            viewport.mapToGlobal(pos),
            QtCore.Qt.MouseButton.NoButton,
            QtCore.Qt.MouseButton.LeftButton,
            QtCore.Qt.KeyboardModifier.NoModifier,
        )
        QtWidgets.QApplication.sendEvent(viewport, event)
    check_mid()
    QTest.mouseRelease(
        viewport, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier(0), end
    )
    pg.setConfigOption("mouseRateLimit", rate_limit)


def test_drag_region_edge_commits_on_release_snapped_and_undoes(make_window, voiced_project, qtbot):
    window = make_window(voiced_project)
    window.show()
    qtbot.waitExposed(window)
    timeline = window.timeline
    timeline.view.setXRange(0, 5, padding=0)
    QtWidgets.QApplication.processEvents()
    line = voiced_project.lines[0]  # frames 25..50 = 1.0..2.0 s
    revision = line.revision

    def to_widget(seconds: float) -> QtCore.QPoint:
        scene = timeline.view.mapViewToScene(QtCore.QPointF(seconds, 1.5))
        return timeline.mapFromScene(scene)

    edits = []
    timeline.line_timing_edited.connect(lambda *args: edits.append(args))

    def nothing_committed_yet() -> None:
        assert (line.start_frame, line.end_frame) == (25, 50)
        assert not edits

    # Drag the right edge from 2.0 s to about 2.31 s: 57.75 frames, snapped to 58.
    _drag(timeline, to_widget(2.0), to_widget(2.31), nothing_committed_yet)

    assert len(edits) == 1
    assert line.start_frame == 25
    assert abs(line.end_frame - 58) <= 1  # one frame of mouse-pixel rounding
    new_end = line.end_frame
    assert timeline.regions[line.id].getRegion() == (1.0, new_end / 25)  # snapped on screen too
    assert line.revision > revision  # a longer slot is a new budget: re-render
    assert window.undo_stack.count() == 1

    window.undo_stack.undo()
    assert (line.start_frame, line.end_frame) == (25, 50)
    assert timeline.regions[line.id].getRegion() == (1.0, 2.0)
    window.undo_stack.redo()
    assert line.end_frame == new_end


def test_drag_whole_region_moves_line(make_window, voiced_project, qtbot):
    window = make_window(voiced_project)
    window.show()
    qtbot.waitExposed(window)
    timeline = window.timeline
    timeline.view.setXRange(0, 5, padding=0)
    QtWidgets.QApplication.processEvents()
    line = voiced_project.lines[0]

    def to_widget(seconds: float) -> QtCore.QPoint:
        return timeline.mapFromScene(timeline.view.mapViewToScene(QtCore.QPointF(seconds, 0.3)))

    _drag(timeline, to_widget(1.5), to_widget(1.9), lambda: None)
    assert line.slot.n_frames == 25  # moved, not trimmed
    assert abs(line.start_frame - 35) <= 1


def test_emotion_slider_bumps_revision_and_queues_render(make_window, voiced_project, qtbot):
    window = make_window(voiced_project)
    line = voiced_project.lines[0]
    window.select_line(line.id)
    panel = window.emotion_panel
    panel.mode_combo.setCurrentIndex(panel.mode_combo.findData(EmotionMode.SLIDERS.value))
    assert line.emotion.mode is EmotionMode.SLIDERS
    revision = line.revision

    with qtbot.waitSignal(
        window.engine.worker.job_event,
        timeout=60000,
        check_params_cb=lambda event, job: (
            event == "started" and job.line_id == line.id and job.revision == line.revision
        ),
    ):
        panel.sliders[1].setValue(70)  # "angry", as a keyboard or wheel change would

    assert line.emotion.vector[1] == 0.7
    assert line.revision > revision
    assert panel.value_labels[1].text() == "0.70"
    assert window.table_model.index(0, LineTableModel.COL_EMO).data() == "angry 0.7"
    window.undo_stack.undo()
    assert line.emotion.vector[1] == 0.0


def test_fit_mode_and_forecast_follow_typing(make_window, voiced_project):
    window = make_window(voiced_project)
    line = voiced_project.lines[1]
    window.select_line(line.id)
    inspector = window.inspector
    assert "25 frames · 1.000 s · 50 tokens" in inspector.budget_label.text()
    inspector.text_edit.setPlainText("Fine.")
    assert inspector.forecast_status in ("fits", "tight", "impossible")
    inspector.text_edit.setPlainText(" ".join(["extraordinarily"] * 12))
    assert inspector.forecast_status == "impossible"
    assert line.text == "It is the wind."  # nothing committed while typing
    inspector.text_edit.committed.emit()
    assert line.text.startswith("extraordinarily")
    assert window.table_model.index(1, LineTableModel.COL_FIT).data() == "impossible"
    assert window.timeline.regions[line.id].spec.forecast == "impossible"


def test_timecode_display_uses_project_rate(make_window, voiced_project):
    voiced_project.set_fps(Fraction(30000, 1001), keep_times=False)
    window = make_window(voiced_project)
    assert window.table_model.index(0, LineTableModel.COL_IN).data() == "00:00:00;25"


def test_zoom_shows_frame_grid_and_keys_navigate(make_window, voiced_project, qtbot):
    window = make_window(voiced_project)
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    timeline = window.timeline
    timeline.view.setXRange(0, 20, padding=0)
    assert not timeline.grid.frames_in_view()  # 500 frames in ~1000 px: no grid
    window.set_playhead(1.5)
    for _ in range(5):
        qtbot.keyClick(timeline, QtCore.Qt.Key.Key_Plus)  # zoom in around the playhead
    left, right = timeline.view.viewRange()[0]
    assert right - left < 1.0 and left <= 1.5 <= right
    frames = timeline.grid.frames_in_view()
    assert frames and frames[0] <= 37 <= frames[-1]  # 1.5 s = frame 37.5 at 25 fps

    window.select_line(voiced_project.lines[0].id)
    action = next(a for a in window.actions() if a.shortcut().toString() == "Ctrl+Down")
    action.trigger()
    assert window.current_line_id == voiced_project.lines[1].id
    assert window.playhead_s == 55 / 25  # seeks to the line's first frame
    assert window.inspector.title.text().startswith("Line 2 of 3")
    assert window.table.currentIndex().row() == 1


def test_split_merge_insert_delete_undo(make_window, voiced_project):
    window = make_window(voiced_project)
    first = voiced_project.lines[0]
    window.select_line(first.id)
    window.set_playhead(1.4)  # frame 35, inside 25..50
    window.split_line()
    assert len(voiced_project) == 4 and first.end_frame == 35
    assert voiced_project.lines[1].start_frame == 35
    assert len(window.timeline.regions) == 4
    window.merge_with_next()
    assert len(voiced_project) == 3 and first.end_frame == 50
    window.insert_line()
    assert len(voiced_project) == 4 and window.table_model.rowCount() == 4
    window.delete_selected()
    assert len(voiced_project) == 3
    for _ in range(4):
        window.undo_stack.undo()
    assert len(voiced_project) == 3 and (first.start_frame, first.end_frame) == (25, 50)
    assert first.text == "Did you hear that?"


def test_refused_edit_is_explained_and_not_recorded(make_window, voiced_project):
    window = make_window(voiced_project)
    line = voiced_project.lines[0]
    voiced_project.update_line(line.id, locked=True)
    assert not window.retime_line(line.id, 25, 60)
    assert (line.start_frame, line.end_frame) == (25, 50)
    assert window.undo_stack.count() == 0
    assert "locked" in window.statusBar().currentMessage()
    region = window.timeline.regions[line.id]
    assert region.getRegion() == (1.0, 2.0)  # the timeline shows the model, not the refused drag
