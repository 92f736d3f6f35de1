"""Generation controls: engine, model, device, precision, prompt, guidance, annealing, steps, seed, size,
length, presets. The rows that do not apply to the chosen engine are hidden, so each size control
means what it does for its engine and the panel fits a laptop screen's side column."""

from __future__ import annotations

import random

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
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
from app.settings import AREAS, DEFAULT_PRESET, INSTANT_AREAS, MODEL_OWN, PRESETS, SEGMENT_FRAMES
from app.widgets import SliderBox
from models.engines import GenerationSettings
from models.engines.registry import (
    DTYPES,
    ENGINES,
    INSTANT_ENGINE,
    MODEL_ENGINE,
    ModelChoice,
    available_devices,
    model_choices,
)
from models.flow import ANNEAL_SCHEDULES
from models.media import DEFAULT_FPS

ENGINE_WITH_MODEL = MODEL_ENGINE


def instant_max_side() -> int:
    """The instant engine's cap on the long side of a frame (its own constant, named in the Size label)."""
    from models.instant.engine import MAX_SIDE

    return int(MAX_SIDE)


def model_area(choice: ModelChoice | None) -> int | None:
    """The pixel area a model was trained at (its preset's default), or None when unreadable."""
    if choice is None:
        return None
    try:
        if choice.path:
            from models.checkpoint import read_config

            return int(read_config(choice.path).area)
        from models.config import get_preset

        return int(get_preset(choice.preset).area)
    except Exception:  # a broken folder is reported when it is loaded; here it only names a size
        return None


def default_engine(choices: list[ModelChoice], framing: str | None = None) -> tuple[str, ModelChoice | None]:
    """The engine (and model) a creator should get for a picture of ``framing`` without choosing.

    The first trained model whose config.json recommends it for this framing (it passed its bar,
    ``models.checkpoint.recommended_for``); otherwise the instant engine, which is always sharp."""
    from models.checkpoint import recommended_for

    for c in choices:
        if c.trained and recommended_for(c.path, framing):
            return ENGINE_WITH_MODEL, c
    return (INSTANT_ENGINE if any(s.name == INSTANT_ENGINE for s in ENGINES.values()) else ENGINE_WITH_MODEL), None


def _combo(min_chars: int = 10) -> QComboBox:
    """A combo box that does not widen its column to its longest item (the popup still shows it)."""
    box = QComboBox()
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(min_chars)
    return box


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

    # Rows shown only with the model engine (the instant engine has no network, steps or guidance).
    MODEL_ROWS = ("model", "device", "cpu_threads", "text", "cfg_audio", "audio_focus", "cfg_text", "anneal",
                  "anneal_strength", "motion_anchor", "still_lead", "steps", "segment_frames", "area", "presets")

    def __init__(self, settings, parent=None) -> None:
        super().__init__("4  Prompt and generation", parent)
        self.settings = settings
        self.engine_auto = True  # the engine follows default_engine() until the user picks one
        self._framing: str | None = None
        self.engine = _combo(12)
        for spec in ENGINES.values():
            self.engine.addItem(spec.name)
        self.engine.setToolTip("Instant: warps the picture itself in real time on a CPU, sharp and talking (model, "
                               "steps and guidance do not apply). OmniHuman model: the diffusion model.")
        self.model = _combo(12)
        self.add_model_btn = QToolButton()
        self.add_model_btn.setText("Add...")
        self.add_model_btn.setToolTip("Add a folder with a model (config.json + model.safetensors)")
        self.model_note = QLabel("")
        self.model_note.setWordWrap(True)
        self.model_note.setStyleSheet("color: #d08000")
        self.device = _combo(5)
        self.device.addItems(available_devices())
        self.dtype = _combo(7)
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
        self.audio_focus = SliderBox(0.0, 1.0, 0.05, 2)
        self.audio_focus.setToolTip("How much of the audio guidance is kept to the mouth (found on the picture): "
                                    "0 guides the whole frame; higher keeps the eyes and the face steady.")
        self.motion_anchor = SliderBox(0.0, 1.0, 0.05, 2)
        self.motion_anchor.setToolTip("How far each segment's lead-in frames are pulled back toward the picture: "
                                      "higher keeps the face over long takes, lower keeps the motion flowing "
                                      "from one segment to the next.")
        self.still_lead = QCheckBox("led by the picture")
        self.still_lead.setToolTip("The first segment has no earlier frames to start from: lead it with the picture "
                                   "standing still, as the anchored segments after it are (keeps the face from the "
                                   "first frame).")
        self.anneal = _combo(6)
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
        self.area = _combo(12)  # the model engine's sizes
        self.area.addItem("the model's own", 0)
        for name, a in AREAS.items():
            self.area.addItem(name, a)
        self.area.setToolTip("Frame size of the model's video: its own training size is what it does best; "
                             "the larger sizes need a GPU model trained for them.")
        self.instant_area = _combo(12)  # the instant engine's sizes
        for name, a in INSTANT_AREAS.items():
            self.instant_area.addItem(name if a else f"{name} (long side up to {instant_max_side()} px)", a)
        self.instant_area.setToolTip("The instant engine renders the picture itself: at its own resolution "
                                     f"(the long side scaled down to {instant_max_side()} px when larger), or "
                                     "smaller for speed. Every size runs on a CPU.")
        self.aspect = _combo(8)
        self.aspect.addItems(list(ASPECTS))
        self.aspect.setToolTip("Aspect ratio of the video: the picture's own, or a centre crop of it.")
        self.segment_frames = _combo(12)
        # A model generates best in segments as long as the windows it was trained on.
        self.segment_frames.addItem("the model's (its training length)", 0)
        for n in SEGMENT_FRAMES:
            self.segment_frames.addItem(f"{n} frames", n)
        self.max_seconds = QDoubleSpinBox()
        self.max_seconds.setRange(0, 600)
        self.max_seconds.setSpecialValueText("whole audio")
        self.max_seconds.setSuffix(" s")
        self.max_seconds.setToolTip("Render only the first seconds (quick tries); 'whole audio' renders it all. "
                                    "A take this cuts says so under Generate.")
        self.presets = QButtonGroup(self)
        self.presets.setExclusive(False)  # checked = the preset the values match; none when custom
        self.preset_fast = QPushButton("Fast preview")
        self.preset_default = QPushButton("Default")
        self.preset_quality = QPushButton("Quality")
        self._preset_buttons = {"fast preview": self.preset_fast, DEFAULT_PRESET: self.preset_default,
                                "quality": self.preset_quality}
        for b in self._preset_buttons.values():
            b.setCheckable(True)
            self.presets.addButton(b)
        self.preset_label = QLabel("")
        self.preset_label.setStyleSheet("color: #707070")

        self.form = form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self._rows: dict[str, QWidget] = {}

        def add(key: str, label: str, field: QWidget) -> None:
            form.addRow(label, field)
            self._rows[key] = field

        add("engine", "Engine", self.engine)
        add("model", "Model", _row(self.model, self.add_model_btn))
        add("note", "", self.model_note)
        add("device", "Device", _row(self.device, QLabel("Precision"), self.dtype, 1))
        add("cpu_threads", "Threads", _row(self.cpu_threads, 1))
        add("text", "Prompt", self.text)
        add("cfg_audio", "Audio CFG", self.cfg_audio)
        add("audio_focus", "Focus", self.audio_focus)
        add("cfg_text", "Text CFG", self.cfg_text)
        add("anneal", "Annealing", _row(self.anneal, 1))
        add("anneal_strength", "Strength", self.anneal_strength)
        add("motion_anchor", "Anchor", self.motion_anchor)
        add("still_lead", "First segment", _row(self.still_lead, 1))
        add("steps", "Steps", _row(self.steps, 1))
        add("seed", "Seed", _row(self.seed, self.dice, self.random_seed, 1))
        add("used_seed", "", self.used_seed)
        add("area", "Size", self.area)
        add("instant_area", "Size", self.instant_area)
        add("aspect", "Aspect", _row(self.aspect, 1))
        add("segment_frames", "Segment", self.segment_frames)
        add("max_seconds", "Length", _row(self.max_seconds, 1))
        add("presets", "Presets", _row(self.preset_fast, self.preset_default, self.preset_quality, 1))
        add("preset_label", "", self.preset_label)
        lay = QVBoxLayout(self)
        lay.addLayout(form)

        self.refresh_models()
        self.apply_model_defaults()  # what the user has not chosen yet comes from the model
        self.load(settings)
        self.dice.clicked.connect(lambda: self.seed.setValue(random.randrange(2**31)))
        for name, b in self._preset_buttons.items():
            b.clicked.connect(lambda _=False, n=name: self.apply_preset(n))
        self.add_model_btn.clicked.connect(self._add_model_dir)
        self.model.currentIndexChanged.connect(self._model_picked)
        self.engine.currentIndexChanged.connect(self._engine_changed)
        self.engine.activated.connect(self._engine_picked)  # the user's own choice (not programmatic)
        self._engine_changed()
        for w in (self.cfg_audio, self.audio_focus, self.cfg_text, self.anneal_strength, self.motion_anchor,
                  self.max_seconds):
            w.valueChanged.connect(self.changed)
        for w in (self.steps, self.seed):
            w.valueChanged.connect(self.changed)
        self.still_lead.toggled.connect(self.changed)
        for w in (self.anneal, self.area, self.instant_area, self.aspect, self.segment_frames, self.device,
                  self.dtype, self.model, self.engine):
            w.currentIndexChanged.connect(self.changed)
        self.changed.connect(self._show_active_preset)
        self._show_active_preset()
        self.form.setRowVisible(self._rows["used_seed"], False)  # until a run used one

    # -- engine and models ---------------------------------------------------------------------------

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

    def choices(self) -> list[ModelChoice]:
        return [self.model.itemData(i) for i in range(self.model.count())]

    def uses_model(self) -> bool:
        return self.engine.currentText() == ENGINE_WITH_MODEL

    def set_picture_framing(self, framing: str | None) -> None:
        """A new picture: while the user has not picked an engine, pick the one for this picture."""
        self._framing = framing
        if self.engine_auto:
            self._pick_default_engine()

    def _pick_default_engine(self) -> None:
        name, choice = default_engine(self.choices(), self._framing)
        if choice is not None:
            self._select_model(choice.key)
        i = self.engine.findText(name)
        if i >= 0:
            self.engine.setCurrentIndex(i)

    def _engine_picked(self, _index: int) -> None:
        self.engine_auto = False

    def _engine_changed(self, *_args) -> None:
        on = self.uses_model()
        for key in self.MODEL_ROWS:
            self.form.setRowVisible(self._rows[key], on)
        self.form.setRowVisible(self._rows["instant_area"], not on)
        self.form.setRowVisible(self._rows["preset_label"], on)
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
                    "anneal_strength": sc.anneal_strength, "audio_focus": sc.audio_focus,
                    "motion_anchor": sc.motion_anchor, "still_lead": sc.still_lead})
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
        c: ModelChoice | None = self.model.currentData()
        area = model_area(c)
        self.area.setItemText(0, f"the model's own ({round(area ** 0.5)} px)" if area else "the model's own")
        if not self.uses_model():
            self.model_note.setText("Instant warps the picture itself, in real time on a CPU: sharp, at the "
                                    "picture's own size, lips from the audio, body from the pose.")
            self.model_note.setStyleSheet("color: #707070")
            return
        self.model_note.setStyleSheet("color: #d08000")
        trained = any(ch.trained for ch in self.choices())
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

    # -- presets -------------------------------------------------------------------------------------

    def preset_values(self, name: str) -> dict:
        """The values of preset ``name``; its MODEL_OWN ones are the selected model's own sampling (its
        config's; left out when the model's config cannot be read)."""
        p = dict(PRESETS[name])
        own = [k for k, v in p.items() if v is MODEL_OWN]
        if own:
            cfg = self.model_config()
            for k in own:
                if cfg is None:
                    p.pop(k)
                else:
                    p[k] = getattr(cfg.sampling, k)
        return p

    def apply_preset(self, name: str) -> None:
        self.apply(self.preset_values(name))  # apply() shows the active one

    def active_preset(self) -> str:
        """The preset the current values match, or "" (custom)."""
        v = self.values()
        for name in PRESETS:
            p = self.preset_values(name)
            if all(v.get(k) == val or (isinstance(val, float) and abs(float(v.get(k, 0)) - val) < 1e-6)
                   for k, val in p.items()):
                return name
        return ""

    def _show_active_preset(self, *_args) -> None:
        active = self.active_preset()
        for name, b in self._preset_buttons.items():
            b.setChecked(name == active)
        self.preset_label.setText(f"Active preset: {active}" if active else "Custom settings (no preset matches)")

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
            "audio_focus": round(self.audio_focus.value(), 3),
            "motion_anchor": round(self.motion_anchor.value(), 3),
            "still_lead": self.still_lead.isChecked(),
            "cfg_text": round(self.cfg_text.value(), 3),
            "anneal": self.anneal.currentText(),
            "anneal_strength": round(self.anneal_strength.value(), 3),
            "steps": self.steps.value(),
            "seed": self.seed.value(),
            "random_seed": self.random_seed.isChecked(),
            "area": self.area.currentData(),
            "instant_area": self.instant_area.currentData(),
            "aspect": self.aspect.currentText(),
            "segment_frames": self.segment_frames.currentData(),
            "max_seconds": self.max_seconds.value(),
        }

    def apply(self, values: dict) -> None:
        """Set the widgets from a (partial) settings dict; a value of None is left as it is.

        The model and the engine first, since a newly picked model brings its sampling defaults, which
        the dict's own values then override. An engine named here counts as chosen; an empty one hands
        the choice back to ``default_engine`` (which may pick a model)."""
        def combo(box: QComboBox, v, by_data: bool = False) -> None:
            i = box.findData(v) if by_data else box.findText(str(v))
            if i >= 0:
                box.setCurrentIndex(i)

        before = self.model_choice()
        if values.get("model") is not None:
            self._select_model(str(values["model"]))
        if "engine" in values:
            v = values["engine"]
            if v and self.engine.findText(str(v)) >= 0:
                self.engine_auto = False
                combo(self.engine, v)
            else:
                self.engine_auto = True
                self._pick_default_engine()
        after = self.model_choice()
        if after is not None and (before is None or after.key != before.key):
            self.apply_model_defaults()  # also while the model picker's signal is not connected (at start)
        for k, v in values.items():
            if v is None or k in ("model", "engine"):
                continue
            if k in ("device", "dtype", "anneal", "aspect"):
                combo(getattr(self, k), v)
            elif k == "text":
                self.text.setPlainText(str(v))
            elif k in ("cfg_audio", "audio_focus", "cfg_text", "anneal_strength", "motion_anchor", "max_seconds"):
                getattr(self, k).setValue(float(v))
            elif k in ("steps", "seed", "cpu_threads"):
                getattr(self, k).setValue(int(v))
            elif k in ("random_seed", "still_lead"):
                getattr(self, k).setChecked(bool(v))
            elif k in ("area", "instant_area", "segment_frames"):
                combo(getattr(self, k), int(v), by_data=True)
        if hasattr(self, "preset_label"):
            self._show_active_preset()

    def load(self, settings) -> None:
        self.apply({k: settings.get(k) for k in self.values()})

    def save(self, settings) -> None:
        for k, v in self.values().items():
            settings.set(k, v)
        if self.engine_auto:
            settings.set("engine", "")

    def generation_settings(self, fps: float | None = None):
        fps = fps or self.output_fps()
        v = self.values()
        seed = random.randrange(2**31) if v["random_seed"] else v["seed"]
        area = v["area"] if self.uses_model() else v["instant_area"]
        return GenerationSettings(
            steps=v["steps"], cfg_text=v["cfg_text"], cfg_audio=v["cfg_audio"], anneal=v["anneal"],
            anneal_strength=v["anneal_strength"], audio_focus=v["audio_focus"],
            motion_anchor=v["motion_anchor"], still_lead=v["still_lead"], seed=seed,
            segment_frames=v["segment_frames"] or None,
            area=area or None, fps=fps, max_frames=int(round(v["max_seconds"] * fps)) or None,
        )

    def show_used_seed(self, seed: int) -> None:
        self.used_seed.setText(f"seed used: {seed}")
        self.form.setRowVisible(self._rows["used_seed"], True)
