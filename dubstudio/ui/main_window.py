"""The DubStudio main window: video, subtitle table, timeline, inspector, emotion and voice panels.

Data flow (one truth per datum): the `Project` owns every line. Views show it through adapters
(`LineTableModel`, the timeline's `RegionSpec`s, the inspector's `show_line`) refreshed from the
project's change events. Every edit a view reports becomes a core command pushed on the
`UndoStack`. Rendering runs on the `EngineThread`; results come back as queued signals and are
applied (or dropped as stale) by the `RenderService` in this thread.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from dubstudio.core.errors import DubStudioError
from dubstudio.core.forecast import forecast_fit
from dubstudio.core.model import (
    EmotionSpec,
    FitMode,
    Line,
    LineChanged,
    LinesInserted,
    LinesRemoved,
    Project,
    ProjectChanged,
    ProjectEvent,
    ReferenceClip,
    VoiceProfile,
    VoiceProfilesChanged,
    new_id,
)
from dubstudio.ui import editing
from dubstudio.ui.emotion_panel import EmotionPanel
from dubstudio.ui.inspector import LineInspector
from dubstudio.ui.latency import LatencyProbe
from dubstudio.ui.models import LineTableModel
from dubstudio.ui.playback import AudioOutput
from dubstudio.ui.timeline import RegionSpec, TimelineWidget
from dubstudio.ui.undo import UndoStack
from dubstudio.ui.video import AudioTrackDecoder, VideoPanel
from dubstudio.ui.voice_panel import VoicePanel, clip_audio
from dubstudio.ui.worker import EngineThread, TaskJob

logger = logging.getLogger(__name__)

#: Seconds of pre-roll for "play line with pre-roll" and seconds played around the playhead.
PRE_ROLL_S = 1.0
MIX_WINDOW_S = 6.0
#: Settings key of the per-character emotion presets stored in the project.
PRESETS_KEY = "emotion_presets"


def line_forecast(project: Project, line: Line) -> tuple[str, str]:
    """Fit status of a line as ``(status, explanation)``.

    Before rendering it is the forecast from the text, the budget and the voice's language and
    speaking rate. Once a current take exists in natural-length mode, the take's measured length
    replaces the guess (exact modes fill the slot by construction, so their forecast stays: it
    tells how natural the pace is).
    """
    budget = project.line_budget(line)
    take = line.active_take
    if (
        take is not None
        and take.line_revision == line.revision
        and take.text == line.speech_text
        and line.fit_mode is FitMode.NATURAL
        and budget.slot_samples > 0
    ):
        used = take.n_samples * project.sample_rate / max(1, take.sample_rate)
        load = used / budget.slot_samples
        status = "fits" if load <= 0.9 else "tight" if load <= 1.0 else "impossible"
        seconds = take.n_samples / max(1, take.sample_rate)
        slot = budget.slot_samples / project.sample_rate
        return status, f"measured from the rendered take: {seconds:.2f} s of a {slot:.2f} s slot."
    seconds = budget.speech_samples / project.sample_rate
    language, rate = "en", None
    voice_id = project.effective_voice_id(line)
    if voice_id is not None:
        try:
            voice = project.voice(voice_id)
            language, rate = voice.language, voice.speaking_rate
        except DubStudioError:
            pass
    result = forecast_fit(line.speech_text, seconds, line.fit_mode, language=language, rate=rate)
    detail = result.message + (f" {result.warning}" if result.warning else "")
    return str(result.status.value), detail


class EngineSetup:
    """Which model the editor renders with, loaded lazily in the worker thread.

    Args:
        bundle: Bundle name or directory (``"default"``: the bundled default model).
        device: Device preference for `select_device` (None: best available).
    """

    def __init__(self, bundle: str | Path = "default", device: str | None = None) -> None:
        self.bundle = bundle
        self.device = device
        self._identity: str | None = None
        #: The bundle's name once known; why it cannot be used, if so.
        self.name = str(bundle)
        self.problem = ""

    def identity(self) -> str:
        """Content hash of the bundle (cheap: reads its manifest; no weights are loaded)."""
        if self._identity is None:
            from dubstudio.engine.bundles import load_bundle

            try:
                bundle = load_bundle(self.bundle)
                self._identity, self.name = bundle.identity, bundle.name
            except DubStudioError as exc:
                logger.warning("model not available: %s", exc)
                self._identity, self.problem = "unavailable", str(exc)
        return self._identity

    def factory(self) -> Callable[[], Any]:
        """A function that builds the Synthesizer (call it in the worker thread)."""
        bundle, device = self.bundle, self.device

        def build() -> Any:
            from dubstudio.engine.pipeline import Synthesizer

            return Synthesizer.from_bundle(bundle, device=device)

        return build


class MainWindow(QtWidgets.QMainWindow):
    """The editor window.

    Args:
        project: Project to open (None: an empty project).
        engine: Model to render with.
        audio_output: Playback device boundary (tests pass one with a fake backend).
        settings: Where recent files and window state are kept.
        cache_root: Render cache folder (None: beside the project file, else the user cache).
        render_options: `RequestOptions` for the render service (e.g. fewer diffusion steps).
    """

    def __init__(
        self,
        project: Project | None = None,
        *,
        engine: EngineSetup | None = None,
        audio_output: AudioOutput | None = None,
        settings: QtCore.QSettings | None = None,
        cache_root: Path | None = None,
        render_options: Any = None,
        render_on_open: bool = False,
    ) -> None:
        super().__init__()
        self.render_options = render_options
        #: Queue every line without a current take as soon as a project is shown, so the
        #: background renderer starts on what is near the playhead (the editor turns it on;
        #: tests leave it off to decide themselves when rendering starts).
        self.render_on_open = render_on_open
        self.setWindowTitle("DubStudio")
        self.resize(1500, 920)
        self.engine_setup = engine or EngineSetup()
        self.audio = audio_output or AudioOutput()
        self.settings = settings or QtCore.QSettings("DubStudio", "DubStudio")
        self._cache_root = cache_root
        self.project: Project = Project()
        self.service: Any = None
        self.table_model: LineTableModel | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.current_line_id: str | None = None
        self.playhead_s = 0.0
        self.stale_dropped = 0
        self.last_error_details = ""
        self.original_audio: tuple[np.ndarray, int] | None = None
        self.undo_stack = UndoStack(self)
        self.undo_stack.cleanChanged.connect(self._on_clean_changed)
        self.latency = LatencyProbe(10, self)
        self._running_job: Any = None

        self.engine = EngineThread(self.engine_setup.factory(), self)
        worker = self.engine.worker
        queued = QtCore.Qt.ConnectionType.QueuedConnection
        worker.model_loading.connect(self._on_model_loading, queued)
        worker.model_loaded.connect(self._on_model_loaded, queued)
        worker.model_failed.connect(self._on_model_failed, queued)
        worker.job_event.connect(self._on_job_event, queued)
        worker.job_progress.connect(self._on_job_progress, queued)
        worker.outcome_ready.connect(self._on_outcome, queued)
        worker.task_finished.connect(self._on_task_finished, queued)
        worker.idle.connect(self._on_engine_idle, queued)

        self._build_widgets()
        self._build_actions()
        self._build_status_bar()
        self.audio_decoder = AudioTrackDecoder(self)
        self.audio_decoder.decoded.connect(self._on_original_audio)
        self.audio_decoder.failed.connect(lambda msg: logger.info("no original audio: %s", msg))
        self.set_project(project if project is not None else Project())

    # ------------------------------------------------------------------------------- layout

    def _build_widgets(self) -> None:
        self.video = VideoPanel()
        self.video.position_changed.connect(self._on_video_position)
        self.video.duration_known.connect(self._on_video_duration)

        self.table = QtWidgets.QTableView()
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(
            QtWidgets.QAbstractItemView.EditTrigger.DoubleClicked
            | QtWidgets.QAbstractItemView.EditTrigger.EditKeyPressed
        )

        self.timeline = TimelineWidget()
        self.timeline.line_timing_edited.connect(self.retime_line)
        self.timeline.line_clicked.connect(self.select_line)
        self.timeline.playhead_moved.connect(self.set_playhead)

        top = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        top.addWidget(self.video)
        top.addWidget(self.table)
        top.setStretchFactor(0, 2)
        top.setStretchFactor(1, 3)
        top.setSizes([430, 870])
        main = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        main.addWidget(top)
        main.addWidget(self.timeline)
        main.setStretchFactor(0, 3)
        main.setStretchFactor(1, 2)
        main.setSizes([520, 300])
        self.setCentralWidget(main)

        self.inspector = LineInspector(line_forecast)
        self.inspector.line_edited.connect(self.edit_line)
        self.inspector.render_requested.connect(lambda lid: self.render_lines([lid]))
        self.inspector.play_take_requested.connect(self.play_take)
        self.inspector.take_activated.connect(self.activate_take)

        self.emotion_panel = EmotionPanel()
        self.emotion_panel.emotion_edited.connect(self._on_emotion_edited)
        self.emotion_panel.description_analysis_requested.connect(self.analyse_description)
        self.emotion_panel.preset_saved.connect(self.save_preset)
        self.emotion_panel.preset_applied.connect(self.apply_preset)

        self.voice_panel = VoicePanel()
        self.voice_panel.import_requested.connect(self.import_voice)
        self.voice_panel.voice_edited.connect(self.edit_voice)
        self.voice_panel.voice_removed.connect(self.remove_voice)
        self.voice_panel.character_voice_assigned.connect(self.assign_character_voice)
        self.voice_panel.audition_requested.connect(self.audition_voice)
        self.voice_panel.analyse_requested.connect(self.analyse_voice)

        inspector_dock = QtWidgets.QDockWidget("Line", self)
        inspector_dock.setObjectName("line-dock")
        inspector_dock.setWidget(self.inspector)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, inspector_dock)
        tabs = QtWidgets.QTabWidget()
        emotion_scroll = QtWidgets.QScrollArea()
        emotion_scroll.setWidgetResizable(True)
        emotion_scroll.setWidget(self.emotion_panel)
        tabs.addTab(emotion_scroll, "Emotion")
        tabs.addTab(self.voice_panel, "Voices")
        self.side_tabs = tabs
        side_dock = QtWidgets.QDockWidget("Emotion and voices", self)
        side_dock.setObjectName("side-dock")
        side_dock.setWidget(tabs)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, side_dock)
        self.resizeDocks([inspector_dock], [430], QtCore.Qt.Orientation.Horizontal)

    def _action(
        self,
        menu: QtWidgets.QMenu,
        text: str,
        slot: Callable[[], Any],
        shortcut: str | QtGui.QKeySequence | QtGui.QKeySequence.StandardKey | None = None,
        tip: str = "",
    ) -> QtGui.QAction:
        action = QtGui.QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QtGui.QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        self.addAction(action)  # shortcuts work while the menu bar is hidden too
        return action

    def _build_actions(self) -> None:
        bar = self.menuBar()
        keys = QtGui.QKeySequence.StandardKey
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&New from video and subtitles…", self.new_project_dialog, keys.New)
        self._action(file_menu, "&Open…", self.open_dialog, keys.Open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._action(file_menu, "Import &subtitles…", self.import_subtitles_dialog, "Ctrl+Shift+I")
        file_menu.addSeparator()
        self._action(file_menu, "&Save", self.save, keys.Save)
        self._action(file_menu, "Save &as…", self.save_as_dialog, "Ctrl+Shift+S")
        self._action(file_menu, "&Export…", self.export_dialog, "Ctrl+E")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, keys.Quit)

        edit_menu = bar.addMenu("&Edit")
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(keys.Undo)
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QtGui.QKeySequence("Ctrl+Shift+Z"), QtGui.QKeySequence("Ctrl+Y")])
        edit_menu.addAction(undo)
        edit_menu.addAction(redo)
        self.undo_action, self.redo_action = undo, redo
        edit_menu.addSeparator()
        self._action(edit_menu, "&Insert line after", self.insert_line, "Ctrl+Return")
        self._action(edit_menu, "&Delete lines", self.delete_selected, "Ctrl+Delete")
        self._action(edit_menu, "S&plit line at playhead", self.split_line, "Ctrl+K")
        self._action(edit_menu, "&Merge with next line", self.merge_with_next, "Ctrl+J")

        line_menu = bar.addMenu("&Line")
        self._action(line_menu, "&Next line", lambda: self.step_line(1), "Ctrl+Down")
        self._action(line_menu, "&Previous line", lambda: self.step_line(-1), "Ctrl+Up")
        self._action(line_menu, "&Play line", self.play_current_line, "P")
        self._action(line_menu, "Play line with pre-&roll", self.play_around_line, "Shift+P")
        self._action(line_menu, "Play mix at play&head", self.play_mix_at_playhead, "Ctrl+P")
        self._action(line_menu, "Play/pause &video", self.video.toggle, "Space")
        self._action(line_menu, "Stop playback", self.stop_playback, "Escape")
        line_menu.addSeparator()
        self._action(line_menu, "Use and play take &A", lambda: self.play_take_letter(0), "A")
        self._action(line_menu, "Use and play take &B", lambda: self.play_take_letter(1), "B")
        for n in range(9):
            self._action(
                line_menu, f"Apply emotion preset {n + 1}",
                lambda n=n: self.apply_preset(n), str(n + 1),
            )  # fmt: skip

        render_menu = bar.addMenu("&Render")
        self._action(render_menu, "Render &line", self.render_current, "Ctrl+R")
        self._action(render_menu, "Render &new take", self.render_new_take, "Ctrl+Shift+R")
        self._action(render_menu, "Render &selection", self.render_selection, "Ctrl+Alt+R")
        self._action(render_menu, "Render &all", self.render_all, "Ctrl+Shift+A")
        self._action(render_menu, "&Stop", self.stop_rendering, "Ctrl+.")
        render_menu.addSeparator()
        self._action(render_menu, "Show last &error…", self.show_error_details)

        view_menu = bar.addMenu("&View")
        self._action(view_menu, "Zoom &in", lambda: self.timeline.zoom(0.5), "Ctrl+=")
        self._action(view_menu, "Zoom &out", lambda: self.timeline.zoom(2.0), "Ctrl+-")

        toolbar = self.addToolBar("Render")
        toolbar.setObjectName("render-toolbar")
        for text, slot, tip in (
            ("Render line", self.render_current, "Render the current line (Ctrl+R)"),
            ("Render selection", self.render_selection, "Render the selected lines"),
            ("Render all", self.render_all, "Render every line that is not up to date"),
            ("Stop", self.stop_rendering, "Stop rendering"),
            ("Play line", self.play_current_line, "Play the line's take (P)"),
            ("Export…", self.export_dialog, "Export mix, stems, clips, subtitles"),
        ):
            action = toolbar.addAction(text)
            action.setToolTip(tip)
            action.triggered.connect(lambda _c=False, s=slot: s())
        self._refresh_recent_menu()

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setFormat("idle")
        self.progress_bar.setTextVisible(True)
        self.engine_label = QtWidgets.QLabel("engine: not loaded")
        self.error_button = QtWidgets.QToolButton()
        self.error_button.setText("⚠ details")
        self.error_button.setVisible(False)
        self.error_button.clicked.connect(self.show_error_details)
        status.addPermanentWidget(self.error_button)
        status.addPermanentWidget(self.progress_bar)
        status.addPermanentWidget(self.engine_label)

    # ------------------------------------------------------------------------------- project

    def set_project(self, project: Project) -> None:
        """Show ``project`` (replaces the current one; the undo history starts afresh)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.table_model is not None:
            self.table_model.detach()
        if self.service is not None:
            self.engine.worker.set_service(None)
            self.service.close()
        self.undo_stack.clear()
        self.project = project
        #: `Project.change_count` when last saved or autosaved (takes change it too).
        self.saved_change_count = project.change_count
        self._unsubscribe = project.subscribe(self._on_project_event)
        self.table_model = LineTableModel(project, line_forecast, self.edit_line, self)
        self.table.setModel(self.table_model)
        self.table_model.edit_refused.connect(lambda msg: self.statusBar().showMessage(msg, 8000))
        self.table.selectionModel().currentRowChanged.connect(self._on_table_row)
        header = self.table.horizontalHeader()
        for col, width in (
            (0, 28),
            (1, 84),
            (2, 84),
            (3, 92),
            (4, 66),
            (5, 112),
            (6, 72),
            (7, 70),
            (8, 80),
        ):
            header.resizeSection(col, width)
        self.service = self._make_service(project)
        if self.engine.worker.synthesizer is None:
            self.engine_label.setText(
                f"engine: {self.engine_setup.name} (loads on first render)"
                if not self.engine_setup.problem
                else "engine: no model installed"
            )
            self.engine_label.setToolTip(self.engine_setup.problem)
        self.engine.worker.set_service(self.service)
        self.timeline.set_fps(project.fps)
        self.inspector.set_project(project)
        self.voice_panel.set_project(project)
        self._refresh_reference_choices()
        self._refresh_timeline()
        self.original_audio = None
        self.timeline.set_original_audio(None, 1)
        video = project.resolve_path(project.video_path) if project.video_path else None
        self.video.load(video)
        if video is not None and video.is_file():
            self.audio_decoder.start(video)
        duration = max(
            (float(line.slot.end_seconds(project.fps)) for line in project.lines), default=30.0
        )
        self.timeline.set_duration(duration + 1.0)
        for line in project.lines:
            self._show_take(line.id)
        self._refresh_all_render_states()
        self.select_line(project.lines[0].id if project.lines else None)
        self._update_title()
        if self.render_on_open and not self.engine_setup.problem:
            # After the window has painted: planning reads every line's budget and cache state.
            QtCore.QTimer.singleShot(0, self._render_pending_on_open)

    def _render_pending_on_open(self) -> None:
        missing = any(line.active_take is None for line in self.project.lines)
        if self.service is not None and missing:
            self.render_all()

    def _make_service(self, project: Project) -> Any:
        from dubstudio.services.cache import RenderCache, project_cache_dir, user_cache_dir
        from dubstudio.services.render_service import RenderService

        if self._cache_root is not None:
            root = self._cache_root
        elif project.path is not None:
            root = project_cache_dir(project.path)
        else:
            root = user_cache_dir()
        self.cache = RenderCache(root)
        return RenderService(
            project,
            self.cache,
            model_identity=self.engine_setup.identity(),
            options=self.render_options,
        )

    @QtCore.Slot(bool)
    def _on_clean_changed(self, _clean: bool) -> None:
        self._update_title()

    def _update_title(self) -> None:
        name = self.project.path.name if self.project.path else "untitled"
        self.setWindowTitle(f"{name}{' *' if not self.undo_stack.isClean() else ''} — DubStudio")

    # ------------------------------------------------------------------------------- events

    def _on_project_event(self, event: ProjectEvent) -> None:
        if isinstance(event, LineChanged):
            line_id = event.line_id
            if not self.project.has_line(line_id):
                return
            if {"start_frame", "end_frame", "text", "revision"} & event.fields:
                self._refresh_region(line_id)
            if {"takes", "active_take_id", "start_frame"} & event.fields:
                self._show_take(line_id)
            self._refresh_render_state(line_id)
            if "revision" in event.fields:
                # The render service hears the same event after this view and queues the line;
                # show "queued" once it has.
                QtCore.QTimer.singleShot(0, self, lambda: self._refresh_render_state(line_id))
            if line_id == self.current_line_id:
                self.inspector.show_line(line_id)
                if "emotion" in event.fields:
                    self.emotion_panel.show_emotion(self.project.line(line_id).emotion)
        elif isinstance(event, LinesInserted | LinesRemoved):
            self._refresh_timeline()
            if isinstance(event, LinesRemoved) and self.current_line_id in event.ids:
                lines = self.project.lines
                index = min(event.indices[0], len(lines) - 1) if lines else -1
                self.select_line(lines[index].id if index >= 0 else None)
            self.inspector.refresh_choices()
            self._refresh_all_render_states()
        elif isinstance(event, VoiceProfilesChanged):
            self.voice_panel.refresh()
            self.inspector.refresh_choices()
            self._refresh_reference_choices()
            self._refresh_timeline()
        elif isinstance(event, ProjectChanged):
            if "characters" in event.fields:
                self.inspector.refresh_choices()
                self.voice_panel.refresh()
            if "fps" in event.fields:
                self.timeline.set_fps(self.project.fps)
                self._refresh_timeline()
        self._update_title()

    def _region_spec(self, line: Line) -> RegionSpec:
        assert self.table_model is not None
        return RegionSpec(
            line.id, line.start_frame, line.end_frame, line.speech_text or line.text,
            self.table_model.forecast_of(line),
        )  # fmt: skip

    def _refresh_region(self, line_id: str) -> None:
        self.timeline.update_region(self._region_spec(self.project.line(line_id)))

    def _refresh_timeline(self) -> None:
        self.timeline.set_regions([self._region_spec(line) for line in self.project.lines])

    def _refresh_reference_choices(self) -> None:
        paths = [clip.path for voice in self.project.voices for clip in voice.clips]
        self.emotion_panel.set_reference_choices(paths)

    def _on_table_row(self, current: QtCore.QModelIndex, _previous: QtCore.QModelIndex) -> None:
        if current.isValid() and self.table_model is not None:
            line = self.table_model.line_at(current.row())
            if line.id != self.current_line_id:
                self.select_line(line.id)
                # Picking a line in the table cues the picture to it (as subtitle editors do).
                self.set_playhead(float(line.slot.start_seconds(self.project.fps)))

    def select_line(self, line_id: str | None) -> None:
        """Make ``line_id`` the current line in every view."""
        self.current_line_id = line_id
        self.timeline.select(line_id)
        self.inspector.show_line(line_id)
        if line_id is None or self.table_model is None:
            return
        row = self.table_model.row_of(line_id)
        if row >= 0 and self.table.currentIndex().row() != row:
            self.table.selectRow(row)
        line = self.project.line(line_id)
        self.emotion_panel.show_emotion(line.emotion)
        self.emotion_panel.set_presets([p["name"] for p in self._presets(line.character)])

    def selected_line_ids(self) -> list[str]:
        """Lines selected in the table (the current line when none is)."""
        if self.table_model is None:
            return []
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        ids = [self.table_model.line_at(row).id for row in rows if row < len(self.project)]
        if not ids and self.current_line_id:
            ids = [self.current_line_id]
        return ids

    def step_line(self, delta: int) -> None:
        """Select the next (``delta=1``) or previous (``-1``) line and seek to it."""
        lines = self.project.lines
        if not lines:
            return
        index = self.project.index_of(self.current_line_id) if self.current_line_id else -1
        index = max(0, min(len(lines) - 1, index + delta))
        self.select_line(lines[index].id)
        self.set_playhead(float(lines[index].slot.start_seconds(self.project.fps)))

    # ------------------------------------------------------------------------------- playhead

    def set_playhead(self, seconds: float) -> None:
        """Move the playhead (timeline, video and render priority)."""
        self.playhead_s = max(0.0, float(seconds))
        self.timeline.set_playhead(self.playhead_s)
        self.video.seek(self.playhead_s)
        self._update_focus()

    def _on_video_position(self, seconds: float) -> None:
        self.playhead_s = seconds
        self.timeline.set_playhead(seconds)

    def _on_video_duration(self, seconds: float) -> None:
        end = max(
            (float(line.slot.end_seconds(self.project.fps)) for line in self.project.lines),
            default=0.0,
        )
        self.timeline.set_duration(max(seconds, end))

    def _on_original_audio(self, samples: np.ndarray, rate: int) -> None:
        self.original_audio = (samples, rate)
        self.timeline.set_original_audio(samples, rate)

    def _update_focus(self) -> None:
        if self.service is not None:
            left, right = self.timeline.view.viewRange()[0]
            self.service.set_focus(self.playhead_s, (float(left), float(right)))

    # ------------------------------------------------------------------------------- editing

    def push(self, command: Any) -> bool:
        """Run a core command through the undo stack; a refused edit shows why.

        Args:
            command: The command, or a function that builds it (commands validate when built,
                so a refusal may come from either step).
        """
        try:
            if callable(command) and not hasattr(command, "do"):
                command = command()
            self.undo_stack.push_command(command)
        except DubStudioError as exc:
            self.statusBar().showMessage(str(exc), 8000)
            return False
        return True

    def edit_line(self, line_id: str, changes: dict[str, Any]) -> bool:
        """Change attributes of a line (undoable)."""
        if not changes:
            return False
        return self.push(lambda: editing.update_line(self.project, line_id, changes))

    def retime_line(self, line_id: str, start_frame: int, end_frame: int) -> bool:
        """Move or trim a line (from a timeline drag; undoable)."""
        return self.push(lambda: editing.retime_line(self.project, line_id, start_frame, end_frame))

    def _on_emotion_edited(self, spec: EmotionSpec) -> None:
        if self.current_line_id is not None:
            self.edit_line(self.current_line_id, {"emotion": spec})

    def insert_line(self) -> None:
        """Insert an empty line after the current one (in the gap, or 2 s at the end)."""
        fps = self.project.fps
        index = self.project.index_of(self.current_line_id) + 1 if self.current_line_id else 0
        lines = self.project.lines
        start = lines[index - 1].end_frame if index > 0 else 0
        end = lines[index].start_frame if index < len(lines) else start + round(2 * fps)
        if end <= start:
            end = start + round(fps)
        line = Line(text="New line", start_frame=start, end_frame=end)
        if index > 0:
            line.character = lines[index - 1].character
        if self.push(lambda: editing.insert_line(self.project, index, line)):
            self.select_line(line.id)

    def delete_selected(self) -> None:
        """Delete the selected lines (undoable)."""
        ids = self.selected_line_ids()
        if ids:
            self.push(lambda: editing.remove_lines(self.project, ids))

    def split_line(self) -> None:
        """Split the current line at the playhead (or in the middle)."""
        if self.current_line_id is None:
            return
        line = self.project.line(self.current_line_id)
        frame = round(self.playhead_s * float(self.project.fps))
        if not line.start_frame < frame < line.end_frame:
            frame = (line.start_frame + line.end_frame) // 2
        self.push(lambda: editing.split_line(self.project, line.id, frame))

    def merge_with_next(self) -> None:
        """Merge the current line with the one after it."""
        if self.current_line_id is None:
            return
        index = self.project.index_of(self.current_line_id)
        if index + 1 < len(self.project):
            first, second = self.current_line_id, self.project.lines[index + 1].id
            self.push(lambda: editing.merge_lines(self.project, first, second))

    # -- voices

    def import_voice(self, path: str) -> None:
        """Make a voice profile from an audio file (undoable) and analyse it."""
        source = Path(path)
        stored = str(source)
        if self.project.base_dir is not None:
            try:
                stored = str(source.resolve().relative_to(self.project.base_dir.resolve()))
            except ValueError:
                stored = str(source.resolve())
        voice = VoiceProfile(id=new_id(), name=source.stem, clips=(ReferenceClip(stored),))
        if self.push(lambda: editing.set_voice(self.project, voice)):
            self.analyse_voice(voice.id)
            self.prepare_voice(voice.id)

    def edit_voice(self, voice: VoiceProfile) -> None:
        """Replace a voice profile (rename, trim; undoable); a new trim is prepared again."""
        before = self.project.voice(voice.id).clips if self.project.has_voice(voice.id) else ()
        if self.push(lambda: editing.set_voice(self.project, voice)) and voice.clips != before:
            self.prepare_voice(voice.id)

    def prepare_voice(self, voice_id: str) -> None:
        """Have the engine compute a voice's conditioning, and for models that fit a style per
        voice its fitted style (tens of seconds on a CPU, then kept on disk), in the background,
        so the first line rendered with the voice does not wait for it."""
        voice = self.project.voice(voice_id)
        if not voice.clips or self.engine_setup.problem:
            return
        clip = voice.clips[0]
        path = self.project.resolve_path(clip.path)
        worker = self.engine.worker

        def run(synth: Any) -> Any:
            from dubstudio.services.requests import VoiceRefCache

            prepare = getattr(synth, "prepare_voice", None)
            started = time.perf_counter()
            if prepare is not None:
                # The reference exactly as the render queue builds it (same key in the engine).
                ref = VoiceRefCache().get(path, clip.trim_start_s, clip.trim_end_s)
                prepare(ref, should_stop=worker.should_stop)
            return voice.name, time.perf_counter() - started

        self.statusBar().showMessage(f"Preparing voice '{voice.name}' for rendering…", 4000)
        worker.add_task(TaskJob("prepare_voice", run))

    def remove_voice(self, voice_id: str) -> None:
        """Remove a voice profile (undoable)."""
        self.push(lambda: editing.remove_voice(self.project, voice_id))

    def assign_character_voice(self, character: str, voice_id: str | None) -> None:
        """Give a character its voice (undoable)."""
        self.push(lambda: editing.set_character_voice(self.project, character, voice_id))

    def analyse_voice(self, voice_id: str) -> None:
        """Analyse a profile's reference clip in the worker thread."""
        voice = self.project.voice(voice_id)
        if not voice.clips:
            return
        path = self.project.resolve_path(voice.clips[0].path)

        def run(_synth: Any) -> Any:
            from dubstudio.engine.analysis import analyse_voice

            return voice_id, analyse_voice(path)

        self.engine.worker.add_task(TaskJob("analyse_voice", run, needs_model=False))

    def analyse_description(self, text: str) -> None:
        """Ask the engine for the eight emotion values of a description."""

        def run(synth: Any) -> Any:
            method = getattr(synth, "text_to_emotion", None) or getattr(
                getattr(synth, "components", None), "text_to_emotion", None
            )
            if method is None:
                raise DubStudioError(
                    "This model cannot read emotion descriptions; use the sliders or an "
                    "emotion clip instead."
                )
            return tuple(float(v) for v in method(text))

        self.engine.worker.add_task(TaskJob("text_to_emotion", run))

    def _on_task_finished(self, name: str, payload: Any) -> None:
        if name == "prepare_voice":
            # Ahead-of-time work: a failure shows again, with its line, when the voice renders.
            if isinstance(payload, Exception):
                self.statusBar().showMessage(f"Voice not prepared: {payload}", 8000)
            else:
                self.statusBar().showMessage(
                    f"Voice '{payload[0]}' ready for rendering ({payload[1]:.1f} s).", 5000
                )
            return
        if isinstance(payload, Exception):
            self._show_error(f"{name}: {payload}", repr(payload))
            return
        if name == "analyse_voice":
            voice_id, analysis = payload
            text = (
                f"{analysis.duration_s:.1f} s ({analysis.speech_s:.1f} s speech), "
                f"loudness {analysis.loudness_dbfs:.1f} dBFS, peak {analysis.peak_dbfs:.1f} dBFS, "
                f"SNR {analysis.snr_db:.0f} dB, {analysis.syllables_per_second:.1f} syllables/s"
            )
            if analysis.warnings:
                text += "\n⚠ " + "\n⚠ ".join(analysis.warnings)
            self.voice_panel.show_analysis(voice_id, text)
            if self.project.has_voice(voice_id):
                voice = self.project.voice(voice_id)
                rate = round(float(analysis.syllables_per_second), 2)
                if rate > 0 and voice.speaking_rate != rate:
                    # Measured, not typed: not an undo step of its own.
                    self.project.set_voice(dataclasses.replace(voice, speaking_rate=rate))
        elif name == "text_to_emotion":
            self.emotion_panel.show_description_result(payload)

    # -- presets

    def _presets(self, character: str) -> list[dict[str, Any]]:
        presets = self.project.settings.get(PRESETS_KEY, {})
        return list(presets.get(character or "", [])) if isinstance(presets, dict) else []

    def save_preset(self, name: str) -> None:
        """Store the current line's emotion as a preset of its character."""
        if self.current_line_id is None:
            return
        line = self.project.line(self.current_line_id)
        spec = line.emotion
        entry = {
            "name": name, "mode": spec.mode.value, "vector": list(spec.vector),
            "alpha": spec.alpha, "reference_path": spec.reference_path,
            "description": spec.description,
        }  # fmt: skip
        presets = dict(self.project.settings.get(PRESETS_KEY, {}))
        presets[line.character] = [*self._presets(line.character), entry]
        self.project.set_setting(PRESETS_KEY, presets)
        self.emotion_panel.set_presets([p["name"] for p in self._presets(line.character)])
        self.statusBar().showMessage(
            f"Preset '{name}' saved for {line.character or 'lines without a character'} "
            f"(key {len(presets[line.character])}).", 5000,
        )  # fmt: skip

    def apply_preset(self, index: int) -> None:
        """Apply the current character's preset ``index`` (0-based) to the selected lines."""
        if self.current_line_id is None:
            return
        line = self.project.line(self.current_line_id)
        presets = self._presets(line.character)
        if not 0 <= index < len(presets):
            self.statusBar().showMessage(f"No emotion preset {index + 1} for this character.", 4000)
            return
        p = presets[index]
        spec = EmotionSpec(
            mode=p["mode"], vector=tuple(p["vector"]), alpha=p["alpha"],
            reference_path=p.get("reference_path"), description=p.get("description", ""),
        )  # fmt: skip
        for line_id in self.selected_line_ids():
            self.edit_line(line_id, {"emotion": spec})

    # ------------------------------------------------------------------------------- rendering

    def render_lines(self, line_ids: list[str], *, new_take: bool = False) -> int:
        """Render these lines before anything else."""
        if self.service is None or not line_ids:
            return 0
        queued = int(self.service.request(line_ids, new_take=new_take))
        self._after_queue_change(line_ids)
        return queued

    def render_current(self) -> None:
        """Render the current line (Ctrl+R)."""
        if self.current_line_id:
            self.render_lines([self.current_line_id])

    def render_new_take(self) -> None:
        """Render another take of the current line with a new seed."""
        if self.current_line_id:
            self.render_lines([self.current_line_id], new_take=True)

    def render_selection(self) -> None:
        """Render the selected lines."""
        self.render_lines(self.selected_line_ids())

    def render_all(self) -> None:
        """Render every line whose take is missing or out of date."""
        if self.service is None:
            return
        self.service.reset_progress()
        self._update_focus()
        queued = self.service.plan()
        self.statusBar().showMessage(f"{queued} line(s) queued for rendering.", 4000)
        self._after_queue_change([line.id for line in self.project.lines])

    def stop_rendering(self) -> None:
        """Stop the running render and empty the queue."""
        if self.service is not None:
            self.engine.stop_all(self.service)
        self._refresh_all_render_states()
        self.statusBar().showMessage("Rendering stopped.", 4000)

    def _after_queue_change(self, line_ids: list[str]) -> None:
        for line_id in line_ids:
            self._refresh_render_state(line_id)
        for line_id, message in list(self.service.problems.items()):
            if line_id in line_ids:
                self.statusBar().showMessage(message, 8000)
        if len(self.service):
            self.latency.start()
            self.progress_bar.setFormat("queued %p%")

    def _refresh_all_render_states(self) -> None:
        pending = self._pending_ids()
        for line in self.project.lines:
            self._refresh_render_state(line.id, pending)

    def _pending_ids(self) -> set[str]:
        return (
            {job.line_id for job in self.service.pending()} if self.service is not None else set()
        )

    def _refresh_render_state(self, line_id: str, pending_ids: set[str] | None = None) -> None:
        if self.table_model is None or not self.project.has_line(line_id):
            return
        line = self.project.line(line_id)
        pending = line_id in (self._pending_ids() if pending_ids is None else pending_ids)
        running = self._running_job is not None and self._running_job.line_id == line_id
        if running:
            state = "rendering"
        elif pending:
            state = "queued"
        elif self.service is not None and line_id in self.service.problems:
            state = "error"
        elif line.active_take is not None and line.active_take.line_revision == line.revision:
            state = "done"
        elif line.takes:
            state = "stale"
        else:
            state = "none"
        self.table_model.set_render_state(line_id, state)

    def _on_model_loading(self) -> None:
        self.engine_label.setText("engine: loading model…")

    def _on_model_loaded(self, text: str) -> None:
        self.engine_label.setText(f"engine: {text}")

    def _on_model_failed(self, message: str, details: str) -> None:
        self.engine_label.setText("engine: failed to load")
        self._show_error(f"The model could not be loaded: {message}", details)

    def _on_job_event(self, event: str, job: Any) -> None:
        if job is None:
            return
        if event == "started":
            self._running_job = job
            self.latency.start()
            self.progress_bar.setFormat("rendering %p%")
        elif self._running_job is not None and self._running_job.line_id == job.line_id:
            self._running_job = None
        if event == "failed" and self.service is not None:
            message = self.service.problems.get(job.line_id, "render failed")
            self._show_error(f"Line {self._line_number(job.line_id)}: {message}", message)
        self._refresh_render_state(job.line_id)

    def _on_job_progress(self, job: Any, fraction: float, stage: str) -> None:
        self.progress_bar.setValue(round(1000 * fraction))
        progress = self.service.progress if self.service is not None else None
        lines = (
            f"line {min(progress.lines_done + 1, progress.lines_total)}/{progress.lines_total} · "
            if progress is not None and progress.lines_total > 1
            else ""
        )
        self.progress_bar.setFormat(f"{lines}{stage} %p%")

    def _on_outcome(self, outcome: Any) -> None:
        job = outcome.job
        applied = self.service.apply(outcome) if self.service is not None else False
        if (
            outcome.status in ("rendered", "cached")
            and not applied
            and self.project.has_line(job.line_id)
        ):
            self.stale_dropped += 1
            logger.info("dropped a stale take of line %s (revision %d)", job.line_id, job.revision)
        if self._running_job is not None and self._running_job.line_id == job.line_id:
            self._running_job = None
        self._refresh_render_state(job.line_id)

    def _on_engine_idle(self) -> None:
        self._running_job = None
        self.latency.stop()
        self.progress_bar.setValue(1000)
        self.progress_bar.setFormat("idle")
        self.progress_bar.setToolTip(
            f"GUI event-loop lateness during renders: max {self.latency.max_late_ms:.1f} ms, "
            f"p99 {self.latency.percentile(99):.1f} ms over {self.latency.ticks} ticks"
        )
        self._refresh_all_render_states()

    def _line_number(self, line_id: str) -> str:
        return str(self.project.index_of(line_id) + 1) if self.project.has_line(line_id) else "?"

    def _show_error(self, message: str, details: str) -> None:
        self.last_error_details = f"{message}\n\n{details}"
        self.statusBar().showMessage(message, 15000)
        self.error_button.setVisible(True)
        self.error_button.setToolTip(message)

    def show_error_details(self) -> None:
        """Show the last error with its details."""
        box = QtWidgets.QMessageBox(self)
        box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
        box.setWindowTitle("DubStudio — error")
        box.setText(self.last_error_details.split("\n\n", 1)[0] or "No error so far.")
        box.setDetailedText(self.last_error_details)
        box.open()

    # ------------------------------------------------------------------------------- takes

    def take_audio(self, line_id: str, take_id: str | None = None) -> tuple[np.ndarray, int] | None:
        """Samples ``(N,)`` and rate of a line's take (its active one by default)."""
        line = self.project.line(line_id)
        take = (
            line.active_take
            if take_id is None
            else next((t for t in line.takes if t.id == take_id), None)
        )
        if take is None:
            return None
        entry = self.cache.get(take.cache_key)
        if entry is None:
            return None
        return np.asarray(entry.audio(), dtype=np.float32), entry.sample_rate

    def _show_take(self, line_id: str) -> None:
        line = self.project.line(line_id)
        audio = self.take_audio(line_id)
        start = float(line.slot.start_seconds(self.project.fps))
        if audio is None:
            self.timeline.set_take_audio(line_id, None, 1, start)
        else:
            self.timeline.set_take_audio(line_id, audio[0], audio[1], start)

    def activate_take(self, line_id: str, take_id: str) -> None:
        """Make a take the line's active one (undoable)."""
        self.edit_line(line_id, {"active_take_id": take_id})

    def play_take_letter(self, index: int) -> None:
        """A/B: select take ``index`` (0 = A) of the current line and play it."""
        if self.current_line_id is None:
            return
        takes = self.project.line(self.current_line_id).takes
        if index >= len(takes):
            self.statusBar().showMessage(f"This line has no take {chr(65 + index)}.", 4000)
            return
        self.activate_take(self.current_line_id, takes[index].id)
        self.play_take(self.current_line_id, takes[index].id)

    # ------------------------------------------------------------------------------- playback

    def _play(self, audio: np.ndarray, rate: int) -> bool:
        try:
            self.audio.play(audio, rate)
        except DubStudioError as exc:
            self.statusBar().showMessage(str(exc), 10000)
            return False
        return True

    def play_take(self, line_id: str, take_id: str | None = None) -> bool:
        """Play one take of a line (its active take by default)."""
        audio = self.take_audio(line_id, take_id)
        if audio is None:
            self.statusBar().showMessage("This line has no rendered take yet; press Ctrl+R.", 5000)
            return False
        return self._play(*audio)

    def play_current_line(self) -> bool:
        """Play the current line's take."""
        return self.current_line_id is not None and self.play_take(self.current_line_id)

    def play_around_line(self) -> bool:
        """Play the mix from one second before the current line, with the video."""
        if self.current_line_id is None:
            return False
        line = self.project.line(self.current_line_id)
        start = max(0.0, float(line.slot.start_seconds(self.project.fps)) - PRE_ROLL_S)
        end = float(line.slot.end_seconds(self.project.fps)) + 0.5
        return self._play_mix(start, end)

    def play_mix_at_playhead(self) -> bool:
        """Play the dub mix around the playhead, with the video."""
        return self._play_mix(self.playhead_s, self.playhead_s + MIX_WINDOW_S)

    def _play_mix(self, start_s: float, end_s: float) -> bool:
        rate = self.project.sample_rate
        mix = self.mix_range(start_s, end_s)
        if not self._play(mix, rate):
            return False
        self.video.seek(start_s)
        self.video.player.play()
        return True

    def mix_range(self, start_s: float, end_s: float) -> np.ndarray:
        """The dub mix of ``[start_s, end_s)`` at the project rate, float32 ``(N,)``."""
        rate = self.project.sample_rate
        first = round(start_s * rate)
        out = np.zeros(max(0, round(end_s * rate) - first), dtype=np.float32)
        fps = self.project.fps
        for line in self.project.lines_in_range(
            int(start_s * float(fps)), int(end_s * float(fps)) + 1
        ):
            audio = self.take_audio(line.id)
            if audio is None or audio[1] != rate:
                continue
            offset = line.slot.start_sample(fps, rate) - first
            samples = audio[0]
            lo = max(0, -offset)
            hi = min(len(samples), len(out) - offset)
            if hi > lo:
                out[offset + lo : offset + hi] += samples[lo:hi]
        np.clip(out, -1.0, 1.0, out=out)
        return out

    def audition_voice(self, voice_id: str) -> None:
        """Play a profile's trimmed reference clip."""
        try:
            audio, rate = clip_audio(self.project, self.project.voice(voice_id))
        except (DubStudioError, OSError, RuntimeError) as exc:
            self.statusBar().showMessage(f"Cannot play the clip: {exc}", 6000)
            return
        self._play(audio, rate)

    def stop_playback(self) -> None:
        """Stop audio and video."""
        self.audio.stop()
        self.video.player.pause()

    # ------------------------------------------------------------------------------- files

    def new_project_dialog(self) -> None:  # replaced in files.py
        from dubstudio.ui.files import new_project_dialog

        new_project_dialog(self)

    def open_dialog(self) -> None:
        from dubstudio.ui.files import open_dialog

        open_dialog(self)

    def import_subtitles_dialog(self) -> None:
        from dubstudio.ui.files import import_subtitles_dialog

        import_subtitles_dialog(self)

    def save(self) -> bool:
        from dubstudio.ui.files import save

        return save(self)

    def save_as_dialog(self) -> bool:
        from dubstudio.ui.files import save_as_dialog

        return save_as_dialog(self)

    def export_dialog(self) -> None:
        from dubstudio.ui.export_dialog import ExportDialog

        ExportDialog(self).open()

    def _refresh_recent_menu(self) -> None:
        from dubstudio.ui.files import refresh_recent_menu

        refresh_recent_menu(self)

    # ------------------------------------------------------------------------------- closing

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        from dubstudio.ui.files import confirm_discard

        if not confirm_discard(self):
            event.ignore()
            return
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop playback, the video, the engine thread; idempotent."""
        self.latency.stop()
        self.audio.stop()
        self.video.shutdown()
        self.audio_decoder.shutdown()
        if self.service is not None:
            self.engine.worker.set_service(None)
            self.service.close()
        self.engine.shutdown()
        from dubstudio.ui.files import stop_autosave

        stop_autosave(self)
