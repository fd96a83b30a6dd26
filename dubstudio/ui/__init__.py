"""The DubStudio editor (the only package that imports PySide6 and pyqtgraph).

Modules:
    app: QApplication set-up, the demo project, `run` (what ``dubstudio edit`` calls).
    main_window: `MainWindow` wiring every view to the project, the undo stack and the engine.
    models: `LineTableModel`, the subtitle table's adapter over `core.Project`.
    timeline: `TimelineWidget` (pyqtgraph): line regions, waveforms, playhead, frame grid.
    inspector, emotion_panel, voice_panel: the side panels.
    worker: `EngineWorker` on one long-lived QThread, driving `services.RenderService`.
    editing, undo: core commands on a QUndoStack.
    files, export_dialog: open/save/autosave/recent files; exports with progress.
    video, playback, latency: QMediaPlayer preview, sounddevice output, event-loop probe.
"""
