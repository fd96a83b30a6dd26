"""Video preview (QMediaPlayer + QVideoWidget) and decoding of the video's own audio track.

QtMultimedia's FFmpeg backend (shipped inside the PySide6 wheel) decodes H.264/AAC, so no system
FFmpeg is needed. The player's position drives the editor's playhead; seeking the playhead seeks
the player. The original audio is decoded once with QAudioDecoder for the timeline waveform.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtMultimedia, QtMultimediaWidgets, QtWidgets

logger = logging.getLogger(__name__)

#: Rate the original audio is decoded at for the waveform (enough to see syllables).
WAVEFORM_RATE = 8000


class VideoPanel(QtWidgets.QWidget):
    """The picture, a transport row and a time readout.

    Signals:
        position_changed(float): the player moved (seconds), while playing or after a seek.
        duration_known(float): the video's length in seconds.
    """

    position_changed = QtCore.Signal(float)
    duration_known = QtCore.Signal(float)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.player = QtMultimedia.QMediaPlayer(self)
        self._shut_down = False
        self.audio_output = QtMultimedia.QAudioOutput(self)
        self.player.setAudioOutput(self.audio_output)
        self.video_widget = QtMultimediaWidgets.QVideoWidget(self)
        self.video_widget.setMinimumSize(320, 180)
        self.video_widget.setStyleSheet("background: black;")
        self.player.setVideoOutput(self.video_widget)
        self.player.positionChanged.connect(lambda ms: self.position_changed.emit(ms / 1000.0))
        self.player.durationChanged.connect(self._on_duration)
        self.player.errorOccurred.connect(self._on_error)

        self.play_button = QtWidgets.QToolButton()
        self.play_button.setText("▶")
        self.play_button.setToolTip("Play / pause video (Space)")
        self.play_button.clicked.connect(self.toggle)
        self.time_label = QtWidgets.QLabel("00:00:00.000")
        self.status_label = QtWidgets.QLabel("")
        self.status_label.setStyleSheet("color: #c77;")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.play_button)
        row.addWidget(self.time_label)
        row.addWidget(self.status_label, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.video_widget, 1)
        layout.addLayout(row)
        self.position_changed.connect(self._show_time)
        self.player.playbackStateChanged.connect(self._on_state)

    def load(self, path: Path | None) -> None:
        """Show the video at ``path`` (None clears it)."""
        self.player.stop()
        if path is None or not path.is_file():
            self.player.setSource(QtCore.QUrl())
            self.status_label.setText("" if path is None else f"video not found: {path.name}")
            return
        self.status_label.setText("")
        self.player.setSource(QtCore.QUrl.fromLocalFile(str(path)))
        # Show the first frame instead of black: start and pause at once.
        self.player.pause()

    def toggle(self) -> None:
        """Play or pause."""
        if self.player.playbackState() == QtMultimedia.QMediaPlayer.PlaybackState.PlayingState:
            self.player.pause()
        else:
            self.player.play()

    def seek(self, seconds: float) -> None:
        """Show the frame at ``seconds``."""
        self.player.setPosition(max(0, round(seconds * 1000)))

    def _on_duration(self, ms: int) -> None:
        if ms > 0:
            self.duration_known.emit(ms / 1000.0)

    def _on_error(self, _error: object, message: str) -> None:
        logger.warning("video: %s", message)
        self.status_label.setText(message)

    def _on_state(self, state: QtMultimedia.QMediaPlayer.PlaybackState) -> None:
        playing = state == QtMultimedia.QMediaPlayer.PlaybackState.PlayingState
        self.play_button.setText("⏸" if playing else "▶")

    def _show_time(self, seconds: float) -> None:
        ms = round(seconds * 1000)
        hh, rest = divmod(ms, 3_600_000)
        mm, rest = divmod(rest, 60_000)
        ss, ms = divmod(rest, 1000)
        self.time_label.setText(f"{hh:02d}:{mm:02d}:{ss:02d}.{ms:03d}")

    def shutdown(self) -> None:
        """Hand the player to Qt's event loop for teardown (before the window closes).

        Tearing the FFmpeg backend down from Python (``stop()``, ``setSource(QUrl())``) holds the
        GIL while one of the backend's threads, deleting its own objects, may be waiting for it:
        a deadlock seen on close. Deleted from the event loop, the backend gets the GIL when it
        needs it. Idempotent.
        """
        if self._shut_down:
            return
        self._shut_down = True
        self.player.deleteLater()


class AudioTrackDecoder(QtCore.QObject):
    """Decodes a media file's audio to mono float32 at `WAVEFORM_RATE`, asynchronously.

    Signals:
        decoded(object, int): samples ``(N,)`` and their rate.
        failed(str): why it could not be decoded.
    """

    decoded = QtCore.Signal(object, int)
    failed = QtCore.Signal(str)

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._decoder = QtMultimedia.QAudioDecoder(self)
        fmt = QtMultimedia.QAudioFormat()
        fmt.setSampleRate(WAVEFORM_RATE)
        fmt.setChannelCount(1)
        fmt.setSampleFormat(QtMultimedia.QAudioFormat.SampleFormat.Float)
        self._decoder.setAudioFormat(fmt)
        self._chunks: list[np.ndarray] = []
        self._rate = WAVEFORM_RATE
        self._decoder.bufferReady.connect(self._on_buffer)
        self._decoder.finished.connect(self._on_finished)
        self._decoder.error.connect(self._on_error)

    def start(self, path: Path) -> None:
        """Begin decoding ``path``."""
        if self._decoder is None:
            return
        self._decoder.stop()
        self._chunks = []
        self._decoder.setSource(QtCore.QUrl.fromLocalFile(str(path)))
        self._decoder.start()

    def stop(self) -> None:
        """Abandon decoding."""
        if self._decoder is not None:
            self._decoder.stop()

    def shutdown(self) -> None:
        """Abandon decoding for good; the decoder is torn down by the event loop (see
        `VideoPanel.shutdown` for why not from Python). Idempotent."""
        if self._decoder is not None:
            self._decoder.deleteLater()
            self._decoder = None

    def _on_buffer(self) -> None:
        if self._decoder is None:  # a buffer queued before shutdown
            return
        buffer = self._decoder.read()
        fmt = buffer.format()
        self._rate = fmt.sampleRate() or WAVEFORM_RATE
        channels = max(1, fmt.channelCount())
        raw = bytes(buffer.constData()) if buffer.byteCount() else b""
        if fmt.sampleFormat() == QtMultimedia.QAudioFormat.SampleFormat.Float:
            data = np.frombuffer(raw, dtype=np.float32)
        elif fmt.sampleFormat() == QtMultimedia.QAudioFormat.SampleFormat.Int16:
            data = np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0
        elif fmt.sampleFormat() == QtMultimedia.QAudioFormat.SampleFormat.Int32:
            data = np.frombuffer(raw, dtype=np.int32).astype(np.float32) / 2**31
        else:
            data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
        if channels > 1:
            data = data[: len(data) // channels * channels].reshape(-1, channels).mean(axis=1)
        self._chunks.append(data.copy())

    def _on_finished(self) -> None:
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        self.decoded.emit(samples, int(self._rate))

    def _on_error(self, _error: object) -> None:
        if self._decoder is not None:
            self.failed.emit(self._decoder.errorString())
