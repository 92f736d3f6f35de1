"""Captions for synthetic clips, written from the character's and the motion's parameters.

The text condition learns from these, so every caption says who is shown (kind, hair, clothes, held
object), how (framing, drawing style, background) and what happens (talking, singing, an action),
with a few phrasings so the model does not learn one template.
"""

from __future__ import annotations

import numpy as np

_COLOR_NAMES = {
    "black": (25, 25, 25), "white": (245, 245, 245), "gray": (140, 140, 140), "silver": (195, 195, 200),
    "red": (200, 40, 40), "dark red": (120, 20, 20), "orange": (240, 140, 40), "yellow": (240, 220, 60),
    "green": (60, 170, 70), "dark green": (30, 90, 40), "teal": (40, 150, 150), "blue": (50, 90, 210),
    "light blue": (130, 180, 240), "navy": (30, 40, 100), "purple": (130, 60, 170), "pink": (240, 130, 180),
    "brown": (120, 75, 40), "beige": (225, 200, 160), "blond": (225, 195, 120),
}


def color_name(rgb) -> str:
    c = np.asarray(rgb, np.float32)
    return min(_COLOR_NAMES, key=lambda n: float(((np.asarray(_COLOR_NAMES[n]) - c) ** 2).sum()))


_KIND = {
    "human": ("a cartoon person", "a toon character", "an animated person"),
    "cat": ("a cartoon cat", "a personified cat"), "bear": ("a cartoon bear", "a friendly toon bear"),
    "bunny": ("a cartoon bunny", "a toon rabbit"), "robot": ("a cartoon robot", "a boxy toon robot"),
    "alien": ("a cartoon alien", "a little toon alien"),
}
_TOP = {"tshirt": "t-shirt", "longsleeve": "long-sleeved shirt", "dress": "dress", "jacket": "jacket",
        "tank": "tank top"}
_FRAMING = {"portrait": ("close-up portrait", "head and shoulders shot"),
            "half": ("half-body shot", "medium shot from the waist up"),
            "full": ("full-body shot", "wide shot showing the whole body"),
            "face": ("extreme close-up of the face", "close-up of the face")}
_STYLE = {"flat": "flat colours", "outlined": "bold outlines", "shaded": "cel shading",
          "textured": "a paper texture"}
_BACKGROUND = {"solid": "a plain backdrop", "gradient": "a gradient backdrop", "stripes": "a striped wall",
               "dots": "a polka-dot wall", "room": "a room with a window", "sky": "a sunny sky over green hills",
               "checker": "a checkered wall"}
_HELD = {"microphone": "holding a microphone", "maracas": "shaking maracas", "ukulele": "playing a ukulele"}
_ACTION = {
    "wave": ("waves at the camera", "waves hello"), "point": ("points to the side", "points at something"),
    "clap": ("claps", "claps their hands"), "dance": ("dances", "does a little dance"),
    "turn": ("turns to the side and back", "turns sideways"), "shrug": ("shrugs", "shrugs their shoulders"),
    "arms_up": ("raises both arms", "throws their arms up"), "idle": ("stands still", "waits calmly"),
}
_SPEECH = {
    "spoken": ("talks to the camera", "speaks", "is talking"),
    "sung": ("sings", "sings a melody"),
    "chanted": ("chants a rhythm", "chants"),
}


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def make_caption(rng: np.random.Generator, character: dict, framing: str, action: str | None,
                 speech_style: str | None, language: str | None = None, gesture: str | None = None,
                 driven_by_video: bool = False) -> str:
    who = _pick(rng, _KIND[character["kind"]])
    parts = []
    if character["kind"] == "human" and character["hair"] != "none":
        parts.append(f"{color_name(character['hair_color'])} {character['hair']} hair")
    elif character["kind"] == "human":
        parts.append("no hair")
    top = f"{color_name(character['top_color'])} {_TOP[character['top']]}"
    parts.append(("an " if top[0] in "aeiou" else "a ") + top)
    if character.get("glasses"):
        parts.append("glasses")
    desc = f"{who} with " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])
    if character.get("held"):
        desc += ", " + _HELD[character["held"]] + ","
    acts = []
    if speech_style:
        verb = _pick(rng, _SPEECH[speech_style])
        if language and not language.startswith("en") and speech_style == "spoken":
            verb += f" in {_LANGUAGE.get(language.split('-')[0], 'another language')}"
        acts.append(verb)
    if action and action != "idle":
        acts.append(_pick(rng, _ACTION[action]))
    elif gesture in ("both_hands", "big") and speech_style:
        acts.append("gestures with both hands")
    if not acts:
        acts.append(_pick(rng, ("looks at the camera", "stands and blinks", "listens quietly")))
    if driven_by_video:
        acts.append("copying a real person's movement")
    action_text = " and ".join(acts[:2]) if len(acts) <= 2 else ", ".join(acts[:-1]) + " and " + acts[-1]
    shot = _pick(rng, _FRAMING[framing])
    bg = _BACKGROUND.get(character.get("background"), "a plain backdrop")
    style = _STYLE[character["style"]]
    form = int(rng.integers(3))
    if form == 0:
        text = f"{desc} {action_text}. {shot.capitalize()}, drawn with {style}, in front of {bg}."
    elif form == 1:
        text = f"{shot.capitalize()} of {desc} who {action_text}, in front of {bg}; {style}."
    else:
        text = f"In front of {bg}, {desc} {action_text}. {shot.capitalize()} with {style}."
    return text[0].upper() + text[1:]


_LANGUAGE = {"de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese",
             "nl": "Dutch", "sv": "Swedish", "pl": "Polish", "cmn": "Mandarin", "ja": "Japanese",
             "hi": "Hindi", "sw": "Swahili"}
