"""Microphone recording and playback through sounddevice (PortAudio), free of Qt.

Recording runs at the input device's own sample rate (many devices refuse 16 kHz) and is resampled
to the model's 16 kHz when it stops. The PortAudio callback thread only appends blocks under a lock;
the UI polls ``level`` and ``snapshot()`` on a timer to paint the meter and the waveform. The stream
is made by a factory so tests inject a fake microphone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.media import SAMPLE_RATE, resample_audio


@dataclass
class AudioStatus:
    ok: bool
    message: str
    input_devices: list[tuple[int, str, float]]  # (index, name, default sample rate)
    output_ok: bool = False


def _sounddevice():
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:  # OSError: the PortAudio library itself is missing
        raise RuntimeError(
            f"PortAudio is not available ({e}). Install it (Debian/Ubuntu: sudo apt install libportaudio2; "
            "macOS: brew install portaudio) and 'pip install sounddevice'."
        ) from None
    return sd


def audio_status() -> AudioStatus:
    """Whether recording and playback can work here, and which input devices exist."""
    try:
        sd = _sounddevice()
    except RuntimeError as e:
        return AudioStatus(False, str(e), [])
    try:
        devices = sd.query_devices()
    except Exception as e:
        return AudioStatus(False, f"PortAudio found no audio devices ({e}). Connect a microphone, or "
                                  "load an audio file instead.", [])
    inputs = [(i, d["name"], float(d["default_samplerate"])) for i, d in enumerate(devices)
              if d.get("max_input_channels", 0) > 0]
    output_ok = any(d.get("max_output_channels", 0) > 0 for d in devices)
    if not inputs:
        return AudioStatus(False, "No microphone (audio input device) found. Connect one, or load an audio "
                                  "file instead.", [], output_ok)
    return AudioStatus(True, f"{len(inputs)} input device(s)", inputs, output_ok)


def default_stream_factory(device: int | None, samplerate: float, callback: Callable):
    sd = _sounddevice()
    return sd.InputStream(device=device, samplerate=samplerate, channels=1, dtype="float32", callback=callback)


class Recorder:
    """Record mono float32 blocks from ``stream_factory(device, samplerate, callback)``.

    The callback signature is sounddevice's: ``callback(indata (n, channels), frames, time, status)``.
    """

    def __init__(self, device: int | None, samplerate: float, stream_factory: Callable | None = None) -> None:
        self.device = device
        self.samplerate = float(samplerate)
        self._factory = stream_factory or default_stream_factory
        self._lock = threading.Lock()
        # One growing buffer (capacity doubles): appending is amortised O(1) and a snapshot is a view,
        # so polling a long take at 30 Hz never copies it (samples below the count never change).
        self._buf = np.zeros(int(self.samplerate * 10), np.float32)
        self._count = 0
        self.level = 0.0  # peak of the last block, 0..1
        self.stream = None

    def _callback(self, indata, frames, time_info, status) -> None:
        block = np.asarray(indata, np.float32)
        mono = block.mean(axis=1) if block.ndim == 2 else block
        with self._lock:
            end = self._count + len(mono)
            if end > len(self._buf):
                grown = np.zeros(max(end, 2 * len(self._buf)), np.float32)
                grown[: self._count] = self._buf[: self._count]
                self._buf = grown
            self._buf[self._count:end] = mono
            self._count = end
        self.level = float(np.abs(mono).max()) if mono.size else 0.0

    def start(self) -> None:
        self.stream = self._factory(self.device, self.samplerate, self._callback)
        self.stream.start()

    @property
    def seconds(self) -> float:
        return self._count / self.samplerate

    def snapshot(self) -> np.ndarray:
        """Everything recorded so far at the device rate: a read-only view, no copy (call it at 30 Hz)."""
        with self._lock:
            view = self._buf[: self._count]
        view.flags.writeable = False
        return view

    def stop(self) -> np.ndarray:
        """Stop and return the take resampled to 16 kHz."""
        if self.stream is not None:
            try:
                self.stream.stop()
            finally:
                self.stream.close()
                self.stream = None
        return resample_audio(self.snapshot(), self.samplerate)


class Player:
    """Play 16 kHz audio through the default output; ``error`` says why it cannot."""

    def __init__(self) -> None:
        self.error = ""

    def play(self, audio: np.ndarray, start_seconds: float = 0.0, retry: bool = True) -> bool:
        """Start playback; after a failure, only ``retry`` tries again (asking PortAudio costs the UI
        thread tens of milliseconds, too much to repeat for every arriving segment)."""
        if self.error and not retry:
            return False
        try:
            sd = _sounddevice()
            a = audio[int(start_seconds * SAMPLE_RATE):]
            sd.play(a, SAMPLE_RATE)
        except Exception as e:
            why = "no audio output device" if "querying device" in str(e) else str(e)
            self.error = f"cannot play audio here ({why}). Export the video and play it in a media player."
            return False
        self.error = ""
        return True

    def stop(self) -> None:
        try:
            sd = _sounddevice()
            sd.stop()
        except Exception:
            pass
