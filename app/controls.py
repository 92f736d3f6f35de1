"""Generation controls: model, device, precision, prompt, guidance, annealing, steps, seed, size, presets."""

from __future__ import annotations

import random

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.jobs import ASPECTS
from app.settings import AREAS, PRESETS, SEGMENT_FRAMES
from app.widgets import SliderBox
from models.engines import GenerationSettings
from models.engines.registry import DTYPES, ENGINES, MODEL_ENGINE, ModelChoice, available_devices, model_choices
from models.flow import ANNEAL_SCHEDULES
from models.media import DEFAULT_FPS

ENGINE_WITH_MODEL = MODEL_ENGINE


def _row(*widgets) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        if isinstance(x, int):
            lay.addStretch(x)
        else:
            lay.addWidget(x)
    return w


class ControlsPanel(QGroupBox):
    """Every knob of a run. ``values()`` / ``apply()`` round-trip the settings dict (history, QSettings)."""

    changed = Signal()

    def __init__(self, settings, parent=None) -> None:
        super().__init__("4  Prompt and generation", parent)
        self.settings = settings
        self.engine = QComboBox()
        for spec in ENGINES.values():
            self.engine.addItem(spec.name)
        self.engine.setToolTip("OmniHuman model: the diffusion model. Instant: warps the picture itself in real "
                               "time on a CPU (model, steps and guidance do not apply).")
        self.model = QComboBox()
        self.add_model_btn = QToolButton()
        self.add_model_btn.setText("Add folder...")
        self.model_note = QLabel("")
        self.model_note.setWordWrap(True)
        self.model_note.setStyleSheet("color: #d08000")
        self.device = QComboBox()
        self.device.addItems(available_devices())
        self.dtype = QComboBox()
        self.dtype.addItems(DTYPES)
        self.cpu_threads = QSpinBox()
        self.cpu_threads.setRange(0, 256)
        self.cpu_threads.setSpecialValueText("auto")
        self.cpu_threads.setToolTip("CPU threads for generation; auto keeps one core free so the window stays smooth.")
        self.text = QPlainTextEdit()
        self.text.setPlaceholderText("Optional text prompt, e.g. 'a cartoon character talking, waving'")
        self.text.setFixedHeight(48)
        self.cfg_audio = SliderBox(0.0, 10.0, 0.1, 1)
        self.cfg_text = SliderBox(0.0, 10.0, 0.1, 1)
        self.cfg_audio.setToolTip("Audio guidance: higher follows the speech more closely (lip sync).")
        self.cfg_text.setToolTip("Text guidance: higher follows the prompt more closely.")
        self.anneal = QComboBox()
        self.anneal.addItems(ANNEAL_SCHEDULES)
        self.anneal_strength = SliderBox(0.0, 1.0, 0.05, 2)
        self.anneal.setToolTip("CFG annealing: guidance falls as sampling proceeds (fewer wrinkles and artefacts).")
        self.steps = QSpinBox()
        self.steps.setRange(1, 200)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.dice = QToolButton()
        self.dice.setText("\u2684")
        self.dice.setToolTip("New random seed")
        self.random_seed = QCheckBox("random each run")
        self.used_seed = QLabel("")
        self.area = QComboBox()
        for name, a in AREAS.items():
            self.area.addItem(name, a)
        self.aspect = QComboBox()
        self.aspect.addItems(list(ASPECTS))
        self.aspect.setToolTip("Aspect ratio of the video: the picture's own, or a centre crop of it.")
        self.segment_frames = QComboBox()
        # A model generates best in segments as long as the windows it was trained on.
        self.segment_frames.addItem("the model's (its training length)", 0)
        for n in SEGMENT_FRAMES:
            self.segment_frames.addItem(f"{n} frames", n)
        self.max_seconds = QDoubleSpinBox()
        self.max_seconds.setRange(0, 600)
        self.max_seconds.setSpecialValueText("whole audio")
        self.max_seconds.setSuffix(" s")
        self.preset_fast = QPushButton("Fast preview")
        self.preset_quality = QPushButton("Quality")

        form = QFormLayout()
        form.addRow("Engine", self.engine)
        form.addRow("Model", _row(self.model, self.add_model_btn))
        form.addRow("", self.model_note)
        form.addRow("Device", _row(self.device, QLabel("Precision"), self.dtype, QLabel("Threads"), self.cpu_threads))
        form.addRow("Prompt", self.text)
        form.addRow("Audio CFG", self.cfg_audio)
        form.addRow("Text CFG", self.cfg_text)
        form.addRow("Annealing", _row(self.anneal, QLabel("strength"), self.anneal_strength))
        form.addRow("Steps", _row(self.steps, QLabel("Seed"), self.seed, self.dice, 1))
        form.addRow("", _row(self.random_seed, self.used_seed, 1))
        form.addRow("Size", _row(self.area, QLabel("Aspect"), self.aspect))
        form.addRow("Segment", _row(self.segment_frames, 1))
        form.addRow("Length", _row(self.max_seconds, QLabel("(cap for previews)"), 1))
        form.addRow("Presets", _row(self.preset_fast, self.preset_quality, 1))
        lay = QVBoxLayout(self)
        lay.addLayout(form)

        self.refresh_models()
        self.apply_model_defaults()  # what the user has not chosen yet comes from the model
        self.load(settings)
        self.dice.clicked.connect(lambda: self.seed.setValue(random.randrange(2**31)))
        self.preset_fast.clicked.connect(lambda: self.apply(PRESETS["fast preview"]))
        self.preset_quality.clicked.connect(lambda: self.apply(PRESETS["quality"]))
        self.add_model_btn.clicked.connect(self._add_model_dir)
        self.model.currentIndexChanged.connect(self._model_picked)
        self.engine.currentIndexChanged.connect(self._engine_changed)
        self._engine_changed()
        for w in (self.cfg_audio, self.cfg_text, self.anneal_strength):
            w.valueChanged.connect(self.changed)
        for w in (self.steps, self.seed):
            w.valueChanged.connect(self.changed)
        for w in (self.anneal, self.area, self.aspect, self.segment_frames, self.device, self.dtype, self.model):
            w.currentIndexChanged.connect(self.changed)

    # -- models --------------------------------------------------------------------------------------

    def refresh_models(self) -> None:
        keep = self.model.currentData().key if self.model.currentData() else self.settings.get("model")
        self.model.blockSignals(True)
        self.model.clear()
        choices = model_choices(self.settings.model_dirs)
        for c in choices:
            self.model.addItem(c.label, c)
            self.model.setItemData(self.model.count() - 1, c.description or str(c.path), Qt.ItemDataRole.ToolTipRole)
        self._select_model(keep)
        self.model.blockSignals(False)
        self._model_changed()

    def _select_model(self, key: str) -> None:
        for i in range(self.model.count()):
            if self.model.itemData(i).key == key:
                self.model.setCurrentIndex(i)
                return

    def uses_model(self) -> bool:
        return self.engine.currentText() == ENGINE_WITH_MODEL

    def _engine_changed(self, *_args) -> None:
        on = self.uses_model()
        for w in (self.model, self.add_model_btn, self.device, self.dtype, self.cpu_threads, self.text,
                  self.cfg_audio, self.cfg_text, self.anneal, self.anneal_strength, self.steps,
                  self.segment_frames):
            w.setEnabled(on)
        self._model_changed()

    def _model_picked(self, *_args) -> None:
        self.apply_model_defaults()
        self._model_changed()

    def model_config(self):
        """The selected model's ``ModelConfig`` (read from its folder), or None when it cannot be read."""
        from models.errors import UserError

        c = self.model_choice()
        if c is None:
            return None
        try:
            return c.config()
        except (UserError, OSError, ValueError):
            return None

    def apply_model_defaults(self) -> None:
        """The sampling knobs of the selected model's config: each model brings its own defaults."""
        cfg = self.model_config()
        if cfg is None:
            return
        sc = cfg.sampling
        self.apply({"steps": sc.steps, "cfg_audio": sc.cfg_audio, "cfg_text": sc.cfg_text, "anneal": sc.anneal,
                    "anneal_strength": sc.anneal_strength})
        self._label_segments(float(cfg.cond.fps))

    def output_fps(self) -> float:
        """Frames per second of the output: the selected model's, or the instant engine's own."""
        if not self.uses_model():
            from models.instant.mouth import native_units

            return native_units()[0]
        cfg = self.model_config()
        return float(cfg.cond.fps) if cfg is not None else DEFAULT_FPS

    def _label_segments(self, fps: float) -> None:
        for i in range(1, self.segment_frames.count()):
            n = self.segment_frames.itemData(i)
            self.segment_frames.setItemText(i, f"{n} frames ({n / fps:.2f} s)")

    def _model_changed(self, *_args) -> None:
        if not self.uses_model():
            self.model_note.setText("The instant engine warps the picture itself: model, prompt, steps and "
                                    "guidance do not apply.")
            return
        c: ModelChoice | None = self.model.currentData()
        trained = any(self.model.itemData(i).trained for i in range(self.model.count()))
        if not trained:
            self.model_note.setText("No trained model found (resources/models is empty and no folder added). "
                                    "The untrained models check the pipeline only: their output is noise.")
        elif c is not None and not c.trained:
            self.model_note.setText("Untrained model: the output is noise; use it to check the pipeline.")
        else:
            self.model_note.setText(c.notice if c is not None else "")

    def _add_model_dir(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder with a model (config.json + model.safetensors)")
        if d:
            dirs = self.settings.model_dirs
            if d not in dirs:
                self.settings.set("model_dirs", dirs + [d])
            self.refresh_models()

    def model_choice(self) -> ModelChoice:
        return self.model.currentData()

    # -- values --------------------------------------------------------------------------------------

    def values(self) -> dict:
        c = self.model_choice()
        return {
            "engine": self.engine.currentText(),
            "model": c.key if c else "",
            "device": self.device.currentText(),
            "dtype": self.dtype.currentText(),
            "cpu_threads": self.cpu_threads.value(),
            "text": self.text.toPlainText(),
            "cfg_audio": round(self.cfg_audio.value(), 3),
            "cfg_text": round(self.cfg_text.value(), 3),
            "anneal": self.anneal.currentText(),
            "anneal_strength": round(self.anneal_strength.value(), 3),
            "steps": self.steps.value(),
            "seed": self.seed.value(),
            "random_seed": self.random_seed.isChecked(),
            "area": self.area.currentData(),
            "aspect": self.aspect.currentText(),
            "segment_frames": self.segment_frames.currentData(),
            "max_seconds": self.max_seconds.value(),
        }

    def apply(self, values: dict) -> None:
        """Set the widgets from a (partial) settings dict; the engine and the model first, since a newly
        picked model brings its sampling defaults, which the dict's own values then override."""
        def combo(box: QComboBox, v, by_data: bool = False) -> None:
            i = box.findData(v) if by_data else box.findText(str(v))
            if i >= 0:
                box.setCurrentIndex(i)

        first = [k for k in ("engine", "model") if k in values]
        for k, v in [(k, values[k]) for k in first] + [(k, v) for k, v in values.items() if k not in first]:
            if v is None:
                continue
            if k == "engine":
                combo(self.engine, v)
            elif k == "model":
                self._select_model(str(v))
            elif k in ("device", "dtype", "anneal", "aspect"):
                combo(getattr(self, k), v)
            elif k == "text":
                self.text.setPlainText(str(v))
            elif k in ("cfg_audio", "cfg_text", "anneal_strength", "max_seconds"):
                getattr(self, k).setValue(float(v))
            elif k in ("steps", "seed", "cpu_threads"):
                getattr(self, k).setValue(int(v))
            elif k == "random_seed":
                self.random_seed.setChecked(bool(v))
            elif k in ("area", "segment_frames"):
                combo(getattr(self, k), int(v), by_data=True)

    def load(self, settings) -> None:
        self.apply({k: settings.get(k) for k in self.values()})

    def save(self, settings) -> None:
        for k, v in self.values().items():
            settings.set(k, v)

    def generation_settings(self, fps: float | None = None):
        fps = fps or self.output_fps()
        v = self.values()
        seed = random.randrange(2**31) if v["random_seed"] else v["seed"]
        return GenerationSettings(
            steps=v["steps"], cfg_text=v["cfg_text"], cfg_audio=v["cfg_audio"], anneal=v["anneal"],
            anneal_strength=v["anneal_strength"], seed=seed, segment_frames=v["segment_frames"] or None,
            area=v["area"], fps=fps, max_frames=int(round(v["max_seconds"] * fps)) or None,
        )

    def show_used_seed(self, seed: int) -> None:
        self.used_seed.setText(f"seed used: {seed}")

