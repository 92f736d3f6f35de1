"""Body rig: moving-least-squares deformation of the reference toward a driving pose.

Control points are the reference's confident skeleton keypoints and points along its bones; their
targets are the same points of the driving pose (already retargeted onto the reference). Rigid MLS
(Schaefer, McPhail and Warren, "Image deformation using moving least squares", 2006) gives, at each
output point ``v``, the rotation and translation that best carry the nearby targets onto the
reference points (weights ``1 / |p_i - v|^2``); evaluated at output pixels, it is directly the
backward map a remap needs. Anchors with the identity mapping fill the image wherever it is far
from the skeleton, so the background stays still and only the person moves.

The map is computed on a coarse grid (every ``grid_step`` pixels) and upsampled; per frame the cost
is one small MLS solve and one full-frame remap.
"""

from __future__ import annotations

import cv2
import numpy as np

from models import keypoints as kpl

# Bones whose points carry the deformation: arms, shoulders, torso, legs, head (nose to ears and
# eyes), hands' palms.
_NAMED_BONES = (
    ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"), ("left_hip", "right_hip"), ("left_hip", "left_knee"),
    ("left_knee", "left_ankle"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("nose", "left_ear"), ("nose", "right_ear"), ("left_eye", "right_eye"), ("mouth_left", "mouth_right"),
    ("left_wrist", "left_index"), ("left_wrist", "left_pinky"), ("right_wrist", "right_index"),
    ("right_wrist", "right_pinky"),
)
BONES = tuple((kpl.INDEX[a], kpl.INDEX[b]) for a, b in _NAMED_BONES)
BODY_POINTS = tuple(sorted({i for bone in BONES for i in bone}))
TORSO = tuple(kpl.INDEX[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
HEAD = tuple(range(0, 11))  # nose, eyes, ears, mouth corners
# Limb chains, parent before child: each bone is re-posed from its parent's new position.
LIMB_CHAINS = tuple((kpl.INDEX[a], kpl.INDEX[b]) for a, b in (
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("left_wrist", "left_index"),
    ("left_wrist", "left_pinky"), ("left_wrist", "left_thumb"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("right_wrist", "right_index"),
    ("right_wrist", "right_pinky"), ("right_wrist", "right_thumb"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
))
# Largest turn of a bone from the reference's direction: arms gesture freely; legs in a photo stand
# or sit on something, and a warp that swings them far tears the background between them.
MAX_ARM_TURN, MAX_LEG_TURN = np.deg2rad(80), np.deg2rad(40)
_LEGS = {kpl.INDEX[n] for n in ("left_knee", "left_ankle", "right_knee", "right_ankle")}


def _rigid_fit(src: np.ndarray, dst: np.ndarray, max_turn: float, max_shift: float):
    """The rotation (at most ``max_turn``) and shift (at most ``max_shift``) that best carry
    ``src`` onto ``dst``, as a function of points."""
    cs, cd = src.mean(0), dst.mean(0)
    a, b = src - cs, dst - cd
    ang = np.arctan2((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum(), (a * b).sum())
    ang = float(np.clip(ang, -max_turn, max_turn))
    shift = cd - cs
    shift = shift * min(1.0, max_shift / max(float(np.linalg.norm(shift)), 1e-9))
    c, s = np.cos(ang), np.sin(ang)

    def move(p: np.ndarray) -> np.ndarray:
        r = p - cs
        return np.stack([c * r[:, 0] - s * r[:, 1], s * r[:, 0] + c * r[:, 1]], 1) + cs + shift

    return move
CONFIDENT = 0.3


def _segment_distance(pts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each point ``(G, 2)`` to each segment ``a[j]-b[j]`` -> ``(G, S)``."""
    ab = b - a  # (S, 2)
    t = ((pts[:, None] - a[None]) * ab[None]).sum(-1) / np.maximum((ab ** 2).sum(-1), 1e-9)[None]
    t = np.clip(t, 0, 1)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(pts[:, None] - closest, axis=-1)


def mls_rigid(v: np.ndarray, p: np.ndarray, q: np.ndarray, eps: float = 1.0, alpha: float = 2.0,
              max_turn: float = np.deg2rad(75)) -> np.ndarray:
    """Rigid MLS map of points ``v (G, 2)`` for handles ``p (N, 2)`` -> ``q (N, 2)``: ``(G, 2)``.

    Weights ``1 / |p_i - v|^(2 alpha)``; alpha 2 (sharper than the paper's 1) keeps a moved limb
    from being dragged back by the many handles of the body that stay."""
    d2 = (v ** 2).sum(1)[:, None] + (p ** 2).sum(1)[None] - 2.0 * (v @ p.T)  # (G, N)
    w = 1.0 / np.maximum(d2, eps)
    w = w * w if alpha == 2.0 else w ** alpha
    sw = w.sum(1, keepdims=True)
    p_star = (w @ p) / sw  # (G, 2)
    q_star = (w @ q) / sw
    # Weighted 2D Procrustes per point: the best rotation of p-hat onto q-hat.
    # sum_i w_i p_hat_i . q_hat_i, expanded so no (G, N, 2) array is needed.
    pq_dot = w @ (p * q).sum(1) - (w @ p * q_star).sum(1) - (w @ q * p_star).sum(1) \
        + sw[:, 0] * (p_star * q_star).sum(1)
    cross = lambda a, b: a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]  # noqa: E731
    pq_cross = (w @ cross(p, q)) - cross(w @ p, q_star) - cross(p_star, w @ q) + sw[:, 0] * cross(p_star, q_star)
    # Limited turn: past about 75-100 degrees the best rotation flips between neighbouring points and
    # the image would swirl.
    theta = np.clip(np.arctan2(pq_cross, pq_dot), -max_turn, max_turn)
    c, s = np.cos(theta), np.sin(theta)
    r = v - p_star
    return np.stack([c * r[:, 0] - s * r[:, 1], s * r[:, 0] + c * r[:, 1]], 1) + q_star


class BodyRig:
    """The reference's skeleton; ``backward_map(target_kp)`` gives the remap for a driving pose."""

    def __init__(self, image_shape: tuple[int, int], ref_kp: np.ndarray, grid_step: int = 8,
                 samples_per_bone: int = 4) -> None:
        h, w = image_shape[:2]
        self.h, self.w = h, w
        self.size = np.array([w, h], np.float64)
        self.ref_kp = np.asarray(ref_kp, np.float32)
        self.samples = samples_per_bone
        ok = self.ref_kp[:, 2] >= CONFIDENT
        inside = ((self.ref_kp[:, :2] >= -0.02) & (self.ref_kp[:, :2] <= 1.02)).all(1)
        self.ok = ok & inside
        self.bones = [(a, b) for a, b in BONES if self.ok[a] and self.ok[b]]
        xy = self.ref_kp[:, :2] * self.size
        sh = [kpl.INDEX["left_shoulder"], kpl.INDEX["right_shoulder"]]
        if self.ok[sh].all():
            self.scale = float(np.linalg.norm(xy[sh[0]] - xy[sh[1]]))
        else:
            pts = xy[self.ok]
            self.scale = float(max(np.ptp(pts, 0).max(), 0.1 * min(w, h))) if len(pts) else 0.3 * min(w, h)
        self.usable = len(self.bones) >= 2
        if not self.usable:
            self.message = "too little of the body is visible in the reference for pose driving; only the face moves"
        else:
            missing = [n for n in ("left_wrist", "right_wrist", "left_hip", "right_hip", "left_ankle", "right_ankle")
                       if not self.ok[kpl.INDEX[n]]]
            self.message = ""
            if missing:
                self.message = "body parts outside the reference stay as they are: " + ", ".join(missing)
        # Coarse output grid, including the last row and column.
        gx = np.unique(np.append(np.arange(0, w, grid_step), w - 1)).astype(np.float64)
        gy = np.unique(np.append(np.arange(0, h, grid_step), h - 1)).astype(np.float64)
        self.gx, self.gy = gx, gy
        self.grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)  # (G, 2)
        # Candidate background anchors: a sparser grid plus the image border.
        step = max(self.scale * 0.35, 8.0)
        ax = np.linspace(0, w - 1, max(2, int(w / step) + 1))
        ay = np.linspace(0, h - 1, max(2, int(h / step) + 1))
        self.anchor_candidates = np.stack(np.meshgrid(ax, ay), -1).reshape(-1, 2)
        self.margin = 0.55 * self.scale
        self._handle_points = sorted({i for bone in self.bones for i in bone})
        head_set = set(HEAD)
        self._handle_is_head = np.array([i in head_set for i in self._handle_points]
                                        + [a in head_set and b in head_set for a, b in self.bones
                                           for _ in range(self.samples)])
        self.src_handles = self._handles(xy)
        # A ring around the head (hair, chin) that moves with it, so the skull is not torn from
        # the face by the background anchors.
        head = [i for i in HEAD if self.ok[i]]
        self.head_ring = np.zeros((0, 2))
        if len(head) >= 2:
            c = xy[head].mean(0)
            r = max(float(np.ptp(xy[head], 0).max()) * 1.1, 0.3 * self.scale)
            ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
            self.head_ring = c + r * np.stack([np.cos(ang), np.sin(ang)], 1)
        fx = np.interp(np.arange(w), gx, np.arange(len(gx))).astype(np.float32)
        fy = np.interp(np.arange(h), gy, np.arange(len(gy))).astype(np.float32)
        self._gmap = (np.ascontiguousarray(np.broadcast_to(fx[None], (h, w))),
                      np.ascontiguousarray(np.broadcast_to(fy[:, None], (h, w))))
        self._full = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)

    def _handles(self, xy: np.ndarray) -> np.ndarray:
        """Handle points: the keypoints of the usable bones and points along them, ``(N, 2)``."""
        ts = np.linspace(0, 1, self.samples + 2)[1:-1]
        pts = [xy[i] for i in self._handle_points]
        for a, b in self.bones:
            pts.extend(xy[a] + t * (xy[b] - xy[a]) for t in ts)
        return np.array(pts, np.float64)

    def backward_map(self, target_kp: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(mapx, mapy)`` float32 ``(H, W)`` for ``cv2.remap``, or None when nothing moves."""
        if not self.usable:
            return None
        t = np.asarray(target_kp, np.float64).copy()
        ls, rs = kpl.INDEX["left_shoulder"], kpl.INDEX["right_shoulder"]
        if (t[[ls, rs], 2] >= CONFIDENT).all() and self.ok[[ls, rs]].all():
            # A driver turned away (or mislabelled) has left and right crossed relative to the
            # reference; warping that would fold the body over itself, so take it as mirrored.
            if np.sign(t[ls, 0] - t[rs, 0]) != np.sign(self.ref_kp[ls, 0] - self.ref_kp[rs, 0]):
                t = t[list(kpl.MIRROR_PERMUTATION)]
        # Points the driver lacks stay where the reference has them.
        lost = t[:, 2] < CONFIDENT
        t[lost, :2] = self.ref_kp[lost, :2]
        txy = t[:, :2] * self.size
        ref_xy = self.ref_kp[:, :2].astype(np.float64) * self.size
        # The person stays where the reference has them: the torso's centre is pinned (a warp of
        # one photo cannot walk across the frame), limbs and head move about it.
        torso = [i for i in TORSO if self.ok[i] and not lost[i]]
        if torso:
            txy = txy - (txy[torso].mean(0) - ref_xy[torso].mean(0))
        # The head and the torso move as rigid bodies: a driver's face and build differ from the
        # reference's, and matching them point by point would distort the face.
        head_ring = self.head_ring
        for part, turn, shift in ((HEAD, np.deg2rad(35), 0.4), (TORSO, np.deg2rad(25), 0.35)):
            idx = [i for i in part if self.ok[i] and not lost[i]]
            if len(idx) >= 2:
                move = _rigid_fit(ref_xy[idx], txy[idx], turn, shift * self.scale)
                every = [i for i in part if self.ok[i]]  # points the driver lacks move along
                txy[every] = move(ref_xy[every])
                if part is HEAD and len(head_ring):
                    head_ring = move(self.head_ring)
        # Limbs: each bone keeps (nearly) its reference length and turns a bounded angle from the
        # reference's direction; a photo warped further folds and swirls.
        moved = txy.copy()
        for a, b in LIMB_CHAINS:
            if not (self.ok[a] and self.ok[b]):
                continue
            r = ref_xy[b] - ref_xy[a]
            v = txy[b] - txy[a]
            lr, lv = np.linalg.norm(r), np.linalg.norm(v)
            if lr < 1e-6 or lv < 1e-6 or lost[b]:
                moved[b] = moved[a] + r
                continue
            lim = MAX_LEG_TURN if b in _LEGS else MAX_ARM_TURN
            ang = np.clip(np.arctan2(r[0] * v[1] - r[1] * v[0], r @ v), -lim, lim)
            c, s = np.cos(ang), np.sin(ang)
            k = np.clip(lv / lr, 0.8, 1.2)
            moved[b] = moved[a] + k * np.array([c * r[0] - s * r[1], s * r[0] + c * r[1]])
        txy = moved
        dst, src = self._handles(txy), self.src_handles
        if len(head_ring):
            # A hand that comes in front of the face cannot be drawn over it by a warp (there is
            # no second layer); its handles yield inside the head, so the face is never torn.
            c = head_ring.mean(0)
            inside = np.linalg.norm(dst - c, axis=1) < np.linalg.norm(head_ring[0] - c)
            keep = ~inside | self._handle_is_head
            dst, src = np.concatenate([dst[keep], head_ring]), np.concatenate([src[keep], self.head_ring])
        if np.abs(dst - src).max() < 0.05:
            return None
        # Anchors: far from the skeleton both where it was and where it goes.
        a_idx = np.array(self.bones)
        d_src = _segment_distance(self.anchor_candidates, ref_xy[a_idx[:, 0]], ref_xy[a_idx[:, 1]]).min(1)
        d_dst = _segment_distance(self.anchor_candidates, txy[a_idx[:, 0]], txy[a_idx[:, 1]]).min(1)
        far = (d_src > self.margin) & (d_dst > self.margin)
        if len(head_ring):
            for ring in (self.head_ring, head_ring):
                c = ring.mean(0)
                r = np.linalg.norm(ring[0] - c)
                far &= np.linalg.norm(self.anchor_candidates - c, axis=1) > r + 0.3 * self.scale
        anchors = self.anchor_candidates[far]
        p = np.concatenate([dst, anchors])  # output positions
        q = np.concatenate([src, anchors])  # reference positions
        f = mls_rigid(self.grid, p, q)  # (G, 2) reference position of each output grid point
        disp = (f - self.grid).reshape(len(self.gy), len(self.gx), 2).astype(np.float32)
        # Bilinear interpolation between grid nodes (exact at the nodes, unlike a plain resize).
        disp = cv2.remap(disp, self._gmap[0], self._gmap[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        maps = self._full + disp
        return np.ascontiguousarray(maps[..., 0]), np.ascontiguousarray(maps[..., 1])

    def render(self, image: np.ndarray, target_kp: np.ndarray) -> np.ndarray:
        m = self.backward_map(target_kp)
        if m is None:
            return image
        return cv2.remap(image, m[0], m[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
