"""System check: what this machine can do, each failing row with how to fix it (Qt-free rows + a dialog)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout


@dataclass
class CheckRow:
    name: str
    ok: bool | None  # None: informational (a warning, not a failure)
    value: str
    fix: str = ""


def _torch_rows(threads: int = 0) -> list[CheckRow]:
    try:
        import torch
    except ImportError:
        return [CheckRow("PyTorch", False, "not installed", "pip install torch (see pytorch.org for your GPU)")]
    from app.jobs import cpu_threads

    # The configured count, not torch.get_num_threads(): a run sets that to its own and it would
    # change from one check to the next.
    cores = os.cpu_count() or 1
    how = f"{threads} set" if threads > 0 else "auto: all cores but one"
    rows = [CheckRow("PyTorch", True, f"{torch.__version__}; {cores} CPU cores, generation uses "
                                      f"{cpu_threads(threads)} threads ({how})")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            rows.append(CheckRow(f"CUDA device {i}", True,
                                 f"{p.name}, {total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free)"))
        bf16 = torch.cuda.is_bf16_supported()
        rows.append(CheckRow("bfloat16 on GPU", bf16, "supported" if bf16 else "not supported",
                             "" if bf16 else "Use float16 or float32 precision on this GPU."))
    else:
        build = torch.version.cuda
        rows.append(CheckRow("CUDA GPU", None, "none: generation runs on the CPU (small models only)",
                             "For GPU models install an NVIDIA driver and a CUDA build of PyTorch"
                             + (f" (this build targets CUDA {build})." if build else " (this build is CPU-only).")))
        rows.append(CheckRow("bfloat16 on CPU", True, "supported (slower than float32 on most CPUs)"))
    return rows


def _ffmpeg_row() -> CheckRow:
    try:
        from models.media import ffmpeg_exe

        exe = ffmpeg_exe()
        return CheckRow("ffmpeg", os.path.isfile(exe), exe, "" if os.path.isfile(exe) else "pip install imageio-ffmpeg")
    except Exception as e:
        return CheckRow("ffmpeg", False, str(e), "pip install imageio-ffmpeg")


def _mediapipe_rows() -> list[CheckRow]:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None:
        return [CheckRow("MediaPipe", False, "not installed",
                         "pip install mediapipe==0.10.21 (pose from camera/video)")]
    import glob

    import mediapipe

    root = os.path.dirname(mediapipe.__file__)
    models = glob.glob(os.path.join(root, "modules", "**", "*.tflite"), recursive=True)
    need = ("pose_landmark", "hand_landmark", "face_landmark", "holistic_landmark")
    have = [n for n in need if any(f"/{n}" in m.replace(os.sep, "/") for m in models)]
    ok = len(have) == len(need)
    return [
        CheckRow("MediaPipe", True, mediapipe.__version__),
        CheckRow("MediaPipe models", ok, f"{len(models)} files; " + ", ".join(have),
                 "" if ok else "Reinstall: pip install --force-reinstall mediapipe==0.10.21"),
    ]


def _audio_rows() -> list[CheckRow]:
    from app.audio_io import audio_status

    st = audio_status()
    if st.ok:
        names = ", ".join(n for _, n, _ in st.input_devices[:3])
        return [CheckRow("Microphone (PortAudio)", True, names)]
    return [CheckRow("Microphone (PortAudio)", False, st.message,
                     "Recording needs PortAudio and an input device; loading audio files works without them.")]


def _camera_row() -> CheckRow:
    from models.sources import list_cameras

    cams = list_cameras()
    if cams:
        return CheckRow("Cameras", True, ", ".join(c.name for c in cams))
    return CheckRow("Cameras", None, "none found", "Connect a webcam for live pose; a video file works without one.")


def _model_rows(extra_dirs: list[str]) -> list[CheckRow]:
    from models.engines.registry import model_choices

    trained = [c for c in model_choices(extra_dirs) if c.trained]
    if trained:
        return [CheckRow("Models", True, ", ".join(c.label for c in trained))]
    return [CheckRow("Models", False, "no trained model found (only the untrained pipeline check)",
                     "Put a model folder (config.json + model.safetensors) in resources/models, or use "
                     "Model > Add folder..., or train one with 'python main.py train'.")]


def system_checks(extra_dirs: list[str] = (), threads: int = 0) -> list[CheckRow]:
    """Every check; ``threads`` is the Threads setting (0: auto)."""
    rows = _torch_rows(threads)
    for fn in (_ffmpeg_row, _mediapipe_rows, _audio_rows, _camera_row):
        try:
            r = fn()
        except Exception as e:
            r = CheckRow(fn.__name__.strip("_").replace("_rows", "").replace("_row", ""), False, f"check failed: {e}")
        rows += r if isinstance(r, list) else [r]
    rows += _model_rows(list(extra_dirs))
    return rows


class SystemCheckDialog(QDialog):
    def __init__(self, rows: list[CheckRow], parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("System check")
        self.resize(1000, 420)
        t = QTableWidget(len(rows), 4)
        t.setHorizontalHeaderLabels(["", "Check", "Found", "How to fix"])
        colors = {True: QColor(60, 170, 80), False: QColor(220, 60, 60), None: QColor(220, 160, 40)}
        for i, r in enumerate(rows):
            mark = QTableWidgetItem({True: "OK", False: "FAIL", None: "NOTE"}[r.ok])
            mark.setForeground(colors[r.ok])
            t.setItem(i, 0, mark)
            for j, v in enumerate((r.name, r.value, r.fix), start=1):
                item = QTableWidgetItem(v)
                item.setToolTip(v)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                t.setItem(i, j, item)
        t.resizeColumnsToContents()
        t.setColumnWidth(2, min(t.columnWidth(2), 360))
        t.setColumnWidth(3, 380)
        t.horizontalHeader().setStretchLastSection(True)
        t.setWordWrap(True)
        t.resizeRowsToContents()
        self.table = t
        failing = sum(r.ok is False for r in rows)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(f"{failing} problem(s) found." if failing else "Everything needed is here."))
        lay.addWidget(t)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)
