"""Images, audio and video in; H.264 MP4 with the audio muxed in out.

Everything goes through imageio-ffmpeg's bundled ffmpeg binary, so any container and codec ffmpeg
reads works and no system ffmpeg is needed. Errors are ``MediaError`` with a message that names the
file and the problem, suitable to show a user as is.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # Hz: every audio track of the project (a model carries its own in its config)
DEFAULT_FPS = 25.0  # video frames per second where no model says otherwise (data, previews)


class MediaError(ValueError):
    """A media file that cannot be used; the message names the file and the problem."""


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: file not found")
    if p.is_dir():
        raise MediaError(f"{p}: is a folder, not a file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: file is empty")
    return p


# ----------------------------------------------------------------------------------------------
# Images


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any image to RGB uint8 ``(H, W, 3)``.

    EXIF orientation is applied; alpha is composited over white; 16-bit and float images are
    scaled to 8 bit; grayscale and palette images become RGB.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = _check_file(path)
    try:
        with Image.open(p) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _pil_to_rgb(im)
    except UnidentifiedImageError:
        raise MediaError(f"{p}: not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"{p}: cannot read image ({e})") from None


def _pil_to_rgb(im) -> np.ndarray:
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        if mode == "F":
            hi = max(float(a.max()), 1.0) if a.max() > 1.0 else 1.0
        g = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
    if mode == "RGB":
        return np.asarray(im).copy()
    return np.asarray(im.convert("RGB"))


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.asarray(image, np.uint8)).save(path)


# ----------------------------------------------------------------------------------------------
# Audio


def _probe_error(p: Path, stderr: str) -> MediaError:
    low = stderr.lower()
    if "invalid data found" in low or "could not find codec" in low or "moov atom not found" in low:
        return MediaError(f"{p}: not an audio or video file that ffmpeg can read")
    if "does not contain any stream" in low or "output file #0 does not contain" in low or (
        "matches no streams" in low
    ):
        return MediaError(f"{p}: has no audio track (is it an audio or video file?)")
    last = [line for line in stderr.strip().splitlines() if line.strip()][-1:] or ["unknown error"]
    return MediaError(f"{p}: cannot decode audio ({last[0].strip()})")


def _decode_cmd(p: Path, sample_rate: int) -> list[str]:
    # First audio stream, downmixed to mono and resampled by ffmpeg: any container, codec, rate and
    # channel layout it reads. Leading and trailing silence are kept as they are (timing matters).
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(p), "-vn", "-map", "0:a:0",
        "-ac", "1", "-ar", str(int(sample_rate)), "-f", "f32le", "-",
    ]


# Peak below -60 dBFS: nothing a microphone picked up beyond its own noise floor.
SILENCE_PEAK = 1e-3
LOUDNESS_TARGET_DBFS = -23.0  # the EBU R128 programme level, with room for speech peaks


def read_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    allow_silent: bool = False,
    normalize: bool = False,
) -> np.ndarray:
    """Decode the audio (or a video's audio track) to mono float32 at ``sample_rate``.

    ``normalize`` brings the loudness to ``LOUDNESS_TARGET_DBFS`` (see ``normalize_loudness``).
    Raises MediaError when the file is missing, has no audio, decodes to nothing, or (unless
    ``allow_silent``) is silent throughout. For long files see ``iter_audio_chunks``.
    """
    p = _check_file(path)
    proc = subprocess.run(_decode_cmd(p, sample_rate), capture_output=True)
    if proc.returncode != 0:
        raise _probe_error(p, proc.stderr.decode("utf-8", "replace"))
    audio = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    if audio.size == 0:
        raise MediaError(f"{p}: audio is empty (0 samples)")
    if not np.isfinite(audio).all():
        raise MediaError(f"{p}: audio contains invalid samples")
    if is_silent(audio):
        if not allow_silent:
            raise MediaError(
                f"{p}: audio is silent throughout ({len(audio) / sample_rate:.1f} s, peak "
                f"{_db(float(np.max(np.abs(audio))))} dBFS); record or choose a file with speech"
            )
        return audio
    if normalize:
        audio = normalize_loudness(audio, sample_rate)
    return audio


def iter_audio_chunks(
    path: str | os.PathLike,
    chunk_seconds: float = 30.0,
    sample_rate: int = SAMPLE_RATE,
    normalize: bool = False,
) -> Iterator[np.ndarray]:
    """Stream a long file (an hour and more) as mono float32 chunks of ``chunk_seconds``.

    Memory stays bounded by one chunk. With ``normalize`` the file is decoded twice: a first pass
    measures its loudness and peak (``measure_audio``), the second yields the chunks with one gain,
    so loudness is even across chunk boundaries. Concatenated, the chunks equal ``read_audio``.
    """
    p = _check_file(path)
    gain = 1.0
    if normalize:
        stats = measure_audio(p, sample_rate)
        if not stats.silent:
            gain = loudness_gain(stats.loudness_dbfs, stats.peak)
    chunk_samples = max(1, int(chunk_seconds * sample_rate))
    for chunk in _stream_decode(p, sample_rate, chunk_samples):
        yield chunk * np.float32(gain) if gain != 1.0 else chunk


def _stream_decode(p: Path, sample_rate: int, chunk_samples: int) -> Iterator[np.ndarray]:
    proc = subprocess.Popen(_decode_cmd(p, sample_rate), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got_any = False
    finished = False
    err = ""
    try:
        assert proc.stdout is not None
        while True:
            buf = proc.stdout.read(chunk_samples * 4)
            if not buf:
                break
            got_any = True
            yield np.frombuffer(buf[: len(buf) // 4 * 4], dtype="<f4").astype(np.float32)
        finished = True
    finally:
        if not finished and proc.poll() is None:
            proc.kill()  # the consumer stopped early
        if proc.stdout:
            proc.stdout.close()
        try:
            err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        finally:
            if proc.stderr:
                proc.stderr.close()
        rc = proc.wait()
    if finished and rc != 0 and not got_any:
        raise _probe_error(p, err)
    if finished and not got_any:
        raise MediaError(f"{p}: audio is empty (0 samples)")


def is_silent(audio: np.ndarray, threshold: float = SILENCE_PEAK) -> bool:
    """True when the peak stays below ``threshold`` (-60 dBFS by default) or there is no sample."""
    return audio.size == 0 or float(np.max(np.abs(audio))) < threshold


def _db(x: float) -> str:
    return f"{20 * np.log10(max(x, 1e-10)):.0f}"


# ----------------------------------------------------------------------------------------------
# Loudness: gated mean power after ITU-R BS.1770 (400 ms blocks every 100 ms, absolute gate at
# -70 dBFS, relative gate 10 dB under the mean), without the K-weighting pre-filter: speech is what
# we normalise, and the gating is what keeps pauses and leading silence from skewing the level.
# Reported in dB relative to full scale power (a full-scale sine is -3 dB).


class LoudnessMeter:
    """Streaming loudness and peak: feed chunks with ``add``; memory is 4 bytes per 100 ms."""

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        self.sample_rate = int(sample_rate)
        self.step = max(1, self.sample_rate // 10)  # 100 ms sub-blocks
        self._rest = np.zeros(0, np.float32)
        self._energies: list[np.ndarray] = []
        self.peak = 0.0
        self.num_samples = 0

    def add(self, chunk: np.ndarray) -> None:
        chunk = np.asarray(chunk, np.float32).ravel()
        if chunk.size == 0:
            return
        self.num_samples += chunk.size
        self.peak = max(self.peak, float(np.max(np.abs(chunk))))
        data = np.concatenate([self._rest, chunk]) if self._rest.size else chunk
        n = data.size // self.step
        if n:
            blocks = data[: n * self.step].astype(np.float64).reshape(n, self.step)
            self._energies.append(np.mean(blocks * blocks, axis=1))
        self._rest = data[n * self.step :].copy()

    def loudness_dbfs(self) -> float:
        e = np.concatenate(self._energies) if self._energies else np.zeros(0)
        if self._rest.size:
            e = np.concatenate([e, [float(np.mean(self._rest.astype(np.float64) ** 2))]])
        if e.size == 0:
            return -np.inf
        if e.size >= 4:
            # 400 ms blocks with 75 % overlap: the mean of 4 consecutive 100 ms sub-blocks.
            c = np.concatenate([[0.0], np.cumsum(e)])
            blocks = (c[4:] - c[:-4]) / 4.0
        else:
            blocks = np.array([e.mean()])
        blocks = blocks[blocks > 10 ** (-70 / 10)]
        if blocks.size == 0:
            return -np.inf
        relative_gate = blocks.mean() * 10 ** (-10 / 10)
        gated = blocks[blocks > relative_gate]
        return float(10 * np.log10(gated.mean() if gated.size else blocks.mean()))


def loudness_dbfs(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Gated loudness of ``audio`` in dBFS (``-inf`` for silence)."""
    m = LoudnessMeter(sample_rate)
    m.add(audio)
    return m.loudness_dbfs()


def loudness_gain(
    loudness: float, peak: float, target_dbfs: float = LOUDNESS_TARGET_DBFS, peak_ceiling: float = 0.98,
    max_gain_db: float = 30.0,
) -> float:
    """Linear gain that brings ``loudness`` to ``target_dbfs`` without pushing the peak past
    ``peak_ceiling`` (no limiter, so no distortion) and without boosting more than ``max_gain_db``
    (noise must not become speech-loud)."""
    if not np.isfinite(loudness) or peak <= 0:
        return 1.0
    gain = 10 ** (min(target_dbfs - loudness, max_gain_db) / 20)
    return float(min(gain, peak_ceiling / peak))


def normalize_loudness(
    audio: np.ndarray, sample_rate: int = SAMPLE_RATE, target_dbfs: float = LOUDNESS_TARGET_DBFS
) -> np.ndarray:
    """``audio`` scaled to the target loudness (see ``loudness_gain``); silence is returned as is."""
    audio = np.asarray(audio, np.float32)
    if is_silent(audio):
        return audio.copy()
    gain = loudness_gain(loudness_dbfs(audio, sample_rate), float(np.max(np.abs(audio))), target_dbfs)
    return (audio * np.float32(gain)).astype(np.float32)


@dataclass(frozen=True)
class AudioStats:
    """What a user should know about an audio input."""

    duration: float  # seconds
    sample_rate: int
    loudness_dbfs: float
    peak: float
    leading_silence: float  # seconds before the first sound
    trailing_silence: float  # seconds after the last sound
    silent: bool

    @property
    def message(self) -> str:
        if self.silent:
            return f"audio is silent throughout ({self.duration:.1f} s)"
        msg = f"{self.duration:.1f} s of audio, loudness {self.loudness_dbfs:.0f} dBFS"
        if self.leading_silence >= 0.5 or self.trailing_silence >= 0.5:
            msg += (f"; silence kept: {self.leading_silence:.1f} s at the start, "
                    f"{self.trailing_silence:.1f} s at the end")
        return msg


SILENCE_BELOW_LOUDNESS_DB = 35.0  # a 20 ms block this far under the speech level is a pause


def _block_rms(audio: np.ndarray, block: int) -> np.ndarray:
    n = audio.size // block
    return np.sqrt(np.mean(audio[: n * block].astype(np.float64).reshape(n, block) ** 2, axis=1))


def _silence_from_rms(rms: np.ndarray, loudness: float, block: int, total: int, sample_rate: int):
    threshold = max(SILENCE_PEAK / 10, 10 ** ((loudness - SILENCE_BELOW_LOUDNESS_DB) / 20)) if np.isfinite(
        loudness) else np.inf
    loud = np.flatnonzero(rms >= threshold)
    if loud.size == 0:
        return total / sample_rate, 0.0
    return float(loud[0] * block / sample_rate), float((total - (loud[-1] + 1) * block) / sample_rate)


def silence_bounds(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[float, float]:
    """Seconds of silence at the start and at the end: 20 ms blocks quieter than the audio's own
    loudness by ``SILENCE_BELOW_LOUDNESS_DB`` (so a quiet recording's speech is not "silence")."""
    audio = np.asarray(audio, np.float32)
    if is_silent(audio):
        return audio.size / sample_rate, 0.0
    block = max(1, sample_rate // 50)
    return _silence_from_rms(_block_rms(audio, block), loudness_dbfs(audio, sample_rate), block, audio.size,
                             sample_rate)


def describe_audio(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> AudioStats:
    audio = np.asarray(audio, np.float32)
    lead, trail = silence_bounds(audio, sample_rate)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return AudioStats(audio.size / sample_rate, sample_rate, loudness_dbfs(audio, sample_rate), peak,
                      lead, trail, is_silent(audio))


def measure_audio(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, chunk_seconds: float = 60.0
) -> AudioStats:
    """``describe_audio`` of a file of any length, streamed in chunks: memory is one chunk plus
    8 bytes per 20 ms (about 1.5 MB for an hour)."""
    p = _check_file(path)
    meter = LoudnessMeter(sample_rate)
    block = max(1, sample_rate // 50)
    rms_parts: list[np.ndarray] = []
    rest = np.zeros(0, np.float32)
    for chunk in _stream_decode(p, sample_rate, max(1, int(chunk_seconds * sample_rate))):
        meter.add(chunk)
        data = np.concatenate([rest, chunk]) if rest.size else chunk
        n = data.size // block
        if n:
            rms_parts.append(_block_rms(data[: n * block], block))
        rest = data[n * block :].copy()
    total = meter.num_samples
    loudness = meter.loudness_dbfs()
    silent = meter.peak < SILENCE_PEAK
    if silent:
        lead, trail = total / sample_rate, 0.0
    else:
        rms = np.concatenate(rms_parts) if rms_parts else np.zeros(0)
        lead, trail = _silence_from_rms(rms, loudness, block, total, sample_rate)
    return AudioStats(total / sample_rate, sample_rate, loudness, meter.peak, lead, trail, silent)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono WAV."""
    pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def num_video_frames(num_samples: int, fps: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Frames for audio of ``num_samples``: the video lasts as long as the audio, within one frame."""
    return max(1, int(round(num_samples * fps / sample_rate)))


def resample_audio(audio: np.ndarray, rate: float, target: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of mono float32 audio (polyphase when scipy is there, else linear)."""
    audio = np.asarray(audio, np.float32)
    if audio.size == 0 or int(round(rate)) == target:
        return audio
    try:
        from math import gcd

        from scipy.signal import resample_poly

        r = int(round(rate))
        g = gcd(r, target)
        return resample_poly(audio, target // g, r // g).astype(np.float32)
    except ImportError:
        n = int(round(audio.size * target / rate))
        x = np.linspace(0, audio.size - 1, n)
        return np.interp(x, np.arange(audio.size), audio).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Video


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    num_frames: int | None
    duration: float | None


_VIDEO_SIGNATURES = (
    (4, b"ftyp"),  # MP4 / MOV / M4V
    (0, b"RIFF"),  # AVI
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"OggS"),
    (0, b"FLV"),
)


def _looks_like_video_container(p: Path) -> bool:
    with open(p, "rb") as f:
        head = f.read(16)
    return any(head[off : off + len(sig)] == sig for off, sig in _VIDEO_SIGNATURES)


def read_video_frames(path: str | os.PathLike, strict: bool = True) -> tuple[VideoInfo, Iterator[np.ndarray]]:
    """Open a video; returns its info and an iterator of RGB uint8 ``(H, W, 3)`` frames.

    A file cut short (an interrupted download or recording) raises MediaError saying so: at open
    when its index is missing, or, with ``strict``, at the end of the iteration when clearly fewer
    frames decode than its header announces (``strict=False`` just stops at the last good frame).
    """
    import imageio_ffmpeg

    p = _check_file(path)
    try:
        gen = imageio_ffmpeg.read_frames(str(p), pix_fmt="rgb24")
        meta = next(gen)
    except (OSError, RuntimeError, StopIteration) as e:
        text = str(e)
        msg = text.splitlines()[-1] if text else "unreadable"
        if _looks_like_video_container(p) and (
            "moov atom not found" in text or "Invalid data" in text or "End of file" in text
        ):
            raise MediaError(
                f"{p}: video file is truncated or damaged (its index is missing: was the download "
                f"or recording interrupted?)"
            ) from None
        raise MediaError(f"{p}: not a video that ffmpeg can read ({msg})") from None
    w, h = meta["size"]
    fps = float(meta.get("fps") or 25.0)
    duration = meta.get("duration")
    nframes = int(round(duration * fps)) if duration else None
    info = VideoInfo(int(w), int(h), fps, nframes, duration)

    def frames() -> Iterator[np.ndarray]:
        count = 0
        try:
            for buf in gen:
                if len(buf) != w * h * 3:
                    break  # a partial last frame
                count += 1
                yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
        except (OSError, RuntimeError) as e:
            raise MediaError(f"{p}: video is truncated or damaged ({str(e).splitlines()[-1]})") from None
        finally:
            gen.close()
        if strict and nframes and count < 0.9 * nframes - 2:
            raise MediaError(
                f"{p}: video is truncated or damaged: only {count} of the {nframes} frames its header "
                f"announces could be decoded"
            )

    return info, frames()


class VideoWriter:
    """Stream RGB uint8 frames into an H.264 MP4, then mux the audio in on ``close``.

    Frames are written as they come (bounded memory for long videos). The audio, when given, is
    written to a temporary WAV and muxed by ffmpeg in the same encode.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: float,
        audio: np.ndarray | None = None,
        sample_rate: int = SAMPLE_RATE,
        quality: int = 7,
    ) -> None:
        import imageio_ffmpeg

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.frames_written = 0
        self._tmp: tempfile.TemporaryDirectory | None = None
        audio_path = None
        if audio is not None and len(audio) > 0:
            self._tmp = tempfile.TemporaryDirectory(prefix="omnihuman-")
            audio_path = os.path.join(self._tmp.name, "audio.wav")
            write_wav(audio_path, audio, sample_rate)
        self._gen = imageio_ffmpeg.write_frames(
            str(self.path),
            (self.width, self.height),
            fps=self.fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=quality,
            macro_block_size=2,
            audio_path=audio_path,
            audio_codec="aac" if audio_path else None,
            output_params=["-shortest"] if audio_path else None,
            ffmpeg_log_level="error",
        )
        self._gen.send(None)

    def write(self, frames: np.ndarray | Iterable[np.ndarray]) -> None:
        """Append one ``(H, W, 3)`` frame or a batch ``(T, H, W, 3)``."""
        arr = np.asarray(frames) if isinstance(frames, np.ndarray) else np.stack(list(frames))
        if arr.ndim == 3:
            arr = arr[None]
        if arr.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"frame shape {arr.shape[1:]} != ({self.height}, {self.width}, 3)")
        for f in arr:
            self._gen.send(np.ascontiguousarray(f, dtype=np.uint8))
            self.frames_written += 1

    def close(self) -> Path:
        try:
            self._gen.close()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    quality: int = 7,
) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames (and optional audio) as an MP4."""
    t, h, w, _ = frames.shape
    with VideoWriter(path, w, h, fps, audio, sample_rate, quality) as wr:
        wr.write(frames)
    return Path(path)


def probe_streams(path: str | os.PathLike) -> dict:
    """What streams a media file has, and its duration, read from ffmpeg's banner."""
    p = _check_file(path)
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(p)], capture_output=True)
    text = proc.stderr.decode("utf-8", "replace")
    dur = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Duration:"):
            d = line.split(",")[0].split()[1]
            if d != "N/A":
                hh, mm, ss = d.split(":")
                dur = int(hh) * 3600 + int(mm) * 60 + float(ss)
    return {
        "video": " Video: " in text,
        "audio": " Audio: " in text,
        "duration": dur,
    }
