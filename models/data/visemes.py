"""Phonemes -> visemes -> per-frame mouth parameters.

Lip shapes come from *what* is said, not from loudness: a table maps IPA phonemes to articulatory
targets, and coarticulation blends neighbouring targets with per-phoneme dominance functions (after
Cohen and Massaro: each segment pulls the articulators toward its target with a weight that decays
with the distance from its centre; bilabials dominate lip closure, vowels dominate jaw opening).

Mouth parameters, each in [0, 1], one row per video frame (``MOUTH_PARAMS`` order):

* ``jaw_open``  jaw drop, 0 = teeth together;
* ``lip_width`` mouth corners apart, 0.5 = neutral, 1 = spread (as in "ee");
* ``rounding``  lip protrusion and rounding ("oo", "w");
* ``closure``   lips pressed together (1 on m/b/p), or lower lip on the teeth (f/v, about 0.75).

The visible opening between the inner lips is ``mouth_gap = jaw_open * (1 - closure)``; the mouth
is drawn open exactly when ``mouth_gap > OPEN_THRESHOLD``. The same parameters are the targets of
the instant engine's audio-to-mouth regressor.
"""

from __future__ import annotations

import unicodedata

import numpy as np

from models.media import SAMPLE_RATE

MOUTH_PARAMS = ("jaw_open", "lip_width", "rounding", "closure")
NUM_MOUTH_PARAMS = len(MOUTH_PARAMS)
OPEN_THRESHOLD = 0.06
REST = (0.0, 0.5, 0.1, 0.0)

# Viseme classes: name -> (jaw_open, lip_width, rounding, closure), dominance (jaw/width/round, closure).
VISEMES: dict[str, tuple[tuple[float, float, float, float], float, float]] = {
    "rest": (REST, 0.6, 0.6),
    "bilabial": ((0.05, 0.45, 0.15, 1.0), 0.8, 8.0),  # m b p
    "labiodental": ((0.12, 0.5, 0.0, 0.75), 0.8, 5.0),  # f v
    "open": ((0.85, 0.6, 0.05, 0.0), 2.0, 1.0),  # a ɑ æ ʌ
    "mid": ((0.5, 0.6, 0.05, 0.0), 1.6, 1.0),  # e ɛ ə
    "wide": ((0.25, 0.95, 0.0, 0.0), 1.6, 1.0),  # i ɪ j
    "rounded_open": ((0.55, 0.3, 0.75, 0.0), 1.6, 1.0),  # o ɔ ɒ
    "rounded": ((0.22, 0.15, 1.0, 0.0), 1.8, 1.0),  # u ʊ y w
    "schwa": ((0.35, 0.5, 0.1, 0.0), 0.9, 1.0),  # ə ɐ ɜ ɚ
    "dental": ((0.2, 0.55, 0.05, 0.0), 0.7, 1.0),  # θ ð (tongue between teeth)
    "alveolar": ((0.15, 0.6, 0.05, 0.0), 0.5, 1.0),  # t d n l s z r
    "postalveolar": ((0.15, 0.35, 0.6, 0.0), 0.9, 1.0),  # ʃ ʒ tʃ dʒ
    "velar": ((0.3, 0.5, 0.1, 0.0), 0.3, 1.0),  # k g ŋ h x: the lips follow the neighbours
}
VISEME_NAMES = tuple(VISEMES)

_CONSONANTS = {
    **dict.fromkeys("mbpɓɸβ", "bilabial"),
    **dict.fromkeys("fvʋɱ", "labiodental"),
    **dict.fromkeys("θð", "dental"),
    **dict.fromkeys("tdnlszɹrɾɬɮʦʣɭɳʈɖɽɻ", "alveolar"),
    **dict.fromkeys("ʃʒɕʑʂʐ", "postalveolar"),
    **dict.fromkeys("kgɡŋhxɣχʁqɢʔɦħʕçʝ", "velar"),
    **dict.fromkeys("jʎɲ", "wide"),
    **dict.fromkeys("wɥʍ", "rounded"),
}
_VOWELS = {
    **dict.fromkeys("aɑæʌɶä", "open"),
    **dict.fromkeys("eɛøœɘ", "mid"),
    **dict.fromkeys("iɪɨɯ", "wide"),
    **dict.fromkeys("oɔɒɤ", "rounded_open"),
    **dict.fromkeys("uʊyʉʏɵ", "rounded"),
    **dict.fromkeys("əɐɜɚɞᵻ", "schwa"),
}
_VOWEL_CHARS = set(_VOWELS)


def _base_chars(ipa: str) -> list[str]:
    """IPA letters with diacritics, length and tone marks removed."""
    out = []
    for ch in unicodedata.normalize("NFD", ipa):
        if unicodedata.combining(ch) or ch in "ːˑˈˌ.'-_0123456789ʰʲʷˠˤ̃ᵝ":
            continue
        out.append(ch)
    return out


def phoneme_visemes(ipa: str) -> list[str]:
    """One viseme per articulatory target of a phoneme: a diphthong like "aɪ" gives two."""
    chars = _base_chars(ipa)
    if not chars:
        return ["rest"]
    vowels = [c for c in chars if c in _VOWEL_CHARS]
    if vowels:
        seq = [_VOWELS[c] for c in vowels]
        # Consonant + vowel in one event (rare) keeps the consonant first: "ju" -> wide, rounded.
        if chars[0] not in _VOWEL_CHARS and chars[0] in _CONSONANTS:
            seq = [_CONSONANTS[chars[0]]] + seq
        return seq[:2] if len(seq) > 1 and seq[0] != seq[1] else seq[:1]
    for c in chars:
        if c in _CONSONANTS:
            return [_CONSONANTS[c]]
    return ["alveolar"]


def _voiced_end(start: float, end: float, energy: np.ndarray | None, hop: float) -> float:
    """The last time in ``[start, end]`` where the audio is not silent (trims pauses in spans)."""
    if energy is None:
        return end
    a, b = int(start / hop), int(np.ceil(end / hop))
    seg = energy[a:b]
    loud = np.nonzero(seg)[0]
    if loud.size == 0:
        return min(end, start + 0.03)
    return max(start + 0.03, min(end, (a + loud[-1] + 1) * hop))


def viseme_targets(
    phonemes: list[tuple[str, float, float]], audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE,
) -> list[tuple[str, float, float]]:
    """``[(viseme, start_s, end_s)]`` with silences made explicit as ``rest``.

    Spans longer than a phoneme can be (espeak puts pauses inside them) are cut where the audio goes
    quiet when ``audio`` is given, else capped to a plausible length.
    """
    energy, hop = None, 0.01
    if audio is not None and len(audio):
        n = int(hop * sample_rate)
        frames = len(audio) // n
        rms = np.sqrt((audio[: frames * n].reshape(frames, n).astype(np.float64) ** 2).mean(1))
        thr = max(0.02 * float(rms.max(initial=0.0)), 1e-4)
        energy = rms > thr
    out: list[tuple[str, float, float]] = []
    t_prev = 0.0
    for ipa, start, end in phonemes:
        if start > t_prev + 0.02:
            out.append(("rest", t_prev, start))
        vis = phoneme_visemes(ipa)
        cap = 0.45 if vis[-1] not in ("bilabial", "labiodental", "alveolar", "velar", "dental") else 0.2
        stop = _voiced_end(start, end, energy, hop) if energy is not None else min(end, start + cap)
        step = (stop - start) / len(vis)
        for i, v in enumerate(vis):
            out.append((v, start + i * step, start + (i + 1) * step))
        if stop < end - 0.02:
            out.append(("rest", stop, end))
        t_prev = end
    return out


def mouth_track(
    phonemes: list[tuple[str, float, float]],
    fps: float,
    num_frames: int,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    time_offset: float = 0.0,
) -> np.ndarray:
    """Per-frame mouth parameters ``(T, 4)`` float32 from phoneme spans ``[(ipa, start_s, end_s)]``.

    Frame ``f`` covers ``[f / fps, (f + 1) / fps)``; its row averages the blended articulation over
    that interval (closure takes the maximum, so a 30 ms /p/ always closes the lips in some frame).
    ``time_offset`` is added to every phoneme time (the speech starts that late in the clip).
    """
    segs = viseme_targets(phonemes, audio, sample_rate)
    res = 0.005
    n = max(1, int(np.ceil(num_frames / fps / res)))
    t = (np.arange(n) + 0.5) * res
    if not segs:
        track = np.tile(np.array(REST, np.float32), (num_frames, 1))
        return track
    tgt = np.array([VISEMES[v][0] for v, _, _ in segs], np.float64)  # (S, 4)
    dom = np.array([[VISEMES[v][1]] * 3 + [VISEMES[v][2]] for v, _, _ in segs], np.float64)  # (S, 4)
    centre = np.array([(s + e) / 2 + time_offset for _, s, e in segs])
    half = np.array([max((e - s) / 2, 0.01) for _, s, e in segs])
    # Dominance: flat inside the segment, then an exponential fall-off outside it: ~35 ms for the
    # jaw and lip shape, ~12 ms for closure (lips snap shut and open again).
    dist = np.maximum(np.abs(t[:, None] - centre[None]) - half[None], 0.0)  # (n, S)
    decay = np.array([0.035, 0.035, 0.035, 0.012])
    w = np.exp(-dist[:, :, None] / decay) * dom[None]  # (n, S, 4)
    # Before the first and after the last segment the mouth rests.
    rest_w = np.where((t < centre[0] - half[0]) | (t > centre[-1] + half[-1]), 1.0, 1e-3)
    num = (w * tgt[None]).sum(1) + rest_w[:, None] * np.array(REST)
    den = w.sum(1) + rest_w[:, None]
    fine = num / den  # (n, 4)
    frame_of = np.minimum((t * fps).astype(np.int64), num_frames - 1)
    track = np.zeros((num_frames, 4), np.float64)
    counts = np.bincount(frame_of, minlength=num_frames).astype(np.float64)
    for c in range(3):
        track[:, c] = np.bincount(frame_of, weights=fine[:, c], minlength=num_frames) / np.maximum(counts, 1)
    closure = np.zeros(num_frames)
    np.maximum.at(closure, frame_of, fine[:, 3])
    track[:, 3] = closure
    track[counts == 0] = REST
    return np.clip(track, 0.0, 1.0).astype(np.float32)


def mouth_gap(track: np.ndarray) -> np.ndarray:
    """Opening between the inner lips, ``(T,)``: ``jaw_open * (1 - closure)``."""
    return track[..., 0] * (1.0 - track[..., 3])


def mouth_is_open(track: np.ndarray) -> np.ndarray:
    """Boolean ``(T,)``: the mouth is drawn open in these frames."""
    return mouth_gap(track) > OPEN_THRESHOLD


def rest_track(num_frames: int) -> np.ndarray:
    return np.tile(np.array(REST, np.float32), (num_frames, 1))
