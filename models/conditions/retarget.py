"""Retargeting: a driving skeleton from another person drives the reference's body.

The driver (another person, another size, framing and place in its frame, maybe a mirrored webcam)
gives joint *angles*; the reference picture gives bone *lengths*, position, scale and framing. The
result is a pose sequence in the reference frame's normalised coordinates, ready for heatmaps at
the model's resolution (``keypoints.render_heatmaps`` works at any aspect ratio).

How, per frame (all in isotropic units of frame height, so aspect ratios do not skew angles):

1. The driver is mirrored first when asked (a selfie camera): x -> 1 - x, left/right swapped.
2. The root is the neck (mid-shoulders). Its motion relative to the driver's first frame, scaled by
   the reference/driver size ratio, moves the reference's neck: the figure starts where the
   reference stands and travels as much as the driver does, in the reference's proportions.
3. Walking the kinematic tree (``BODY_TREE`` then ``HAND_TREE``) from the neck outward, each child
   is its parent plus the reference's bone length along the driver's bone direction.
4. Face points (lips, eyes, irises) follow the driver's face relative to its nose, scaled by the
   ratio of head sizes, so mouth opening and blinking carry over.

Framing: a bone the reference has but the driver does not show (a full-body reference driven by a
half-body video) keeps the reference's own pose with the reference's confidence; a bone the driver
has but the reference lacks (a portrait driven by a full-body video) uses the driver's proportions
scaled to the reference. Points that leave the reference frame keep their coordinates (possibly
outside [0, 1], so the visible part of a bone still renders) and lose their confidence once they
are further than ``OFF_FRAME_MARGIN`` outside.
"""

from __future__ import annotations

import numpy as np

from models import keypoints as kpl

NECK = -1  # virtual root: the midpoint of the shoulders
PRESENT = 0.05
OFF_FRAME_MARGIN = 0.25
# Confidence given to a driver point that was outside the driver's frame (MediaPipe extrapolates
# it, with visibility ~0) but lands inside the reference frame.
EXTRAPOLATED_CONFIDENCE = 0.5

_I = kpl.INDEX


def _side_bones(side: str) -> list[tuple[int, int]]:
    s = side
    return [
        (_I[f"{s}_shoulder"], _I[f"{s}_elbow"]),
        (_I[f"{s}_elbow"], _I[f"{s}_wrist"]),
        (_I[f"{s}_wrist"], _I[f"{s}_pinky"]),
        (_I[f"{s}_wrist"], _I[f"{s}_index"]),
        (_I[f"{s}_wrist"], _I[f"{s}_thumb"]),
        (_I[f"{s}_shoulder"], _I[f"{s}_hip"]),
        (_I[f"{s}_hip"], _I[f"{s}_knee"]),
        (_I[f"{s}_knee"], _I[f"{s}_ankle"]),
        (_I[f"{s}_ankle"], _I[f"{s}_heel"]),
        (_I[f"{s}_ankle"], _I[f"{s}_foot_index"]),
    ]


def _head_bones() -> list[tuple[int, int]]:
    bones = [(NECK, _I["nose"])]
    for s in ("left", "right"):
        bones += [
            (_I["nose"], _I[f"{s}_eye_inner"]),
            (_I[f"{s}_eye_inner"], _I[f"{s}_eye"]),
            (_I[f"{s}_eye"], _I[f"{s}_eye_outer"]),
            (_I[f"{s}_eye_outer"], _I[f"{s}_ear"]),
            (_I["nose"], _I[f"mouth_{s}"]),
        ]
    return bones


# (parent, child) in an order where every parent comes before its children.
BODY_TREE: tuple[tuple[int, int], ...] = tuple(
    [(NECK, _I["left_shoulder"]), (NECK, _I["right_shoulder"])]
    + _head_bones()
    + _side_bones("left")
    + _side_bones("right")
)
_HAND_CHAIN = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
    (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)
HAND_TREE: tuple[tuple[int, int], ...] = tuple(
    [(_I["left_wrist"], kpl.LEFT_HAND_START)]
    + [(kpl.LEFT_HAND_START + a, kpl.LEFT_HAND_START + b) for a, b in _HAND_CHAIN]
    + [(_I["right_wrist"], kpl.RIGHT_HAND_START)]
    + [(kpl.RIGHT_HAND_START + a, kpl.RIGHT_HAND_START + b) for a, b in _HAND_CHAIN]
)
RETARGET_TREE = BODY_TREE + HAND_TREE
FACE_INDICES = tuple(range(kpl.FACE_START, kpl.NUM_KEYPOINTS))


def _to_iso(kp: np.ndarray, aspect: float) -> np.ndarray:
    """(..., K, 3) normalised -> (..., K, 2) in units of frame height."""
    xy = kp[..., :2].astype(np.float64).copy()
    xy[..., 0] *= aspect
    return xy


def _has(kp: np.ndarray) -> np.ndarray:
    """Where a point carries a position: present, or extrapolated (confidence 0, coordinates kept)."""
    return (kp[..., 2] > PRESENT) | (kp[..., 0] != 0) | (kp[..., 1] != 0)


def _neck(xy: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ls, rs = _I["left_shoulder"], _I["right_shoulder"]
    return 0.5 * (xy[..., ls, :] + xy[..., rs, :]), ok[..., ls] & ok[..., rs]


def _bone_vec(xy: np.ndarray, ok: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    if a == NECK:
        pa, oka = _neck(xy, ok)
    else:
        pa, oka = xy[..., a, :], ok[..., a]
    return xy[..., b, :] - pa, oka & ok[..., b]


def _reference_lengths(ref_xy: np.ndarray, ref_ok: np.ndarray) -> dict[tuple[int, int], float]:
    out = {}
    for a, b in RETARGET_TREE:
        v, ok = _bone_vec(ref_xy, ref_ok, a, b)
        if ok:
            out[(a, b)] = float(np.hypot(*v))
    return out


class Retargeter:
    """Streaming retargeting: call with driver frames ``(K, 3)`` or sequences ``(T, K, 3)``.

    The driver's first frame with a neck fixes the anchor that root motion is measured from, so a
    live camera can feed it frame by frame; ``reset()`` re-anchors.
    """

    def __init__(
        self,
        reference: np.ndarray,
        driver_aspect: float,
        reference_aspect: float,
        mirror: bool = False,
        follow_translation: bool = True,
        foreshortening: bool = False,
    ) -> None:
        ref = kpl.validate_keypoints(reference, "reference keypoints")[0]
        if driver_aspect <= 0 or reference_aspect <= 0:
            raise ValueError("aspect ratios must be positive (width / height)")
        self.reference = ref
        self.driver_aspect = float(driver_aspect)
        self.reference_aspect = float(reference_aspect)
        self.mirror = bool(mirror)
        self.follow_translation = bool(follow_translation)
        self.foreshortening = bool(foreshortening)
        self._ref_xy = _to_iso(ref, self.reference_aspect)
        self._ref_ok = ref[:, 2] > PRESENT
        self._ref_len = _reference_lengths(self._ref_xy, self._ref_ok)
        self._anchor: np.ndarray | None = None
        self._scale: float | None = None
        self._head_scale: float | None = None
        self._rest_len: dict[tuple[int, int], float] = {}

    def reset(self) -> None:
        self._anchor = None
        self._scale = self._head_scale = None
        self._rest_len = {}

    # -- scale between the two people ------------------------------------------------------------

    def _update_driver_stats(self, xy: np.ndarray, ok: np.ndarray) -> None:
        """Per-bone driver lengths (a high percentile, robust to foreshortening) and the body and
        head scale ratios reference / driver, fixed from the first frames that show them."""
        for a, b in RETARGET_TREE:
            v, okb = _bone_vec(xy, ok, a, b)
            if okb.any():
                length = float(np.percentile(np.hypot(v[okb, 0], v[okb, 1]), 90))
                self._rest_len[(a, b)] = max(self._rest_len.get((a, b), 0.0), length)
        if self._scale is None:
            ratios = [
                self._ref_len[bone] / self._rest_len[bone]
                for bone in BODY_TREE
                if bone in self._ref_len and self._rest_len.get(bone, 0) > 1e-4
            ]
            if ratios:
                self._scale = float(np.median(ratios))
        if self._head_scale is None:
            le, re = _I["left_eye_outer"], _I["right_eye_outer"]
            both = ok[:, le] & ok[:, re]
            if both.any() and self._ref_ok[le] and self._ref_ok[re]:
                d_drv = np.percentile(np.hypot(*(xy[both, le] - xy[both, re]).T), 90)
                d_ref = np.hypot(*(self._ref_xy[le] - self._ref_xy[re]))
                if d_drv > 1e-4:
                    self._head_scale = float(d_ref / d_drv)

    # -- main ------------------------------------------------------------------------------------

    def __call__(self, driver: np.ndarray) -> np.ndarray:
        drv = np.asarray(driver, np.float32)
        single = drv.ndim == 2
        drv = kpl.validate_keypoints(drv, "driver keypoints")
        if self.mirror:
            drv = kpl.mirror_keypoints(drv)
        t = drv.shape[0]
        xy = _to_iso(drv, self.driver_aspect)
        ok = _has(drv)
        conf = drv[..., 2].astype(np.float64)
        # Points MediaPipe extrapolated outside the driver's frame: usable directions, low trust.
        m = 0.02
        outside = (drv[..., 0] < -m) | (drv[..., 0] > 1 + m) | (drv[..., 1] < -m) | (drv[..., 1] > 1 + m)
        extrapolated = ok & outside & (conf <= PRESENT)
        self._update_driver_stats(xy, ok)
        scale = self._scale if self._scale is not None else 1.0
        head_scale = self._head_scale if self._head_scale is not None else scale

        out = np.zeros((t, kpl.NUM_KEYPOINTS, 2), np.float64)
        out_conf = np.zeros((t, kpl.NUM_KEYPOINTS), np.float64)
        out_ok = np.zeros((t, kpl.NUM_KEYPOINTS), bool)

        # Root: the reference's neck, moved by the driver's (scaled) neck motion.
        ref_neck, ref_neck_ok = _neck(self._ref_xy, self._ref_ok)
        if not ref_neck_ok:
            ref_neck = np.array([0.5 * self.reference_aspect, 0.9])
        drv_neck, drv_neck_ok = _neck(xy, ok)
        # Face-only drivers: the nose stands in for the neck.
        nose = _I["nose"]
        drv_root = np.where(drv_neck_ok[:, None], drv_neck, xy[:, nose])
        root_ok = drv_neck_ok | ok[:, nose]
        neck = np.repeat(ref_neck[None], t, axis=0)
        if self.follow_translation:
            for i in range(t):
                if not root_ok[i]:
                    continue
                if self._anchor is None:
                    self._anchor = drv_root[i].copy()
                neck[i] = ref_neck + scale * (drv_root[i] - self._anchor)

        def parent_pos(a: int) -> tuple[np.ndarray, np.ndarray]:
            if a == NECK:
                return neck, np.ones(t, bool)
            return out[:, a], out_ok[:, a]

        for a, b in RETARGET_TREE:
            pa, pok = parent_pos(a)
            v, vok = _bone_vec(xy, ok, a, b)
            d_len = np.hypot(v[:, 0], v[:, 1])
            if (a, b) in self._ref_len:
                length = np.full(t, self._ref_len[(a, b)])
            else:
                length = scale * np.full(t, self._rest_len.get((a, b), 0.0))
            if self.foreshortening and self._rest_len.get((a, b), 0) > 1e-6:
                length = length * np.clip(d_len / self._rest_len[(a, b)], 0.2, 1.0)
            direction = v / np.maximum(d_len, 1e-9)[:, None]
            use_drv = vok & (d_len > 1e-9)
            pos = pa + direction * length[:, None]
            c = np.where(extrapolated[:, b], EXTRAPOLATED_CONFIDENCE, conf[:, b])
            # Where the driver does not show this bone, keep the reference's own pose of it.
            if self._ref_ok[b] and (a == NECK or self._ref_ok[a]):
                rv, _ = _bone_vec(self._ref_xy, self._ref_ok, a, b)
                rest_pos = pa + rv
                pos = np.where(use_drv[:, None], pos, rest_pos)
                c = np.where(use_drv, c, np.where(ok[:, b], c, self.reference[b, 2]))
            else:
                c = np.where(use_drv, c, 0.0)
            good = pok & (use_drv | bool(self._ref_ok[b]))
            out[:, b] = pos
            out_ok[:, b] = good
            out_conf[:, b] = np.where(good, c, 0.0)

        # Face: the driver's face around its nose, scaled to the reference's head.
        f = list(FACE_INDICES)
        rel = xy[:, f] - xy[:, nose][:, None]
        face_ok = ok[:, f] & ok[:, nose][:, None] & out_ok[:, nose][:, None]
        out[:, f] = out[:, nose][:, None] + head_scale * rel
        out_conf[:, f] = np.where(face_ok, conf[:, f], 0.0)
        out_ok[:, f] = face_ok
        # A reference face the driver does not show (the driver turned away, or no face mesh):
        # keep the reference's face, moved with the head.
        if self._ref_ok[nose]:
            ref_rel = self._ref_xy[f] - self._ref_xy[nose]
            keep = ~face_ok & self._ref_ok[f][None] & out_ok[:, nose][:, None] & ~ok[:, f]
            out[:, f] = np.where(keep[..., None], out[:, nose][:, None] + ref_rel[None], out[:, f])
            out_conf[:, f] = np.where(keep, self.reference[f, 2][None], out_conf[:, f])

        res = np.zeros((t, kpl.NUM_KEYPOINTS, 3), np.float32)
        res[..., 0] = out[..., 0] / self.reference_aspect
        res[..., 1] = out[..., 1]
        res[..., 2] = np.clip(out_conf, 0.0, 1.0)
        mm = OFF_FRAME_MARGIN
        far = (res[..., 0] < -mm) | (res[..., 0] > 1 + mm) | (res[..., 1] < -mm) | (res[..., 1] > 1 + mm)
        res[..., 2][far] = 0.0
        # Frames with no driver at all (no root) stay empty rather than frozen in the reference pose.
        res[~root_ok] = 0.0
        return res[0] if single else res


def retarget(
    driver: np.ndarray,
    reference: np.ndarray,
    driver_aspect: float,
    reference_aspect: float,
    mirror: bool = False,
    follow_translation: bool = True,
    foreshortening: bool = False,
) -> np.ndarray:
    """Map a driving pose sequence ``(T, K, 3)`` onto the reference's body ``(K, 3)``.

    Returns ``(T, K, 3)`` in the reference frame's normalised coordinates: the reference's bone
    lengths, proportions, position, scale and framing, the driver's joint angles (and, scaled, its
    root motion). ``*_aspect`` are width / height of each frame. ``mirror`` undoes a mirrored
    (selfie) driver. ``foreshortening`` shortens a bone when the driver's does (a limb pointing at
    the camera) instead of keeping the reference's length exactly.
    """
    rt = Retargeter(reference, driver_aspect, reference_aspect, mirror, follow_translation, foreshortening)
    drv = kpl.validate_keypoints(driver, "driver keypoints")
    # Statistics from the whole sequence first, so frame 0 already uses the final scale.
    seen = kpl.mirror_keypoints(drv) if mirror else drv
    rt._update_driver_stats(_to_iso(seen, driver_aspect), _has(seen))
    return rt(drv)
