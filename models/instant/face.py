"""Face rig: MediaPipe face mesh on the reference, and a piecewise-affine mesh warp per frame.

Built once per reference (``FaceRig.build``): the 468-point face mesh, two rings of anchor points
around the head (one that moves with the head, one that stays) and the crop border (fixed), a
Delaunay triangulation of all of them, and for every expression a displacement per vertex
("blend shapes" in pixels): jaw drop, lip closure, lip width, rounding, left/right blink, and the
head's roll, turn, and shift.

Per frame (``FaceRig.render``): vertex displacements are a weighted sum of those shapes; only the
triangles that move are rasterised (their output positions into a triangle-index map), and each
output pixel samples the reference through its triangle's exact inverse affine map, so there are no
seams and no approximate inversion. Inside the deformed inner lip contour the mouth interior is
painted: what the reference already shows there (teeth of a smile) stays attached to the upper lip;
where the lips part further, a dark cavity with a tongue and a hint of teeth, coloured from the
image. When nothing moves the reference is returned untouched.

Coordinates: pixels of the reference image, x right, y down. Face-local axes: ``u`` along the line
from the right eye to the left eye (image left to right for a frontal face), ``v`` perpendicular,
pointing down the face; lengths in units of the mouth width ``W``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# MediaPipe face-mesh topology (fixed by the model): lip and eyelid contours, the face oval.
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
EYES = {  # the person's right eye is on the image's left
    "right": ((33, 246, 161, 160, 159, 158, 157, 173, 133), (33, 7, 163, 144, 145, 153, 154, 155, 133)),
    "left": ((362, 398, 384, 385, 386, 387, 388, 466, 263), (362, 382, 381, 380, 374, 373, 390, 249, 263)),
}
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
NUM_MESH = 468  # the 10 iris points are left out of the rig
JAW_DROP = 0.34  # lower-lip drop at jaw_open = 1, in mouth widths

# Expression channels, in the order of ``FaceRig.shapes``.
SHAPES = ("jaw", "jaw_closure", "closure", "width", "rounding", "blink_left", "blink_right")


class NoFaceError(ValueError):
    """The reference has no face the mesh can find."""


def _smoothstep(e0: float, e1, x):
    t = np.clip((x - e0) / np.maximum(np.asarray(e1) - e0, 1e-9), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _affine_from_triangles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per triangle, ``M (3, 2)`` with ``[x, y, 1] @ M`` carrying triangle ``a (F, 3, 2)`` onto
    ``b (F, 3, 2)``; closed form (Cramer), since thousands of tiny solves are slow through LAPACK.
    A degenerate triangle gets the identity."""
    x0, y0 = a[:, 0, 0], a[:, 0, 1]
    e1, e2 = a[:, 1] - a[:, 0], a[:, 2] - a[:, 0]  # (F, 2)
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-6
    det = np.where(ok, det, 1.0)
    # Inverse of [[e1x, e2x], [e1y, e2y]]: maps (x - x0, y - y0) to barycentric (s, t).
    inv = np.stack([np.stack([e2[:, 1], -e2[:, 0]], 1), np.stack([-e1[:, 1], e1[:, 0]], 1)], 1) / det[:, None, None]
    f1, f2 = b[:, 1] - b[:, 0], b[:, 2] - b[:, 0]
    F = np.stack([f1, f2], 1)  # (F, 2 [s, t], 2 [x, y])
    lin = np.einsum("fij,fjk->fik", inv.transpose(0, 2, 1), F)  # (F, 2 [x, y in], 2 out)
    off = b[:, 0] - x0[:, None] * lin[:, 0] - y0[:, None] * lin[:, 1]
    M = np.concatenate([lin, off[:, None]], 1)
    M[~ok] = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    return M


def _run_face_mesh(image: np.ndarray) -> np.ndarray | None:
    import mediapipe as mp

    h, w = image.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1,
                                         min_detection_confidence=0.5) as fm:
        res = fm.process(np.ascontiguousarray(image[..., :3]))
    if not res.multi_face_landmarks:
        return None
    lm = res.multi_face_landmarks[0].landmark
    return np.array([(p.x * w, p.y * h) for p in lm], np.float64)


def head_box(kp: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """A square box around the head from body keypoints ``(K, 3)`` (normalised), or None."""
    from models import keypoints as kpl

    names = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "mouth_left", "mouth_right")
    pts = np.array([kp[kpl.INDEX[n], :2] * (width, height) for n in names if kp[kpl.INDEX[n], 2] >= 0.3])
    if len(pts) < 2:
        return None
    c = pts.mean(0)
    side = max(np.ptp(pts, 0).max() * 3.0, 24.0)
    x0, y0 = int(max(0, c[0] - side / 2)), int(max(0, c[1] - side / 2))
    x1, y1 = int(min(width, c[0] + side / 2)), int(min(height, c[1] + side / 2))
    return (x0, y0, x1, y1) if x1 - x0 >= 8 and y1 - y0 >= 8 else None


def detect_face_mesh(image: np.ndarray, body_kp: np.ndarray | None = None) -> np.ndarray | None:
    """478 face-mesh points ``(478, 2)`` in pixels, or None when no face is found.

    The mesh's face detector only finds faces that fill a good part of the picture; in a full-body
    photo the head is small, so when ``body_kp`` (the reference's pose) is given the head is cut
    out, enlarged and searched again.
    """
    h, w = image.shape[:2]
    # The detector works best around 1-2 MP; large photos are scaled down for it.
    scale = min(1.0, 1280 / max(h, w))
    img = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
    mesh = _run_face_mesh(img)
    if mesh is not None:
        return mesh / scale
    if body_kp is None:
        return None
    box = head_box(body_kp, w, h)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    up = 384 / max(x1 - x0, y1 - y0)
    crop = cv2.resize(image[y0:y1, x0:x1], None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
    mesh = _run_face_mesh(crop)
    if mesh is None:
        # Too small or turned for the face detector: Holistic finds the face from the body's pose.
        mesh = _holistic_face(crop)
    if mesh is None:
        return None
    return mesh / up + np.array([x0, y0])


TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "resources" / "models" / "instant" / "face_template.npy"
# Template landmarks matched to body keypoints: (mesh indices averaged, body keypoint name).
_TEMPLATE_MATCH = (
    (EYES["left"][0] + EYES["left"][1], "left_eye"), (EYES["right"][0] + EYES["right"][1], "right_eye"),
    ((1,), "nose"), ((291,), "mouth_left"), ((61,), "mouth_right"),
)


def face_template(mesh: np.ndarray) -> np.ndarray:
    """A mesh ``(478, 2)`` normalised: eyes' midpoint at 0, eyes on the x axis, 1 apart."""
    le = mesh[list(_TEMPLATE_MATCH[0][0])].mean(0)
    re = mesh[list(_TEMPLATE_MATCH[1][0])].mean(0)
    d = le - re
    ang = np.arctan2(d[1], d[0])
    c, s = np.cos(-ang), np.sin(-ang)
    rel = (mesh - (le + re) / 2) / np.linalg.norm(d)
    out = np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]], 1)
    # A neutral, closed mouth: the inner lips meet halfway.
    up, lo = list(LIPS_INNER_UPPER), list(LIPS_INNER_LOWER)
    mid = (out[up] + out[lo]) / 2
    out[up], out[lo] = mid, mid
    return out


def mesh_from_body(body_kp: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """An approximate face mesh for a face too small for the mesh model: the shipped template
    (a frontal MediaPipe mesh) fitted by a similarity transform to the pose's eyes, nose and mouth."""
    from models import keypoints as kpl

    if not TEMPLATE_PATH.is_file():
        return None
    tpl = np.load(TEMPLATE_PATH).astype(np.float64)
    src, dst = [], []
    for idx, name in _TEMPLATE_MATCH:
        k = body_kp[kpl.INDEX[name]]
        if k[2] >= 0.3:
            src.append(tpl[list(idx)].mean(0))
            dst.append(k[:2] * (width, height))
    if len(src) < 4:
        return None
    src, dst = np.array(src), np.array(dst)
    # Least-squares similarity (rotation, uniform scale, shift) from template to image.
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    zs = a[:, 0] + 1j * a[:, 1]
    zd = b[:, 0] + 1j * b[:, 1]
    k = (np.conj(zs) @ zd) / max((np.abs(zs) ** 2).sum(), 1e-9)
    if abs(k) < 1e-6:
        return None
    zt = (tpl[:, 0] - ms[0]) + 1j * (tpl[:, 1] - ms[1])
    out = k * zt
    return np.stack([out.real + md[0], out.imag + md[1]], 1)


def _holistic_face(image: np.ndarray) -> np.ndarray | None:
    import mediapipe as mp

    h, w = image.shape[:2]
    # model_complexity 1 is the pose model bundled in the wheel (0 and 2 would be downloaded).
    with mp.solutions.holistic.Holistic(static_image_mode=True, model_complexity=1, refine_face_landmarks=True,
                                        enable_segmentation=False) as hol:
        res = hol.process(np.ascontiguousarray(image[..., :3]))
    if res.face_landmarks is None:
        return None
    return np.array([(p.x * w, p.y * h) for p in res.face_landmarks.landmark], np.float64)


@dataclass
class HeadMotion:
    """Small rigid head motion: roll (radians, about the neck), turn (fraction of the face width the
    nose shifts sideways), shift in pixels."""

    roll: float = 0.0
    turn: float = 0.0
    dx: float = 0.0
    dy: float = 0.0

    def is_zero(self) -> bool:
        return self.roll == 0 and self.turn == 0 and self.dx == 0 and self.dy == 0


class FaceRig:
    """The reference's face mesh and expression shapes; ``render`` draws one frame of the face."""

    def __init__(self, image: np.ndarray, mesh: np.ndarray) -> None:
        self.image = np.ascontiguousarray(image[..., :3])
        h, w = self.image.shape[:2]
        self.mesh = mesh
        self.approximate = False  # True: the mesh is the template fitted to the body pose
        pts = mesh[:NUM_MESH]
        # Face frame.
        eye_r = pts[list(EYES["right"][0] + EYES["right"][1])].mean(0)
        eye_l = pts[list(EYES["left"][0] + EYES["left"][1])].mean(0)
        self.ex = (eye_l - eye_r) / (np.linalg.norm(eye_l - eye_r) + 1e-9)  # u axis
        self.ey = np.array([-self.ex[1], self.ex[0]])  # v axis, down the face
        self.mouth_c = (pts[61] + pts[291]) / 2
        self.W = float(np.linalg.norm(pts[291] - pts[61]))
        oval = pts[list(FACE_OVAL)]
        self.face_c = oval.mean(0)
        self.face_size = float(np.ptp(oval @ self.ex) + np.ptp(oval @ self.ey)) / 2
        chin = pts[152]
        # Pivot of the head's roll: the neck, a third of a face below the chin.
        self.pivot = chin + self.ey * 0.35 * self.face_size

        # Anchors: the head ring moves with the head (hair, ears), the outer ring and the crop
        # border stay, so the motion fades out smoothly into the background.
        rel = oval - self.face_c
        head_ring = self.face_c + rel * 1.45 + self.ey * 0.0
        outer_ring = self.face_c + rel * 2.1
        lo = np.minimum(outer_ring.min(0), pts.min(0)) - 0.1 * self.face_size
        hi = np.maximum(outer_ring.max(0), pts.max(0)) + 0.1 * self.face_size
        x0, y0 = int(max(0, np.floor(lo[0]))), int(max(0, np.floor(lo[1])))
        x1, y1 = int(min(w, np.ceil(hi[0]))), int(min(h, np.ceil(hi[1])))
        self.crop = (x0, y0, x1, y1)
        bx = np.linspace(x0, x1 - 1, 9)
        by = np.linspace(y0, y1 - 1, 9)
        border = np.concatenate([np.stack([bx, np.full_like(bx, y0)], 1), np.stack([bx, np.full_like(bx, y1 - 1)], 1),
                                 np.stack([np.full_like(by, x0), by], 1), np.stack([np.full_like(by, x1 - 1), by], 1)])
        lim_lo, lim_hi = np.array([x0, y0], float), np.array([x1 - 1, y1 - 1], float)
        head_ring = np.clip(head_ring, lim_lo, lim_hi)
        outer_ring = np.clip(outer_ring, lim_lo, lim_hi)
        self.P = np.concatenate([pts, head_ring, outer_ring, border]).astype(np.float64)  # (N, 2)
        n_mesh, n_head = NUM_MESH, len(head_ring)
        # Head-motion weight per vertex: the mesh and the head ring move fully.
        self.head_w = np.zeros(len(self.P))
        self.head_w[: n_mesh + n_head] = 1.0
        # A point on the crop border never moves (the crop is pasted back without a seam).
        on_border = ((self.P[:, 0] <= x0) | (self.P[:, 0] >= x1 - 1) | (self.P[:, 1] <= y0) | (self.P[:, 1] >= y1 - 1))
        inner_edge = on_border & ((x0 > 0) & (self.P[:, 0] <= x0) | (y0 > 0) & (self.P[:, 1] <= y0)
                                  | (x1 < w) & (self.P[:, 0] >= x1 - 1) | (y1 < h) & (self.P[:, 1] >= y1 - 1))
        self.head_w[inner_edge] = 0.0

        from scipy.spatial import Delaunay

        tri = Delaunay(self.P)
        self.tris = tri.simplices.astype(np.int32)  # (F, 3)
        self._build_shapes()
        self._build_mouth()

    # ------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, image: np.ndarray, body_kp: np.ndarray | None = None) -> FaceRig:
        """Detect the face (see ``detect_face_mesh``) and build the rig; NoFaceError if none.

        With ``body_kp``, a face the mesh model cannot find but the pose can (small, blurred) gets
        the template mesh fitted to the pose's face points (``approximate`` is then True)."""
        mesh = detect_face_mesh(image, body_kp)
        approximate = False
        if mesh is None and body_kp is not None:
            mesh = mesh_from_body(body_kp, image.shape[1], image.shape[0])
            approximate = mesh is not None
        if mesh is None:
            raise NoFaceError("no face found in the reference image")
        rig = cls(image, mesh)
        rig.approximate = approximate
        return rig

    def _local(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = p - self.mouth_c
        return d @ self.ex / self.W, d @ self.ey / self.W

    def _build_shapes(self) -> None:
        P, W = self.P, self.W
        n = len(P)
        u, v = self._local(P)
        is_mesh = np.zeros(n, bool)
        is_mesh[:NUM_MESH] = True
        # The mouth line: halfway between the inner lips, as a function of u.
        iu_u, iu_v = self._local(P[list(LIPS_INNER_UPPER)])
        il_u, il_v = self._local(P[list(LIPS_INNER_LOWER)])
        order = np.argsort(iu_u)
        line_v = np.interp(u, iu_u[order], ((iu_v + il_v) / 2)[order])
        outer = np.concatenate([P[list(LIPS_OUTER_UPPER)], P[list(LIPS_OUTER_LOWER)][::-1]]).astype(np.float32)
        in_lips = np.array([cv2.pointPolygonTest(outer, (float(x), float(y)), True) >= -0.02 * W for x, y in P])
        in_lips &= is_mesh
        corners = np.isin(np.arange(n), [61, 291, 78, 308])
        below = v - line_v
        lower_lip = in_lips & (below > 0) & ~corners
        upper_lip = in_lips & (below <= 0) & ~corners
        au = np.abs(u)

        shapes = {}
        # Jaw: everything below the mouth line drops; the band of transition widens past the
        # corners (the cheeks stretch) and the drop fades toward the jaw hinges.
        tw = 0.03 + 0.7 * np.maximum(au - 0.4, 0)
        w_jaw = _smoothstep(0.0, tw, below) * (1 - _smoothstep(0.5, 1.6, au))
        # Lip vertices blend toward the corners' weight near the corners (no folded triangles).
        to_corner = _smoothstep(0.3, 0.5, au)
        w_jaw[lower_lip] = (1 - to_corner[lower_lip]) + 0.45 * to_corner[lower_lip]
        w_jaw[upper_lip] = -0.08 * (1 - to_corner[upper_lip]) + 0.45 * to_corner[upper_lip]
        w_jaw[corners] = 0.45
        w_jaw[~is_mesh] = 0.0
        # The chin moves a little more than the lip (the jaw rotates about its hinge).
        w_jaw *= 1 + 0.25 * _smoothstep(0.3, 1.2, below)
        shapes["jaw"] = (w_jaw * JAW_DROP * W)[:, None] * self.ey[None]
        # Closure: the lower lip comes back up to meet the upper one, the upper one comes down.
        w_cl = np.zeros(n)
        w_cl[lower_lip] = -((1 - to_corner[lower_lip]) + 0.45 * to_corner[lower_lip])
        skin_below = is_mesh & ~in_lips & (below > 0) & (au < 0.55)
        w_cl[skin_below] = -0.6 * (1 - _smoothstep(0.15, 0.45, below[skin_below]))
        w_cl[upper_lip] = 0.08 * (1 - to_corner[upper_lip]) - 0.45 * to_corner[upper_lip]
        shapes["jaw_closure"] = (w_cl * JAW_DROP * W)[:, None] * self.ey[None]
        # Closure also shuts a mouth that is open in the reference: the lower lip rises by the
        # reference's own gap between the inner lips.
        ref_gap = np.maximum(np.interp(u, il_u[np.argsort(il_u)], il_v[np.argsort(il_u)])
                             - np.interp(u, iu_u[order], iu_v[order]), 0.0)
        w_shut = np.zeros(n)
        w_shut[lower_lip] = -ref_gap[lower_lip]
        w_shut[skin_below] = -0.5 * ref_gap[skin_below] * (1 - _smoothstep(0.15, 0.45, below[skin_below]))
        shapes["closure"] = (w_shut * W)[:, None] * self.ey[None]
        # Width: the corners move sideways, the lips with them, fading into the cheeks.
        lat = np.clip(au / 0.5, 0, 1) * np.exp(-(np.maximum(au - 0.5, 0) / 0.3) ** 2)
        lat *= np.exp(-((v - line_v) / 0.3) ** 2) * is_mesh
        shapes["width"] = (np.sign(u) * lat * 0.3 * W)[:, None] * self.ex[None]
        # Rounding: corners in, the lips pushed apart into an "o".
        pout = np.where(in_lips, np.sign(below) * (1 - np.clip(au / 0.5, 0, 1)), 0.0)
        shapes["rounding"] = ((-np.sign(u) * lat * 0.17 * W)[:, None] * self.ex[None]
                              + (pout * 0.06 * W)[:, None] * self.ey[None])
        for side in ("left", "right"):
            shapes[f"blink_{side}"] = self._blink_shape(side, is_mesh)
        self.shapes = np.stack([shapes[k] for k in SHAPES]).astype(np.float64)  # (S, N, 2)
        # Head turn: inner face points shift more than the oval (a parallax hint of a turn).
        r = np.linalg.norm((P - self.face_c) / (0.5 * self.face_size), axis=1)
        self.turn_w = np.where(is_mesh, np.clip(1 - r ** 2, 0, 1), 0.0)

    def _blink_shape(self, side: str, is_mesh: np.ndarray) -> np.ndarray:
        P = self.P
        up_idx, lo_idx = EYES[side]
        up, lo = P[list(up_idx)], P[list(lo_idx)]
        c = np.concatenate([up, lo]).mean(0)
        pu = (P - c) @ self.ex
        pv = (P - c) @ self.ey
        uu, uv = (up - c) @ self.ex, (up - c) @ self.ey
        lu, lv = (lo - c) @ self.ex, (lo - c) @ self.ey
        o1, o2 = np.argsort(uu), np.argsort(lu)
        half = max((uu.max() - uu.min()) / 2, 1.0)
        lid_v = np.interp(pu, uu[o1], uv[o1])
        low_v = np.interp(pu, lu[o2], lv[o2])
        gap = np.maximum(low_v - lid_v, 0.0)
        d = np.zeros(len(P))
        # The upper lid comes down to just above the lower lid.
        d[list(up_idx)] = 0.96 * gap[list(up_idx)]
        # The lid's skin up to the brow follows, less and less.
        above = lid_v - pv
        others = is_mesh.copy()
        others[list(up_idx) + list(lo_idx)] = False
        fall = (1 - _smoothstep(0.0, 1.1 * half, above)) * (above > 0)
        fall *= 1 - _smoothstep(0.9 * half, 1.4 * half, np.abs(pu))
        d[others] = 0.55 * fall[others] * np.interp(pu[others], uu[o1], 0.96 * gap[list(up_idx)][o1])
        # The lower lid rises a little, to meet the upper one (the eye's white and iris vanish).
        d[list(lo_idx)] = -0.035 * gap[list(lo_idx)]
        return d[:, None] * self.ey[None]

    def _build_mouth(self) -> None:
        inner = list(LIPS_INNER_UPPER) + list(LIPS_INNER_LOWER[1:-1][::-1])
        poly = self.P[inner].astype(np.float32)
        # The reference's inner lip curves in the mouth frame (pixels): u, v upper; u, v lower.
        up, lo = self.P[list(LIPS_INNER_UPPER)] - self.mouth_c, self.P[list(LIPS_INNER_LOWER)] - self.mouth_c
        su, sv, slu, slv = up @ self.ex, up @ self.ey, lo @ self.ex, lo @ self.ey
        o1, o2 = np.argsort(su), np.argsort(slu)
        self._src_inner = (su[o1], sv[o1], slu[o2], slv[o2])
        self._src_half = max((su.max() - su.min()) / 2, 1.0)
        gaps = np.interp(su[o1], slu[o2], slv[o2]) - sv[o1]
        self._ref_open = float(_smoothstep(0.04, 0.1, gaps.max() / self.W))  # 1: teeth already show
        self.src_area = self._areas(self.P)
        # Colours from the image: a dark cavity tinted by the lips, teeth from the brightest face pixels.
        h, w = self.image.shape[:2]
        mask = np.zeros((h, w), np.uint8)
        outer = np.concatenate([self.P[list(LIPS_OUTER_UPPER)], self.P[list(LIPS_OUTER_LOWER)][::-1]])
        cv2.fillPoly(mask, [np.round(outer).astype(np.int32)], 1)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 0)
        lips = self.image[mask > 0].astype(np.float32)
        if len(lips):
            # The reddest part of the lip area is lip (the rest may be skin or teeth).
            red = lips[:, 0] - lips[:, 1]
            lip_col = lips[red >= np.percentile(red, 70)].mean(0)
        else:
            lip_col = np.array([150, 80, 80], np.float32)
        self.lip_color = lip_col.astype(np.float32)
        self.cavity_color = np.clip(lip_col * np.array([0.3, 0.22, 0.22]), 0, 255).astype(np.float32)
        face_mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(face_mask, [np.round(self.P[list(FACE_OVAL)]).astype(np.int32)], 1)
        face = self.image[face_mask > 0].astype(np.float32)
        if len(face):
            lum = face @ np.array([0.299, 0.587, 0.114], np.float32)
            bright = face[lum >= np.percentile(lum, 97)].mean(0)
        else:
            bright = np.array([230, 225, 215], np.float32)
        grey = bright.mean()
        self.teeth_color = np.clip((0.55 * bright + 0.45 * grey) * 0.92 + 10, 0, 245).astype(np.float32)

    @staticmethod
    def _areas_of(pts: np.ndarray, tris: np.ndarray) -> np.ndarray:
        a, b, c = pts[tris[:, 0]], pts[tris[:, 1]], pts[tris[:, 2]]
        return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))

    def _areas(self, pts: np.ndarray) -> np.ndarray:
        return self._areas_of(pts, self.tris)

    # ------------------------------------------------------------------------------------------
    def displacements(self, mouth: np.ndarray, blink: tuple[float, float], head: HeadMotion | None) -> np.ndarray:
        """Vertex displacements ``(N, 2)`` in pixels for mouth params (4,), blinks (left, right)."""
        from models.data.visemes import REST

        j, wd, rd, cl = (float(x) for x in mouth)
        coef = np.array([j, j * cl, cl, wd - REST[1], rd - REST[2], blink[0], blink[1]])
        coef[np.abs(coef) < 1e-4] = 0.0
        d = np.tensordot(coef, self.shapes, axes=1)  # (N, 2)
        if head is not None and not head.is_zero():
            c, s = np.cos(head.roll), np.sin(head.roll)
            rel = self.P + d - self.pivot
            rot = np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]], 1) + self.pivot
            rigid = rot - (self.P + d) + np.array([head.dx, head.dy])
            rigid = rigid + (head.turn * self.face_size * self.turn_w)[:, None] * self.ex[None]
            d = d + self.head_w[:, None] * rigid
        return d

    def render(self, mouth: np.ndarray, blink: tuple[float, float] = (0.0, 0.0), head: HeadMotion | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
        """One frame ``(H, W, 3)`` uint8: the reference with this expression. ``out`` (optional) is
        a preallocated frame that already holds the reference outside the face crop."""
        frame = self.image.copy() if out is None else out
        d = self.displacements(np.asarray(mouth, np.float64), blink, head)
        moving = np.abs(d).max(1) > 1e-3  # (N,)
        if out is not None:
            x0, y0, x1, y1 = self.crop
            frame[y0:y1, x0:x1] = self.image[y0:y1, x0:x1]
        if not moving.any():
            return frame
        O = self.P + d
        act = moving[self.tris].any(1)
        tris = self.tris[act]
        out_pts = O[tris]  # (A, 3, 2)
        src_pts = self.P[tris]
        lo = np.floor(np.minimum(out_pts.min((0, 1)), src_pts.min((0, 1)))).astype(int)
        hi = np.ceil(np.maximum(out_pts.max((0, 1)), src_pts.max((0, 1)))).astype(int) + 1
        cx0, cy0, cx1, cy1 = self.crop
        rx0, ry0 = max(lo[0], cx0), max(lo[1], cy0)
        rx1, ry1 = min(hi[0], cx1), min(hi[1], cy1)
        if rx1 <= rx0 or ry1 <= ry0:
            return frame
        idx = np.full((ry1 - ry0, rx1 - rx0), -1, np.int32)
        fixed = np.round((out_pts - np.array([rx0, ry0])) * 16).astype(np.int32)
        # Folded triangles (rare, at the mouth corners) are drawn first, so their unfolded
        # neighbours win wherever they overlap.
        folded = np.sign(self._areas_of(O, tris)) != np.sign(self.src_area[act])
        for k in np.argsort(~folded, kind="stable"):
            cv2.fillPoly(idx, [fixed[k]], int(k), lineType=cv2.LINE_8, shift=4)
        # Inverse affine of each active triangle: output (x, y, 1) -> source (x, y).
        M = _affine_from_triangles(out_pts, src_pts)
        gy, gx = np.mgrid[ry0:ry1, rx0:rx1].astype(np.float32)
        sel = idx >= 0
        t = idx[sel]
        Mt = M[t].astype(np.float32)  # (n, 3, 2)
        xs, ys = gx[sel], gy[sel]
        mapx, mapy = gx, gy
        mapx[sel] = xs * Mt[:, 0, 0] + ys * Mt[:, 1, 0] + Mt[:, 2, 0]
        mapy[sel] = xs * Mt[:, 0, 1] + ys * Mt[:, 1, 1] + Mt[:, 2, 1]
        region = cv2.remap(self.image, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        self._paint_cavity(region, O, rx0, ry0)
        frame[ry0:ry1, rx0:rx1] = region
        return frame

    def _paint_cavity(self, region: np.ndarray, O: np.ndarray, rx0: int, ry0: int) -> None:
        """Fill the opening between the deformed inner lips.

        Whatever the reference already shows between its lips (teeth of a smile) stays attached to
        the upper lip, unstretched; below it, where the jaw has opened the mouth further, a dark
        cavity with a hint of lower teeth (and upper teeth when the reference's lips were closed).
        """
        ring = list(LIPS_INNER_UPPER) + list(LIPS_INNER_LOWER[1:-1][::-1])
        if np.abs(O[ring] - self.P[ring]).max() < 1e-3:
            return  # the lips did not move: the reference's own mouth, untouched
        pts = O[ring] - np.array([rx0, ry0])
        y0, x0 = (np.floor(pts.min(0)[::-1]) - 2).astype(int)
        y1, x1 = (np.ceil(pts.max(0)[::-1]) + 3).astype(int)
        y0, x0 = max(y0, 0), max(x0, 0)
        y1, x1 = min(y1, region.shape[0]), min(x1, region.shape[1])
        if y1 <= y0 or x1 <= x0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [np.round((pts - np.array([x0, y0])) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        a = mask.astype(np.float32) / 255.0
        # Output mouth frame.
        up, lo = O[list(LIPS_INNER_UPPER)], O[list(LIPS_INNER_LOWER)]
        mc = (O[61] + O[291]) / 2
        uu, uv = (up - mc) @ self.ex, (up - mc) @ self.ey
        lu, lv = (lo - mc) @ self.ex, (lo - mc) @ self.ey
        o1, o2 = np.argsort(uu), np.argsort(lu)
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        px, py = gx + rx0 - mc[0], gy + ry0 - mc[1]
        pu, pv = px * self.ex[0] + py * self.ex[1], px * self.ey[0] + py * self.ey[1]
        top = np.interp(pu, uu[o1], uv[o1])
        bot = np.interp(pu, lu[o2], lv[o2])
        gap = np.maximum(bot - top, 1e-3)
        a = a * _smoothstep(0.5, 2.0, gap)  # lips (almost) together: nothing to paint
        depth = pv - top  # pixels below the upper inner lip
        half = max((uu.max() - uu.min()) / 2, 1.0)
        side = np.clip(np.abs(pu) / half, 0, 1)
        # The reference's own opening at the same place along the mouth.
        su, sv, slu, slv = self._src_inner
        pu_src = pu * self._src_half / half
        top_src = np.interp(pu_src, su, sv)
        gap_src = np.maximum(np.interp(pu_src, slu, slv) - top_src, 0.0)
        sx = self.mouth_c[0] + pu_src * self.ex[0] + (top_src + depth) * self.ey[0]
        sy = self.mouth_c[1] + pu_src * self.ex[1] + (top_src + depth) * self.ey[1]
        own = cv2.remap(self.image, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        use_own = ((1 - _smoothstep(-1.0, 0.5, depth - gap_src)) * (1 - _smoothstep(0.75, 0.95, side)))[..., None]
        teeth_h = np.minimum(0.38 * gap, 0.16 * self.W)
        teeth = (1 - _smoothstep(0.6, 1.0, depth / np.maximum(teeth_h, 1e-3))) * (1 - _smoothstep(0.55, 0.85, side))
        # Synthetic teeth only for a reference whose lips are closed; an open one shows its own.
        teeth *= 1.0 - self._ref_open
        low_h = np.minimum(0.15 * gap, 0.06 * self.W) * _smoothstep(0.2 * self.W, 0.4 * self.W, gap)
        low_teeth = (1 - _smoothstep(0.5, 1.0, (bot - pv) / np.maximum(low_h, 1e-3))) * (low_h > 0.5)
        low_teeth *= (1 - _smoothstep(0.3, 0.6, side)) * 0.5
        # Darkest in the middle of the opening (the throat), lighter toward the corners and lips;
        # a tongue, tinted like the lips, rises from the bottom when the mouth is well open.
        rel = np.clip(depth / gap, 0, 1)
        mid = 1 - np.abs(rel - 0.45) * 2
        shade = (1.35 - 0.6 * np.clip(mid, 0, 1) * (1 - side))[..., None]
        col = self.cavity_color[None, None] * shade
        tongue = _smoothstep(0.55, 0.85, rel) * (1 - _smoothstep(0.5, 0.9, side))
        tongue *= _smoothstep(0.15 * self.W, 0.3 * self.W, gap)
        col = col * (1 - 0.6 * tongue[..., None]) + 0.6 * tongue[..., None] * self.lip_color * 0.62
        col = col * (1 - teeth[..., None]) + (self.teeth_color * (1 - 0.3 * side)[..., None]) * teeth[..., None]
        col = col * (1 - 0.6 * low_teeth[..., None]) + 0.6 * 0.8 * self.teeth_color * low_teeth[..., None]
        col = own * use_own + col * (1 - use_own)
        r = region[y0:y1, x0:x1].astype(np.float32)
        a = a[..., None]
        region[y0:y1, x0:x1] = np.clip(r * (1 - a) + col * a, 0, 255).astype(np.uint8)
