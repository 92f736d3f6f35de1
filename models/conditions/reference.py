"""What is in the reference picture: the person's keypoints, framing and whether a face is visible.

``analyze_reference`` never raises for a valid image: when no person is found it says so in
``message`` and falls back to treating the whole image as a portrait, with a template skeleton
(``portrait_template``) so retargeting still has proportions to work with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import keypoints as kpl
from models.conditions.pose import VISIBLE, PoseExtractor, person_present

FRAMINGS = ("portrait", "half_body", "full_body")


@dataclass
class ReferenceInfo:
    keypoints: np.ndarray  # (K, 3) in the layout, normalised to the image
    person_found: bool
    face_visible: bool
    framing: str  # one of FRAMINGS
    bbox: tuple[float, float, float, float]  # (x0, y0, x1, y1) of the person, normalised
    message: str
    width: int = 0
    height: int = 0

    @property
    def aspect(self) -> float:
        return self.width / self.height if self.height else 1.0


def _visible(kp: np.ndarray, *names: str, thr: float = VISIBLE) -> bool:
    return all(kp[kpl.INDEX[n], 2] >= thr for n in names)


def classify_framing(kp: np.ndarray) -> str:
    """Framing of one pose ``(K, 3)``: full body when legs down to the ankles are in the picture,
    half body when the hips are, otherwise portrait (head and shoulders)."""
    in_frame = kp.copy()
    out = (kp[:, 0] < 0) | (kp[:, 0] > 1) | (kp[:, 1] < 0) | (kp[:, 1] > 1)
    in_frame[out, 2] = 0.0
    ankles = _visible(in_frame, "left_ankle") or _visible(in_frame, "right_ankle")
    knees = _visible(in_frame, "left_knee") or _visible(in_frame, "right_knee")
    hips = _visible(in_frame, "left_hip") or _visible(in_frame, "right_hip")
    if ankles and knees:
        return "full_body"
    if hips:
        return "half_body"
    return "portrait"


def person_bbox(kp: np.ndarray, thr: float = 0.3, pad: float = 0.08) -> tuple[float, float, float, float]:
    """Box around the confident points, padded by ``pad`` of its size and clipped to the frame."""
    pts = kp[kp[:, 2] >= thr, :2]
    if len(pts) == 0:
        return (0.0, 0.0, 1.0, 1.0)
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    # The head extends above the eyes; landmarks stop at the eyebrows and ears.
    head = kp[[kpl.INDEX["left_ear"], kpl.INDEX["right_ear"], kpl.INDEX["nose"]]]
    if (head[:, 2] >= thr).any():
        ear_span = abs(head[0, 0] - head[1, 0]) if (head[:2, 2] >= thr).all() else 0.1
        y0 = min(y0, head[head[:, 2] >= thr, 1].min() - 0.9 * ear_span)
    px, py = pad * (x1 - x0 + 1e-3), pad * (y1 - y0 + 1e-3)
    box = (max(0.0, x0 - px), max(0.0, y0 - py), min(1.0, x1 + px), min(1.0, y1 + py))
    return tuple(float(v) for v in box)


def portrait_template(aspect: float = 1.0) -> np.ndarray:
    """A frontal head-and-shoulders skeleton ``(K, 3)`` filling a frame of ``aspect`` (w / h).

    Used when no person is found: the whole image is taken as a portrait. Sizes are set in units of
    the frame's height and converted to x with the aspect, so the face is not stretched.
    """
    kp = np.zeros((kpl.NUM_KEYPOINTS, 3), np.float32)
    cx = 0.5

    def put(name: str, dx_h: float, y: float, conf: float = 1.0) -> None:
        # dx_h: horizontal offset from the centre in units of frame height (person's left = image right)
        kp[kpl.INDEX[name]] = (cx + dx_h / aspect, y, conf)

    eye_y, nose_y, mouth_y = 0.38, 0.47, 0.56
    put("nose", 0.0, nose_y)
    for side, s in (("left", 1), ("right", -1)):
        put(f"{side}_eye_inner", s * 0.035, eye_y)
        put(f"{side}_eye", s * 0.065, eye_y)
        put(f"{side}_eye_outer", s * 0.095, eye_y)
        put(f"{side}_ear", s * 0.15, eye_y + 0.05)
        put(f"mouth_{side}", s * 0.05, mouth_y)
        put(f"{side}_shoulder", s * 0.33, 0.92)
        put(f"{side}_elbow", s * 0.42, 1.35, 0.0)
        put(f"{side}_hip", s * 0.2, 1.55, 0.0)
    f = {name: kpl.FACE_START + i for i, (name, _) in enumerate(kpl.FACE_POINTS)}

    def face(name: str, dx_h: float, y: float) -> None:
        kp[f[name]] = (cx + dx_h / aspect, y, 1.0)

    face("lip_corner_left", 0.05, mouth_y)
    face("lip_corner_right", -0.05, mouth_y)
    face("lip_upper_outer", 0.0, mouth_y - 0.02)
    face("lip_lower_outer", 0.0, mouth_y + 0.025)
    face("lip_upper_inner", 0.0, mouth_y - 0.004)
    face("lip_lower_inner", 0.0, mouth_y + 0.004)
    face("lip_upper_left", 0.02, mouth_y - 0.018)
    face("lip_upper_right", -0.02, mouth_y - 0.018)
    face("lip_lower_left", 0.025, mouth_y + 0.02)
    face("lip_lower_right", -0.025, mouth_y + 0.02)
    for side, s in (("left", 1), ("right", -1)):
        face(f"{side}_eye_upper_lid", s * 0.065, eye_y - 0.012)
        face(f"{side}_eye_lower_lid", s * 0.065, eye_y + 0.012)
        face(f"{side}_eye_outer_corner", s * 0.095, eye_y)
        face(f"{side}_eye_inner_corner", s * 0.035, eye_y)
        face(f"{side}_iris", s * 0.065, eye_y)
    # Points placed below the frame (elbows, hips) are kept for proportions but marked absent.
    return kp


def analyze_reference(image_rgb: np.ndarray, extractor: PoseExtractor | None = None) -> ReferenceInfo:
    """Detect the person in the reference picture and describe its framing.

    Never raises for a valid RGB uint8 image; an invalid array raises ValueError.
    """
    img = np.asarray(image_rgb)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8 or min(img.shape[:2]) < 8:
        raise ValueError(
            f"reference: expected an RGB uint8 image of at least 8x8, got {img.shape} {img.dtype}"
        )
    h, w = img.shape[:2]
    own = extractor is None
    ex = extractor or PoseExtractor(static_image_mode=True)
    try:
        kp = ex(img[..., :3])
    except Exception as e:  # MediaPipe failing on an odd image must not take the app down
        kp = np.zeros((kpl.NUM_KEYPOINTS, 3), np.float32)
        err = f" (pose detection failed: {e})"
    else:
        err = ""
    finally:
        if own:
            ex.close()
    if not person_present(kp):
        return ReferenceInfo(
            keypoints=portrait_template(w / h),
            person_found=False,
            face_visible=False,
            framing="portrait",
            bbox=(0.0, 0.0, 1.0, 1.0),
            message="No person found in the reference image" + err
            + "; treating the whole image as a portrait. Results are best with a clearly visible face.",
            width=w,
            height=h,
        )
    face_pts = kp[kpl.FACE_START :, 2] > 0
    face_visible = bool(face_pts.sum() >= kpl.NUM_FACE // 2) or _visible(kp, "nose", "left_eye", "right_eye")
    framing = classify_framing(kp)
    bbox = person_bbox(kp)
    words = {"portrait": "portrait (head and shoulders)", "half_body": "half body", "full_body": "full body"}
    msg = f"Person found: {words[framing]}"
    msg += ", face visible." if face_visible else ", face not visible (lip sync will be weak)."
    return ReferenceInfo(kp, True, face_visible, framing, bbox, msg, w, h)
