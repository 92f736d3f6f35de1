"""Camera and video-file frame sources: ordering, drop-oldest, and clean errors instead of hangs.

Cameras are faked through ``capture_factory`` (no camera on CI); the "no camera" case uses the real
OpenCV path. Synchronisation is by events and timeouts, never sleeps.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from models.media import write_video
from models.sources import (
    CameraSource,
    FrameSourceError,
    SourceTimeout,
    VideoFileSource,
    list_cameras,
)
from tests import media_assets as assets


class FakeCapture:
    """OpenCV VideoCapture stand-in: ``frames`` BGR frames, then ``then`` = 'fail' | 'block'."""

    def __init__(self, frames: int = 5, then: str = "fail", opened: bool = True, first_ok: bool = True):
        self.frames = frames
        self.then = then
        self.opened = opened
        self.first_ok = first_ok
        self.count = 0
        self.released = threading.Event()
        self.blocked = threading.Event()  # set when the capture starts blocking
        self.props = {}

    def isOpened(self):  # noqa: N802 (OpenCV's name)
        return self.opened

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def get(self, prop):
        return 30.0

    def read(self):
        if not self.first_ok:
            return False, None
        if self.count < self.frames:
            img = np.zeros((4, 6, 3), np.uint8)
            img[..., 0] = self.count  # blue channel in BGR carries the frame number
            img[0, 0] = (0, 0, 255)  # top-left pixel red (BGR)
            self.count += 1
            return True, img
        if self.then == "block":
            self.blocked.set()
            self.released.wait(10)  # a stuck driver call; released at teardown
        return False, None

    def release(self):
        self.released.set()


def _camera(fake: FakeCapture, **kw) -> CameraSource:
    return CameraSource(0, capture_factory=lambda index: fake, **kw)


def test_camera_frames_in_order_then_a_clear_error_when_it_stops():
    fake = FakeCapture(frames=5, then="fail")
    with _camera(fake, queue_size=10) as cam:
        got = [cam.read(timeout=5) for _ in range(5)]
        assert [f.index for f in got] == [0, 1, 2, 3, 4]
        assert [int(f.image[1, 1, 2]) for f in got] == [0, 1, 2, 3, 4]  # BGR -> RGB
        assert tuple(got[0].image[0, 0]) == (255, 0, 0)
        assert (cam.width, cam.height) == (6, 4)
        with pytest.raises(FrameSourceError, match="camera 0: stopped sending frames"):
            cam.read(timeout=5)
    assert fake.released.is_set()


def test_camera_mirror_and_fps_meter():
    fake = FakeCapture(frames=4, then="fail")
    with _camera(fake, mirror=True, queue_size=10) as cam:
        frame = cam.read(timeout=5)
        assert tuple(frame.image[0, -1]) == (255, 0, 0)  # the red pixel moved to the right
        for _ in range(3):
            cam.read(timeout=5)
        assert cam.measured_fps > 0


def test_drop_oldest_keeps_the_newest_frames():
    fake = FakeCapture(frames=6, then="block")
    cam = _camera(fake, queue_size=2, stall_timeout=0)
    try:
        cam.start()
        assert fake.blocked.wait(5)  # all six frames were handed over
        assert cam.frames_read == 6 and cam.frames_dropped == 4
        assert [cam.read(timeout=5).index for _ in range(2)] == [4, 5]
        with pytest.raises(SourceTimeout):
            cam.read(timeout=0.05)
    finally:
        fake.released.set()
        cam.stop()


def test_camera_that_hangs_is_reported_not_waited_for():
    fake = FakeCapture(frames=2, then="block")
    cam = _camera(fake, queue_size=4, stall_timeout=0.3)
    try:
        cam.start()
        cam.read(timeout=5)
        cam.read(timeout=5)
        with pytest.raises(FrameSourceError, match=r"camera 0: stopped sending frames \(nothing for 0.3 s\)"):
            cam.read(timeout=5)
    finally:
        fake.released.set()
        cam.stop()


def test_busy_and_missing_cameras():
    with pytest.raises(FrameSourceError, match="camera 0: opened but sends no picture; it is probably in use"):
        _camera(FakeCapture(first_ok=False)).start()
    with pytest.raises(FrameSourceError, match="camera 0: could not be opened; it may be in use"):
        _camera(FakeCapture(opened=False)).start()
    # The real OpenCV path on a machine without that camera.
    src = CameraSource(57, open_timeout=10)
    with pytest.raises(FrameSourceError, match="camera 57: (no such camera|could not be opened)"):
        src.start()
    assert not src.running
    with pytest.raises(FrameSourceError, match="not started"):
        CameraSource(0).read()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="device nodes are listed on Linux")
def test_list_cameras_without_opening_them():
    cams = list_cameras()
    assert isinstance(cams, list)
    for cam in cams:
        assert cam.device.startswith("/dev/video") and cam.name


def test_video_file_source_reads_every_frame():
    with VideoFileSource(assets.carphone_path(), realtime=False) as src:
        frames = list(src)
        assert (src.width, src.height) == (176, 144)
        assert src.nominal_fps == pytest.approx(29.97, abs=0.01)
    assert [f.index for f in frames] == list(range(120))
    assert frames[30].timestamp == pytest.approx(30 / 29.97)
    assert frames[0].image.shape == (144, 176, 3) and frames[0].image.dtype == np.uint8


def test_video_file_source_paced_like_a_camera(tmp_path):
    path = tmp_path / "short.mp4"
    write_video(path, np.zeros((6, 16, 16, 3), np.uint8), fps=50)
    with VideoFileSource(path, realtime=True, queue_size=8) as src:
        frames = list(src)
        assert len(frames) == 6
        # Delivered no faster than the video's own rate (5 intervals of 20 ms).
        assert 5 / src.measured_fps >= 0.09
    looped = VideoFileSource(path, realtime=False, loop=True, queue_size=8)
    with looped:
        idx = [looped.read(timeout=5).index for _ in range(14)]
    assert idx == list(range(14))


def test_video_file_source_errors(tmp_path):
    text = tmp_path / "list.mp4"
    text.write_text("not a video\n" * 10)
    with pytest.raises(FrameSourceError, match="list.mp4: not a video that ffmpeg can read"):
        VideoFileSource(text).start()
    with pytest.raises(FrameSourceError, match="absent.mp4: file not found"):
        VideoFileSource(tmp_path / "absent.mp4").start()
    data = assets.carphone_path().read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(FrameSourceError, match="cut.mp4: video (file )?is truncated"):
        VideoFileSource(cut).start()


def test_video_cut_mid_stream_reports_after_its_frames(tmp_path):
    import imageio_ffmpeg

    path = tmp_path / "faststart.mp4"
    w = imageio_ffmpeg.write_frames(str(path), (32, 32), fps=25, macro_block_size=1,
                                    output_params=["-movflags", "+faststart"], ffmpeg_log_level="error")
    w.send(None)
    rng = np.random.default_rng(0)
    for _ in range(40):
        w.send(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    w.close()
    data = path.read_bytes()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with VideoFileSource(cut, realtime=False) as src:
        n = 0
        with pytest.raises(FrameSourceError, match="half.mp4: video is truncated or damaged: only"):
            while src.read(timeout=5) is not None:
                n += 1
    assert 5 < n < 40
