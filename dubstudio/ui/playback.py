"""Audio playback through sounddevice: a line's take, or the mix around the playhead.

`AudioOutput` is the device boundary (tests replace `AudioOutput.backend` with a fake, nothing
else). When no output device exists it raises `AudioDeviceError` with a message a person can act
on; the main window shows it in the status bar instead of failing.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from dubstudio.core.errors import AudioDeviceError

logger = logging.getLogger(__name__)


class AudioBackend(Protocol):
    """The few sounddevice functions playback needs."""

    def play(self, data: np.ndarray, samplerate: int) -> None: ...
    def stop(self) -> None: ...
    def query_devices(self, device: Any = None, kind: str | None = None) -> Any: ...


def _load_sounddevice() -> AudioBackend:
    try:
        import sounddevice
    except OSError as exc:  # PortAudio library missing
        raise AudioDeviceError(
            "Audio playback needs the PortAudio library (Debian/Ubuntu: apt install "
            f"libportaudio2). Details: {exc}"
        ) from None
    return sounddevice  # type: ignore[return-value]


class AudioOutput:
    """Plays mono float32 audio on the default output device.

    Attributes:
        backend: The sounddevice module (or a stand-in with the same functions).
    """

    def __init__(self, backend: AudioBackend | None = None) -> None:
        self._backend = backend
        self.playing = False

    @property
    def backend(self) -> AudioBackend:
        """sounddevice, imported on first use."""
        if self._backend is None:
            self._backend = _load_sounddevice()
        return self._backend

    def check_device(self) -> str:
        """Name of the default output device.

        Raises:
            AudioDeviceError: If there is no output device.
        """
        try:
            info = self.backend.query_devices(kind="output")
        except AudioDeviceError:
            raise
        except Exception as exc:  # sounddevice raises PortAudioError / ValueError here
            raise AudioDeviceError(
                "No audio output device was found, so nothing can be played. Connect "
                "speakers or headphones (or start PulseAudio/PipeWire) and try again; "
                "rendering and export work without one."
            ) from exc
        name = info.get("name", "output") if isinstance(info, dict) else str(info)
        return str(name)

    def play(self, audio: np.ndarray, sample_rate: int) -> None:
        """Start playing ``audio`` (shape ``(N,)``), replacing whatever plays now.

        Raises:
            AudioDeviceError: If there is no output device.
        """
        self.check_device()
        data = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
        try:
            self.backend.stop()
            self.backend.play(data, sample_rate)
        except Exception as exc:
            raise AudioDeviceError(f"Playback failed on the audio device: {exc}") from exc
        self.playing = True
        logger.debug("playing %d samples at %d Hz", len(data), sample_rate)

    def stop(self) -> None:
        """Stop playback (a no-op when nothing plays or no device exists)."""
        if not self.playing:
            return
        self.playing = False
        try:
            self.backend.stop()
        except Exception as exc:  # stopping must never fail loudly
            logger.debug("stop failed: %s", exc)
