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

SAMPLE_RATE = 16000


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


def read_audio(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, allow_silent: bool = False
) -> np.ndarray:
    """Decode the audio (or a video's audio track) to mono float32 at ``sample_rate``.

    Raises MediaError when the file is missing, has no audio, decodes to nothing, or (unless
    ``allow_silent``) is silent throughout.
    """
    p = _check_file(path)
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(p), "-vn", "-map", "0:a:0",
        "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-",
    ]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise _probe_error(p, proc.stderr.decode("utf-8", "replace"))
    audio = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    if audio.size == 0:
        raise MediaError(f"{p}: audio is empty (0 samples)")
    if not np.isfinite(audio).all():
        raise MediaError(f"{p}: audio contains invalid samples")
    if not allow_silent and is_silent(audio):
        raise MediaError(f"{p}: audio is silent throughout")
    return audio


def iter_audio_chunks(
    path: str | os.PathLike, chunk_seconds: float = 30.0, sample_rate: int = SAMPLE_RATE
) -> Iterator[np.ndarray]:
    """Stream a long file as mono float32 chunks of ``chunk_seconds`` (bounded memory)."""
    p = _check_file(path)
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(p), "-vn", "-map", "0:a:0",
        "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunk_bytes = int(chunk_seconds * sample_rate) * 4
    got_any = False
    try:
        assert proc.stdout is not None
        while True:
            buf = proc.stdout.read(chunk_bytes)
            if not buf:
                break
            got_any = True
            yield np.frombuffer(buf[: len(buf) // 4 * 4], dtype="<f4").astype(np.float32)
    finally:
        if proc.stdout:
            proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        rc = proc.wait()
    if rc != 0 and not got_any:
        raise _probe_error(p, err)


def is_silent(audio: np.ndarray, threshold: float = 1e-4) -> bool:
    return audio.size == 0 or float(np.max(np.abs(audio))) < threshold


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
