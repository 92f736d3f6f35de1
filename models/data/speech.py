"""Synthetic speech with per-phoneme timings, from the espeak-ng library, and the speech bank.

The espeak-ng command line does not report when each phoneme is spoken, but the library does: with
``espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_PHONEME_IPA`` every synthesised buffer arrives
with ``espeakEVENT_PHONEME`` events carrying the IPA name and the sample position. We call it
through ctypes (no compiled extension), in synchronous mode, and resample 22050 Hz -> 16 kHz.

The speech bank is a folder built by ``python main.py speech-bank`` (or on the fly by ``synth``):

* ``audio.npy``  int16, every utterance at 16 kHz, concatenated;
* ``bank.json``  per utterance: text, voice, language, rate, pitch, range, style (spoken, sung,
  chanted), sample offset and length, and its phonemes as ``[ipa, start_s, end_s]``.

Everything is derived from a seed, and espeak-ng is deterministic, so the same seed on the same
espeak-ng version gives the same bank byte for byte.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.errors import UserError
from models.media import SAMPLE_RATE

_ESPEAK_RATE = 22050

# speak_lib.h
_EVENT_PHONEME = 7
_EVENT_MSG_TERMINATED = 6
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_SSML = 0x10
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Utterance:
    """One synthesised line: mono float32 audio at 16 kHz and its phonemes ``(ipa, start_s, end_s)``."""

    audio: np.ndarray
    phonemes: list[tuple[str, float, float]]
    text: str = ""
    voice: str = ""
    language: str = ""
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    style: str = "spoken"
    meta: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


class Espeak:
    """The espeak-ng library, loaded once per process. Not thread safe: calls hold a lock."""

    _instance: Espeak | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            raise UserError(
                "espeak-ng library not found: install it (Debian/Ubuntu: apt-get install espeak-ng libespeak-ng1)"
            ) from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 200, None, _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
        )
        if rate <= 0:
            raise UserError("espeak-ng failed to initialise (is espeak-ng-data installed?)")
        self.sample_rate = rate
        self._lib = lib
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._samples = 0
        # Keep a reference: ctypes callbacks must outlive every call into the library.
        self._cb = _CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self._cb)

    @classmethod
    def get(cls) -> Espeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = Espeak()
            return cls._instance

    def _on_audio(self, wav, num_samples, events) -> int:
        i = 0
        while events[i].type != 0:  # espeakEVENT_LIST_TERMINATED
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                raw = bytes(ev.id.string).split(b"\0", 1)[0]
                # The event's sample field is relative to the whole message, at the library rate.
                self._events.append((raw.decode("utf-8", "replace"), int(ev.audio_position)))
            i += 1
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
            self._samples += num_samples
        return 0

    def _synthesize_here(
        self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, ssml: bool,
    ) -> tuple[np.ndarray, list[tuple[str, int]], int]:
        with self._lock:
            lib = self._lib
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise UserError(f"espeak-ng voice '{voice}' not found (see `espeak-ng --voices`)")
            lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            lib.espeak_SetParameter(_PARAM_RANGE, int(pitch_range), 0)
            lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
            self._chunks, self._events, self._samples = [], [], 0
            data = text.encode("utf-8") + b"\0"
            buf = ctypes.create_string_buffer(data)
            flags = _CHARS_UTF8 | (_SSML if ssml else 0)
            err = lib.espeak_Synth(buf, len(data), 0, 0, 0, flags, None, None)
            lib.espeak_Synchronize()
            if err != 0:
                raise RuntimeError(f"espeak-ng failed on {text!r} (error {err})")
            pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return pcm, list(self._events), self.sample_rate


def _synthesize_fresh(text, voice, rate, pitch, pitch_range, ssml):
    """Synthesise in a forked child that loads espeak-ng afresh.

    espeak-ng 1.51 keeps state between utterances (pitch flutter position, ``rand()`` for breath
    and whisper noise), so the same call gives slightly different audio each time within one
    process. A fresh library per utterance makes every utterance a function of its arguments only.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            pcm, events, rate_hz = Espeak()._synthesize_here(text, voice, rate, pitch, pitch_range, ssml)
            payload = pickle.dumps((pcm, events, rate_hz, None))
        except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
            payload = pickle.dumps((None, None, None, (type(e).__name__, str(e))))
            code = 1
        try:
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        payload = f.read()
    os.waitpid(pid, 0)
    pcm, events, rate_hz, err = pickle.loads(payload)
    if err is not None:
        if err[0] == "UserError":
            raise UserError(err[1])
        raise RuntimeError(f"espeak-ng: {err[1]}")
    return pcm, events, rate_hz


def synthesize(
    text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, pitch_range: int = 50,
    ssml: bool = False,
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Speak ``text``; returns float32 audio at 16 kHz and ``[(ipa, start_s, end_s)]``.

    Deterministic: the same arguments give the same samples (see ``_synthesize_fresh``).
    """
    if hasattr(os, "fork"):
        pcm, events, rate_hz = _synthesize_fresh(text, voice, rate, pitch, pitch_range, ssml)
    else:  # no fork: in-process, close but not bit-exact between calls
        pcm, events, rate_hz = Espeak.get()._synthesize_here(text, voice, rate, pitch, pitch_range, ssml)
    audio = resample(pcm.astype(np.float32) / 32768.0, rate_hz, SAMPLE_RATE)
    return audio, _phoneme_spans(events, len(audio) / SAMPLE_RATE)


def _phoneme_spans(events: list[tuple[str, int]], duration: float) -> list[tuple[str, float, float]]:
    """Phoneme events (name, start ms) -> spans ending where the next one starts."""
    spans = []
    # "(en)"-style events mark a switch of language, not a sound.
    evs = [(n, ms / 1000.0) for n, ms in events if n.strip() and not n.startswith("(")]
    for i, (name, start) in enumerate(evs):
        end = evs[i + 1][1] if i + 1 < len(evs) else duration
        if end > start:
            spans.append((name, round(start, 4), round(min(end, duration), 4)))
    return spans


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Band-limited resampling by windowed-sinc interpolation (deterministic, numpy only)."""
    if src == dst or len(x) == 0:
        return x.astype(np.float32)
    n_out = int(round(len(x) * dst / src))
    ratio = dst / src
    cutoff = min(1.0, ratio) * 0.95  # of the input Nyquist
    half = 16  # taps on each side, in input samples (scaled when downsampling)
    width = int(np.ceil(half / min(1.0, ratio)))
    t = np.arange(n_out) / ratio  # output sample positions in input samples
    base = np.floor(t).astype(np.int64)
    out = np.zeros(n_out, np.float64)
    xp = np.pad(x.astype(np.float64), (width + 1, width + 1))
    for k in range(-width, width + 1):
        idx = base + k
        d = t - idx
        w = cutoff * np.sinc(cutoff * d) * (0.5 + 0.5 * np.cos(np.pi * np.clip(d / (width + 1), -1, 1)))
        out += xp[idx + width + 1] * w
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Text and voices for the bank

# Languages espeak-ng speaks well, with short phrases in each, so phonemes and prosody vary.
PHRASES: dict[str, tuple[str, ...]] = {
    "en-us": (
        "Hello there, how are you doing today?", "I think we should go to the beach this weekend.",
        "Maybe the weather will be better tomorrow morning.", "Please pass me the blue book on the table.",
        "We made a big pot of soup for everybody.", "My favourite food is pizza with olives.",
        "Look at the moon, it is full and bright tonight.", "Can you believe what happened at the meeting?",
        "The quick brown fox jumps over the lazy dog.", "Welcome back to the show, everyone!",
        "Today I want to tell you a very short story.", "Put the map in the bag before we leave.",
        "Oh wow, that was absolutely wonderful!", "Remember to water the plants every Friday.",
        "Five fluffy puppies played in the field.", "Who knows why the ocean looks so blue?",
    ),
    "en": (
        "Would you fancy a cup of tea?", "The train to London leaves at half past nine.",
        "I rather enjoyed the film, to be honest.", "Mind the gap between the train and the platform.",
        "Bob bought a bag of bread and butter.", "We went walking in the hills all afternoon.",
    ),
    "de": (
        "Guten Morgen, wie geht es dir heute?", "Das Wetter ist wunderbar, lass uns spazieren gehen.",
        "Ich habe einen kleinen Hund und eine Katze.", "Morgen fahren wir mit dem Zug nach Berlin.",
    ),
    "fr": (
        "Bonjour tout le monde, comment allez-vous?", "Nous allons au marché acheter des pommes.",
        "Je voudrais un café au lait, s'il vous plaît.", "Le petit chat dort sur le canapé bleu.",
    ),
    "es": (
        "Hola, me llamo Pablo y vivo en Madrid.", "Mañana vamos a la playa con mis amigos.",
        "La música está muy alta esta noche.", "Me gusta mucho la fruta fresca del mercado.",
    ),
    "it": (
        "Buongiorno, vorrei una pizza margherita.", "Andiamo al mare questa estate, va bene?",
        "Il mio fratello suona la chitarra molto bene.",
    ),
    "pt": ("Bom dia, tudo bem com você?", "Vamos comer pão com manteiga no café."),
    "nl": ("Goedemorgen, hoe gaat het met je?", "Wij fietsen morgen naar het bos."),
    "sv": ("Hej, hur mår du idag?", "Vi ska bada i sjön i morgon."),
    "pl": ("Dzień dobry, jak się masz?", "Mama robi pyszne pierogi w niedzielę."),
    "cmn-latn-pinyin": ("ni3 hao3, wo3 hen3 gao1 xing4 ren4 shi ni3.", "jin1 tian1 tian1 qi4 hen3 hao3."),
    "ja": ("こんにちは、おげんきですか。", "きょうは いい てんき ですね。"),
    "hi": ("नमस्ते, आप कैसे हैं?", "मुझे चाय बहुत पसंद है।"),
    "sw": ("Habari yako, rafiki yangu?", "Tunakwenda sokoni kununua matunda."),
}
# espeak-ng voice variants: the base voice with a different timbre (female, male, old, whisper...).
VARIANTS = ("", "+f1", "+f2", "+f3", "+f4", "+m1", "+m3", "+m5", "+m7", "+croak", "+klatt", "+whisper")
SING_SYLLABLES = ("la", "na", "da", "doo", "ma", "oh", "yeah", "hey", "ba", "pa", "mi", "bo", "wee")
STYLES = ("spoken", "sung", "chanted")


def _sung_ssml(rng: np.random.Generator, chanted: bool) -> tuple[str, str]:
    """A melody of syllables as SSML with a pitch and length per note. Returns (ssml, plain text)."""
    n = int(rng.integers(6, 14))
    scale = (0, 2, 4, 5, 7, 9, 11, 12)
    syl = [SING_SYLLABLES[int(rng.integers(len(SING_SYLLABLES)))] for _ in range(3)]
    notes, words = [], []
    degree = int(rng.integers(0, 4))
    for i in range(n):
        word = syl[i % len(syl)] if chanted else syl[int(rng.integers(len(syl)))]
        if chanted:
            semitone = 0 if i % 4 != 3 else 5
            length = "medium"
        else:
            degree = int(np.clip(degree + rng.integers(-2, 3), 0, len(scale) - 1))
            semitone = scale[degree]
            length = ("slow", "x-slow", "medium")[int(rng.integers(3))]
        pct = int(round((2 ** (semitone / 12) - 1) * 100))
        notes.append(f'<prosody pitch="+{pct}%" rate="{length}">{word}</prosody>')
        words.append(word)
    return "<speak>" + " ".join(notes) + "</speak>", " ".join(words)


def random_utterance(rng: np.random.Generator, style: str | None = None) -> Utterance:
    """Draw a language, voice variant, rate, pitch and style, and synthesise one line."""
    if style is None:
        style = STYLES[int(rng.choice(3, p=[0.8, 0.12, 0.08]))]
    langs = sorted(PHRASES)
    # Favour English (the captions are English) but keep many languages in the mix.
    weights = np.array([6.0 if lang.startswith("en") else 1.0 for lang in langs])
    lang = langs[int(rng.choice(len(langs), p=weights / weights.sum()))]
    variant = VARIANTS[int(rng.integers(len(VARIANTS)))]
    if variant == "+whisper" and style != "spoken":
        variant = ""
    voice = lang + variant
    pitch = int(rng.integers(25, 80))
    if style == "spoken":
        phrases = PHRASES[lang]
        k = 1 + int(rng.random() < 0.35)
        text = " ".join(phrases[int(i)] for i in rng.choice(len(phrases), size=k, replace=False))
        rate = int(rng.integers(120, 260))
        rng_pitch = int(rng.integers(20, 90))
        audio, ph = synthesize(text, voice, rate, pitch, rng_pitch)
        shown = text
    else:
        ssml, shown = _sung_ssml(rng, chanted=style == "chanted")
        rate = int(rng.integers(90, 150))
        rng_pitch = 10 if style == "sung" else 30
        audio, ph = synthesize(ssml, voice, rate, pitch, rng_pitch, ssml=True)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0:
        audio = (audio * (0.9 / peak) * float(rng.uniform(0.5, 1.0))).astype(np.float32)
    return Utterance(audio, ph, shown, voice, lang, rate, pitch, rng_pitch, style)


# ----------------------------------------------------------------------------------------------
# The bank on disk


class SpeechBank:
    """A built speech bank: ``len(bank)`` utterances, ``bank[i]`` -> :class:`Utterance`."""

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        meta_path = root / "bank.json"
        if not meta_path.exists():
            raise UserError(f"{root}: not a speech bank (no bank.json); build one with `main.py speech-bank`")
        self.root = root
        self.meta = json.loads(meta_path.read_text())
        self.audio = np.load(root / "audio.npy", mmap_mode="r")
        self.items = self.meta["utterances"]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Utterance:
        it = self.items[i]
        a = np.asarray(self.audio[it["offset"]: it["offset"] + it["length"]], np.float32) / 32767.0
        ph = [(p, float(s), float(e)) for p, s, e in it["phonemes"]]
        return Utterance(
            a, ph, it["text"], it["voice"], it["language"], it["rate"], it["pitch"], it["pitch_range"],
            it["style"],
        )


def _bank_item(args: tuple[int, int]) -> Utterance:
    seed, i = args
    return random_utterance(np.random.default_rng([seed, i, 0x5EEC]))


def build_speech_bank(out: str | Path, count: int, seed: int = 0, progress=None, workers: int = 1) -> SpeechBank:
    """Synthesise ``count`` utterances from ``seed`` into ``out`` (int16 audio + JSON timings).

    Utterance ``i`` depends only on ``(seed, i)``, so any number of ``workers`` gives the same bank.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pcm, items, offset = [], [], 0
    jobs = [(seed, i) for i in range(count)]
    if workers > 1:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(workers)
        results = pool.imap(_bank_item, jobs, chunksize=4)
    else:
        pool, results = None, map(_bank_item, jobs)
    try:
        for i, u in enumerate(results):
            q = (np.clip(u.audio, -1, 1) * 32767.0).round().astype(np.int16)
            pcm.append(q)
            items.append({
                "text": u.text, "voice": u.voice, "language": u.language, "rate": u.rate, "pitch": u.pitch,
                "pitch_range": u.pitch_range, "style": u.style, "offset": offset, "length": int(len(q)),
                "phonemes": [[p, s, e] for p, s, e in u.phonemes],
            })
            offset += len(q)
            if progress:
                progress(i + 1, count)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    audio = np.concatenate(pcm) if pcm else np.zeros(0, np.int16)
    np.save(out / "audio.npy", audio)
    meta = {"version": 1, "sample_rate": SAMPLE_RATE, "seed": seed, "utterances": items}
    (out / "bank.json").write_text(json.dumps(meta, ensure_ascii=False, separators=(",", ":")))
    return SpeechBank(out)
