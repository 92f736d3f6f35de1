"""The body as a layered 2D puppet: matte, background plate, skinned part meshes, depth order.

Built once per reference (``Puppet(image, ref_kp)``, a few hundred milliseconds), then per frame only
the joint angles change (``render(texture, target_kp)``, a few milliseconds):

* **Matte and plate** (``models.instant.matte``, ``models.instant.plate``): where the person is, and
  the picture with the person filled out, so a limb that moves uncovers background, not a smear.
* **Parts** along the skeleton (``PARTS``): torso, head, upper arms, forearms, hands, thighs, shins,
  feet. Every matte pixel belongs to one part: the one whose bone is nearest in units of that part's
  width (limbs win over the torso within their width, so an arm across the chest stays an arm).
  Only parts whose bone the reference *shows* (both ends confidently inside the picture) exist; the
  pixels of a limb that is hidden or cut by the frame go to its nearest visible ancestor and move
  with it, rigidly. Nothing is ever drawn that the picture does not show.
* **Meshes**: each part gets the cells of one global grid that touch it, two triangles per cell.
  Vertex positions are shared between parts, so where two parts overlap they deform alike.
* **Skinning**: every part has a rigid transform (rotation about its joint, translation that keeps
  it attached to its parent's moved joint), so bones keep the reference's lengths whatever the
  driver's are. Vertices within a joint's reach blend the two transforms (linear-blend skinning,
  weights ramping across the joint along the child's bone), so elbows and shoulders bend smoothly.
* **Rendering**: per moved part, each triangle is rasterised with its index into a small buffer
  (``cv2.fillConvexPoly``); the triangle's affine map then gives every pixel its source position, a
  dense backward map for one ``cv2.remap`` of the texture and of the part's alpha. Parts are
  composited over the plate back to front (legs, torso, head, arms), so an arm that crosses the
  torso or the face is drawn in front of it. A part at rest is pasted without a remap.

The torso layer also covers the pixels of limbs lying in front of it in the reference, with colours
filled in from the torso around them: when such an arm moves away, it uncovers shirt, not wall.

``texture`` is the frame to cut the parts from: the reference, or the face engine's frame (mouth,
eyes, head already moved), which is how audio and pose combine.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models import keypoints as kpl

VISIBLE = 0.5  # a reference point counts when at least this confident (MediaPipe visibility)
DRIVER_CONFIDENT = 0.3  # a driving point below this leaves its bone at rest relative to its parent
MAX_HEAD_TURN = np.deg2rad(35)  # relative to the torso
MAX_TORSO_TURN = np.deg2rad(15)
_I = kpl.INDEX


@dataclass(frozen=True)
class PartSpec:
    name: str
    parent: str | None
    joint: str  # the point it hangs from (a keypoint or a virtual point, see ``_points``)
    end: str  # the other end of its bone
    radius: float  # half-width, in shoulder widths
    depth: int  # drawing order, back to front


def _limb(side: str) -> tuple[PartSpec, ...]:
    s = side
    return (
        PartSpec(f"{s}_thigh", "torso", f"{s}_hip", f"{s}_knee", 0.30, 1),
        PartSpec(f"{s}_shin", f"{s}_thigh", f"{s}_knee", f"{s}_ankle", 0.22, 2),
        PartSpec(f"{s}_foot", f"{s}_shin", f"{s}_ankle", f"{s}_foot_index", 0.16, 3),
        PartSpec(f"{s}_upper_arm", "torso", f"{s}_shoulder", f"{s}_elbow", 0.22, 5),
        PartSpec(f"{s}_forearm", f"{s}_upper_arm", f"{s}_elbow", f"{s}_wrist", 0.18, 6),
        PartSpec(f"{s}_hand", f"{s}_forearm", f"{s}_wrist", f"{s}_hand", 0.20, 7),
    )


PARTS: tuple[PartSpec, ...] = (
    PartSpec("torso", None, "neck", "pelvis", 0.5, 0),
    PartSpec("head", "torso", "neck", "head", 0.30, 4),
) + _limb("left") + _limb("right")
PART_INDEX = {p.name: i for i, p in enumerate(PARTS)}
_HEAD_POINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")


def _points(kp: np.ndarray, size: np.ndarray, thr: float, in_frame: bool) -> dict[str, tuple[np.ndarray, bool]]:
    """Named points (keypoints and the virtual neck, pelvis, head and hands) in pixels, with
    whether each is usable."""
    xy = kp[:, :2].astype(np.float64) * size
    ok = kp[:, 2] >= thr
    if in_frame:
        ok &= (kp[:, 0] >= 0) & (kp[:, 0] <= 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= 1)
    pts = {name: (xy[i], bool(ok[i])) for name, i in _I.items() if i < kpl.NUM_BODY}

    def mean_of(*names: str, need: int) -> tuple[np.ndarray, bool]:
        got = [pts[n][0] for n in names if pts[n][1]]
        return (np.mean(got, 0), True) if len(got) >= need else (np.zeros(2), False)

    pts["neck"] = mean_of("left_shoulder", "right_shoulder", need=2)
    pts["pelvis"] = mean_of("left_hip", "right_hip", need=2)
    pts["head"] = mean_of(*_HEAD_POINTS, need=2)
    for s in ("left", "right"):
        pts[f"{s}_hand"] = mean_of(f"{s}_index", f"{s}_pinky", need=1)
    return pts


def _rot(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def _angle(v: np.ndarray) -> float:
    return float(np.arctan2(v[1], v[0]))


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


def _segment_distance(px: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of points ``(..., 2)`` to the segment ``a-b``."""
    ab = b - a
    t = np.clip(((px - a) @ ab) / max(float(ab @ ab), 1e-9), 0, 1)
    return np.linalg.norm(px - (a + t[..., None] * ab), axis=-1)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


@dataclass
class Layer:
    """One part's mesh and what it is drawn with; read-only after the build."""

    part: int
    depth: int
    verts: np.ndarray  # (V, 2) float64 reference positions
    tris: np.ndarray  # (T, 3) int vertex indices
    bones: np.ndarray  # (k,) part indices the vertices are bound to
    weights: np.ndarray  # (V, k) float64, rows sum to 1
    alpha: np.ndarray  # (h, w) float32, the part's alpha inside ``box``
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the part at rest
    fill: np.ndarray | None = None  # (h, w, 3) uint8 colours behind limbs (torso), inside ``box``
    fill_mask: np.ndarray | None = None  # (h, w) bool where ``fill`` replaces the texture

    def __post_init__(self) -> None:
        self.inv_alpha = np.ascontiguousarray(1.0 - self.alpha)


@dataclass
class PosedSkeleton:
    """The puppet's pose for one driving frame: a rigid transform per part and its moved joints."""

    transforms: np.ndarray  # (P, 2, 3): reference pixel -> output pixel, per part
    joints: dict[str, np.ndarray]  # part name -> (2, 2) moved (joint, end) in pixels
    moved: np.ndarray  # (P,) bool: the part's transform is not the identity


class Puppet:
    """The reference's body as a layered puppet (see the module docstring).

    Same interface as the body rig it replaces: ``usable``, ``message`` (words for the user: what
    moves, what is left at rest and why), ``render(frame, target_kp) -> frame``. ``render`` keeps
    nothing per call, so one puppet may serve several threads.
    """

    def __init__(self, image: np.ndarray, ref_kp: np.ndarray, matte=None, plate: np.ndarray | None = None,
                 cell: int | None = None) -> None:
        from models.instant.matte import NoPersonError, person_matte

        img = np.ascontiguousarray(np.asarray(image)[..., :3])
        h, w = img.shape[:2]
        self.h, self.w = h, w
        self.size = np.array([w, h], np.float64)
        self.ref_kp = np.asarray(ref_kp, np.float32)
        self.layers: list[Layer] = []
        self.at_rest: list[str] = []
        self.usable = False
        self.matte = None
        self.plate = img
        pts = _points(self.ref_kp, self.size, VISIBLE, in_frame=True)
        if not pts["neck"][1] and matte is None and self.ref_kp[:kpl.NUM_BODY, 2].max() > 0:
            # A face but no shoulders (drawn characters, tight crops): the segmenting pose model,
            # asked with a low detection threshold, may still find the body; its landmarks then rig
            # it, provided its matte covers the face that was found.
            try:
                matte = person_matte(img, self.ref_kp, min_confidence=0.1)
            except NoPersonError:
                matte = None
            if matte is not None and matte.landmarks is not None:
                kp = self.ref_kp.copy()
                kp[:kpl.NUM_BODY] = matte.landmarks
                pts = _points(kp, self.size, VISIBLE, in_frame=True)
                if pts["neck"][1]:
                    self.ref_kp = kp
        self.ref_points = pts
        if not pts["neck"][1]:
            self.message = ("too little of the body is visible in the reference for pose driving (no shoulders "
                            "found), so only the face can move")
            return
        try:
            self.matte = matte if matte is not None else person_matte(img, self.ref_kp)
        except NoPersonError as e:
            self.message = str(e)
            return
        from models.instant.plate import background_plate, fill_from

        self.plate = plate if plate is not None else background_plate(img, self.matte.mask)
        ls, rs = pts["left_shoulder"][0], pts["right_shoulder"][0]
        self.scale = max(float(np.linalg.norm(ls - rs)), 4.0)  # shoulder width, px
        self.cell = int(cell or max(6, round(max(h, w) / 48)))

        # Which parts exist: both ends visible, and the parent exists.
        present = np.zeros(len(PARTS), bool)
        self.ref_joint = np.zeros((len(PARTS), 2))
        self.ref_end = np.zeros((len(PARTS), 2))
        for i, p in enumerate(PARTS):
            if p.parent is None:
                present[i] = True
                self.ref_joint[i] = pts["neck"][0]
                down = _rot(np.pi / 2) @ ((ls - rs) / self.scale)  # perpendicular to the shoulders
                if down[1] < 0:
                    down = -down
                self.ref_end[i] = pts["pelvis"][0] if pts["pelvis"][1] else pts["neck"][0] + 1.6 * self.scale * down
                continue
            present[i] = present[PART_INDEX[p.parent]] and pts[p.joint][1] and pts[p.end][1]
            self.ref_joint[i], self.ref_end[i] = pts[p.joint][0], pts[p.end][0]
        self.present = present
        self.at_rest = [p.name for i, p in enumerate(PARTS) if not present[i]]

        label = self._label_pixels(pts)
        alpha = self.matte.alpha
        # Torso colours behind the limbs that cover it in the reference.
        # The polygon joins the shoulder and hip landmarks, which lie inside the silhouette: widen
        # it by a limb's half-width to reach the torso's sides.
        torso_poly = self._torso_polygon(pts)
        centre = torso_poly.mean(0)
        side = torso_poly - centre
        side = side / np.maximum(np.linalg.norm(side, axis=1, keepdims=True), 1e-9)
        torso_poly = torso_poly + 0.15 * self.scale * side
        in_torso = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(in_torso, np.round(torso_poly).astype(np.int32), 1)
        limb = self.matte.mask & (label > 0)
        behind = limb & (in_torso > 0)
        torso_known = self.matte.mask & (label == 0)
        fill_img = fill_from(img, behind, torso_known) if behind.any() and torso_known.any() else None

        for i in range(len(PARTS)):
            if not present[i]:
                continue
            region = (label == i) & (alpha > 0.01)
            fm = None
            if i == 0 and fill_img is not None:
                fm = behind
                region = region | behind
            if not region.any():
                continue
            # The part's edges inside the matte are cuts through the figure, not outlines: feather
            # them outward by a pixel or two (under the next part at rest, soft once it moves away).
            soft = np.maximum(region, cv2.GaussianBlur(region.astype(np.float32), (0, 0), 1.2) * 1.6)
            a = (np.minimum(soft, 1.0) * alpha).astype(np.float32)
            if fm is not None:
                a = np.where(fm, np.maximum(a, np.minimum(soft, 1.0)), a).astype(np.float32)
            self.layers.append(self._layer(i, region, a, fm, fill_img))
        self.layers.sort(key=lambda L: L.depth)
        self.usable = len(self.layers) > 0 and present.sum() >= 2
        moving = [p.name.replace("_", " ") for i, p in enumerate(PARTS) if present[i] and i > 0]
        rest = [n.replace("_", " ") for n in self.at_rest]
        if not self.usable:
            self.message = ("no limb of the body is visible in the reference for pose driving, so only the face "
                            "can move")
        else:
            self.message = "body puppet: " + ", ".join(moving) + " follow the pose"
            if rest:
                self.message += "; left at rest (not visible in the picture): " + ", ".join(rest)

    # -- build -------------------------------------------------------------------------------------
    def _torso_polygon(self, pts) -> np.ndarray:
        ls, rs = pts["left_shoulder"][0], pts["right_shoulder"][0]
        if pts["left_hip"][1] and pts["right_hip"][1]:
            lh, rh = pts["left_hip"][0], pts["right_hip"][0]
        else:
            d = self.ref_end[0] - self.ref_joint[0]
            lh, rh = ls + 1.2 * d, rs + 1.2 * d
        return np.array([ls, rs, rh, lh])

    def _label_pixels(self, pts) -> np.ndarray:
        """``(H, W)`` int8: the part index of every pixel (meaningful inside the matte)."""
        h, w = self.h, self.w
        # At half resolution: labels are smooth regions, and this is the slowest step of the build.
        s = 2
        hs, ws = -(-h // s), -(-w // s)
        grid = np.stack(np.meshgrid(np.arange(ws) * s + 0.5 * (s - 1), np.arange(hs) * s + 0.5 * (s - 1)), -1)
        best = np.full((hs, ws), np.inf)
        label = np.zeros((hs, ws), np.int8)
        poly = self._torso_polygon(pts).astype(np.float32)
        # Distance to the torso polygon (0 inside).
        outside = (1 - self._poly_mask(poly / s, (hs, ws))).astype(np.uint8)
        dist = cv2.distanceTransform(outside, cv2.DIST_L2, 3) * s
        best[:] = 0.7 + dist / (0.3 * self.scale)
        for i, p in enumerate(PARTS):
            if i == 0 or not self.present[i]:
                continue
            a, b = self.ref_joint[i], self.ref_end[i]
            if p.name == "head":
                # From just above the neck to past the crown: the head's pixels, hair included.
                a, b = a + 0.35 * (b - a), b + 0.6 * (b - a)
            elif p.name.endswith(("hand", "foot")):
                b = b + 0.5 * (b - a)  # fingers and toes reach past the landmarks
            cost = _segment_distance(grid, a, b) / (p.radius * self.scale)
            better = cost < best
            best[better] = cost[better]
            label[better] = i
        return cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)

    @staticmethod
    def _poly_mask(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        m = np.zeros(shape, np.uint8)
        cv2.fillConvexPoly(m, np.round(poly * 16).astype(np.int32), 1, cv2.LINE_8, 4)
        return m

    def _layer(self, i: int, region: np.ndarray, alpha: np.ndarray, fill_mask, fill_img) -> Layer:
        c = self.cell
        h, w = self.h, self.w
        ys, xs = np.nonzero(region)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        # Cells of the global grid that the region touches (one cell of margin for the remap's taps).
        gy0, gx0 = max(0, y0 // c - 1), max(0, x0 // c - 1)
        gy1, gx1 = min(-(-h // c), -(-y1 // c) + 1), min(-(-w // c), -(-x1 // c) + 1)
        sub = np.zeros(((gy1 - gy0) * c, (gx1 - gx0) * c), np.uint8)
        r = region[gy0 * c:gy1 * c, gx0 * c:gx1 * c]
        sub[:r.shape[0], :r.shape[1]] = r
        occ = sub.reshape(gy1 - gy0, c, gx1 - gx0, c).any((1, 3))
        occ = cv2.dilate(occ.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        cy, cx = np.nonzero(occ)
        cy, cx = cy + gy0, cx + gx0
        # Vertices: corners of the occupied cells, numbered uniquely.
        corners = np.stack([np.stack([cx, cy], 1), np.stack([cx + 1, cy], 1),
                            np.stack([cx + 1, cy + 1], 1), np.stack([cx, cy + 1], 1)], 1)  # (C, 4, 2)
        uniq, inv = np.unique(corners.reshape(-1, 2), axis=0, return_inverse=True)
        inv = inv.reshape(-1, 4)
        tris = np.concatenate([inv[:, [0, 1, 2]], inv[:, [0, 2, 3]]])
        verts = uniq.astype(np.float64) * c
        bones, weights = self._weights(i, verts)
        bx0, by0 = max(0, int(x0) - 1), max(0, int(y0) - 1)
        bx1, by1 = min(w, int(x1) + 1), min(h, int(y1) + 1)
        a = np.ascontiguousarray(alpha[by0:by1, bx0:bx1])
        fill = fm = None
        if fill_mask is not None:
            fm = np.ascontiguousarray(fill_mask[by0:by1, bx0:bx1])
            fill = np.ascontiguousarray(fill_img[by0:by1, bx0:bx1])
        return Layer(i, PARTS[i].depth, verts, tris, bones, weights, a, (bx0, by0, bx1, by1), fill, fm)

    def _weights(self, i: int, verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Skinning weights of the vertices of part ``i``: its own bone, blended with its parent's
        (and its children's) near the joints they share."""
        n = len(verts)
        parts = [i]
        w = {i: np.ones(n)}
        zones = []
        p = PARTS[i]
        if p.parent is not None:
            zones.append((i, PART_INDEX[p.parent], False))
        for j, q in enumerate(PARTS):
            if q.parent == p.name and self.present[j]:
                zones.append((j, i, True))
        for child, parent, self_is_parent in zones:
            jz = self.ref_joint[child]
            u = self.ref_end[child] - jz
            u = u / max(np.linalg.norm(u), 1e-9)
            rz = max(PARTS[child].radius * self.scale, 2.0)
            s = (verts - jz) @ u / rz  # signed position along the child's bone, in its half-widths
            alpha_child = _smoothstep((s + 1.0) / 2.0)
            other = parent if not self_is_parent else child
            if other not in w:
                w[other] = np.zeros(n)
                parts.append(other)
            if self_is_parent:
                # Parent vertices near the joint lean toward the child, fading with the distance
                # from the joint so that a torso beside a hanging arm is not pulled along.
                r = np.linalg.norm(verts - jz, axis=1) / rz
                f = 1.0 - _smoothstep((r - 1.2) / 0.8)
                moved = w[i] * alpha_child * f
                w[i] -= moved
                w[child] += moved
            else:
                moved = w[i] * (1.0 - alpha_child)
                w[i] -= moved
                w[parent] += moved
        bones = np.array(parts)
        weights = np.stack([w[k] for k in parts], 1)
        return bones, weights / weights.sum(1, keepdims=True)

    # -- pose --------------------------------------------------------------------------------------
    def solve(self, target_kp: np.ndarray) -> PosedSkeleton:
        """Rigid transforms of the parts for a driving pose ``(K, 3)`` in the reference's frame.

        Angles come from the driver, lengths from the reference: each part turns about its joint,
        which its parent has already carried to its new place."""
        t = np.asarray(target_kp, np.float64).copy()
        ls, rs = _I["left_shoulder"], _I["right_shoulder"]
        if (t[[ls, rs], 2] >= DRIVER_CONFIDENT).all() and \
                np.sign(t[ls, 0] - t[rs, 0]) != np.sign(self.ref_kp[ls, 0] - self.ref_kp[rs, 0]):
            # A driver turned away (or mislabelled) has left and right crossed; take it as mirrored.
            t = t[list(kpl.MIRROR_PERMUTATION)]
        drv = _points(t, self.size, DRIVER_CONFIDENT, in_frame=False)
        ref = self.ref_points
        n = len(PARTS)
        theta = np.zeros(n)
        transforms = np.zeros((n, 2, 3))
        joints = {}
        moved = np.zeros(n, bool)
        for i, p in enumerate(PARTS):
            if not self.present[i]:
                transforms[i] = transforms[PART_INDEX[p.parent]] if p.parent else np.eye(2, 3)
                theta[i] = theta[PART_INDEX[p.parent]] if p.parent else 0.0
                continue
            jr, er = self.ref_joint[i], self.ref_end[i]
            if p.parent is None:
                # The torso stays where the picture has it (one photo cannot walk across its frame);
                # it leans a little with the driver's shoulders, unless the frame cuts it.
                th = 0.0
                if drv["left_shoulder"][1] and drv["right_shoulder"][1] and not self._torso_cut():
                    d = drv["left_shoulder"][0] - drv["right_shoulder"][0]
                    th = float(np.clip(_wrap(_angle(d) - _angle(ref["left_shoulder"][0] - ref["right_shoulder"][0])),
                                       -MAX_TORSO_TURN, MAX_TORSO_TURN))
                    if abs(th) < np.deg2rad(1.0):
                        th = 0.0
                centre = jr if not ref["pelvis"][1] else 0.5 * (jr + er)
                rot = _rot(th)
                transforms[i, :, :2] = rot
                transforms[i, :, 2] = centre - rot @ centre
                theta[i] = th
            else:
                k = PART_INDEX[p.parent]
                jn = transforms[k, :, :2] @ jr + transforms[k, :, 2]
                th = theta[k]
                if p.name == "head":
                    for a, b in (("left_eye", "right_eye"), ("left_ear", "right_ear")):
                        if drv[a][1] and drv[b][1] and ref[a][1] and ref[b][1]:
                            turn = _wrap(_angle(drv[a][0] - drv[b][0]) - _angle(ref[a][0] - ref[b][0]))
                            th = theta[k] + float(np.clip(_wrap(turn - theta[k]), -MAX_HEAD_TURN, MAX_HEAD_TURN))
                            break
                elif drv[p.joint][1] and drv[p.end][1]:
                    d = drv[p.end][0] - drv[p.joint][0]
                    if np.linalg.norm(d) > 1e-6:
                        th = _wrap(_angle(d) - _angle(er - jr))
                rot = _rot(th)
                transforms[i, :, :2] = rot
                transforms[i, :, 2] = jn - rot @ jr
                theta[i] = th
            moved[i] = np.abs(transforms[i] - np.eye(2, 3)).max() > 1e-3
            joints[p.name] = np.stack([transforms[i, :, :2] @ x + transforms[i, :, 2] for x in (jr, er)])
        return PosedSkeleton(transforms, joints, moved)

    def _torso_cut(self) -> bool:
        """Whether the frame's edge cuts the torso (then it cannot lean without showing the cut)."""
        for L in self.layers:
            if L.part == 0:
                x0, y0, x1, y1 = L.box
                return x0 <= 1 or y0 <= 1 or x1 >= self.w - 1 or y1 >= self.h - 1
        return True

    # -- render ------------------------------------------------------------------------------------
    def render(self, texture: np.ndarray, target_kp: np.ndarray) -> np.ndarray:
        """The frame ``(H, W, 3)`` uint8 for a driving pose: the parts of ``texture`` (the reference or
        the face engine's frame), posed, over the background plate."""
        return self.render_layers(texture, target_kp)[0]

    def render_layers(self, texture: np.ndarray, target_kp: np.ndarray,
                      coverage: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """``(frame, cover)``: the frame, and with ``coverage`` the puppet's alpha ``(H, W)`` float32
        in it (how much of each output pixel is the person)."""
        if not self.usable:
            return texture, (np.zeros(texture.shape[:2], np.float32) if coverage else None)
        pose = self.solve(target_kp)
        out = self.plate.copy()
        cover = np.zeros((self.h, self.w), np.float32) if coverage else None
        for L in self.layers:
            x0, y0, x1, y1 = L.box
            tex = texture[y0:y1, x0:x1]
            if L.fill is not None:
                tex = tex.copy()
                tex[L.fill_mask] = L.fill[L.fill_mask]
            if not pose.moved[L.bones].any():
                src, a, inv, box = tex, L.alpha, L.inv_alpha, L.box
            else:
                got = self._warp(L, pose, np.ascontiguousarray(tex))
                if got is None:
                    continue
                src, a, box = got
                inv = 1.0 - a
            bx0, by0, bx1, by1 = box
            # uint8 blend with float weights, vectorised by OpenCV: out = a * src + (1 - a) * out.
            out[by0:by1, bx0:bx1] = cv2.blendLinear(np.ascontiguousarray(src), out[by0:by1, bx0:bx1], a, inv)
            if cover is not None:
                c = cover[by0:by1, bx0:bx1]
                c += (1.0 - c) * a
        return out, cover

    def _warp(self, L: Layer, pose: PosedSkeleton, tex: np.ndarray):
        """A moved layer: its pixels ``(h, w, 3)`` uint8, alpha ``(h, w)`` float32 and box in the
        output. ``tex`` is the texture inside the layer's rest box."""
        m = pose.transforms[L.bones]  # (k, 2, 3)
        vh = np.concatenate([L.verts, np.ones((len(L.verts), 1))], 1)  # (V, 3)
        per_bone = np.einsum("kij,vj->vki", m, vh)  # (V, k, 2)
        dst = (per_bone * L.weights[..., None]).sum(1)  # (V, 2)
        lo = np.floor(dst.min(0)).astype(int)
        hi = np.ceil(dst.max(0)).astype(int) + 1
        x0, y0 = max(0, lo[0]), max(0, lo[1])
        x1, y1 = min(self.w, hi[0]), min(self.h, hi[1])
        if x1 <= x0 or y1 <= y0:
            return None
        # Affine map output -> reference per triangle: [src] = A [dst; 1], from its three corners.
        bx0, by0 = L.box[0], L.box[1]
        td = dst[L.tris]  # (T, 3, 2)
        ts = L.verts[L.tris] - (bx0, by0)  # source in the layer's box, where its texture and alpha are
        dh = np.concatenate([td - (x0, y0), np.ones((len(td), 3, 1))], 2)  # (T, 3, 3)
        det = np.linalg.det(dh)
        good = np.abs(det) > 1e-6
        aff = np.zeros((len(td), 2, 3))
        aff[good] = np.linalg.solve(dh[good], ts[good]).transpose(0, 2, 1)
        ids = np.zeros((y1 - y0, x1 - x0), np.uint16)
        shift = 4
        pts = np.round((td - (x0, y0)) * (1 << shift)).astype(np.int32)
        for k in np.nonzero(good)[0]:
            cv2.fillConvexPoly(ids, pts[k], int(k) + 1, cv2.LINE_8, shift)
        sel = ids > 0
        if not sel.any():
            return None
        ys, xs = np.nonzero(sel)
        a6 = aff.reshape(-1, 6)[ids[sel].astype(np.intp) - 1]
        mapx = np.full(ids.shape, -1e4, np.float32)
        mapy = np.full(ids.shape, -1e4, np.float32)
        mapx[sel] = a6[:, 0] * xs + a6[:, 1] * ys + a6[:, 2]
        mapy[sel] = a6[:, 3] * xs + a6[:, 4] * ys + a6[:, 5]
        src = cv2.remap(tex, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        a = cv2.remap(L.alpha, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return src, a, (x0, y0, x1, y1)


def waving_arms(ref_kp: np.ndarray, num_frames: int, fps: float = 25.0, aspect: float = 1.0,
                raise_deg: float = 70.0, wave_deg: float = 45.0, hz: float = 0.8) -> np.ndarray:
    """A driving pose ``(T, K, 3)`` with constant bones: the reference's skeleton (in a frame of
    ``aspect`` = width / height) with both upper arms raised and lowered and the forearms waving
    (a test and demo driver)."""
    ref = np.asarray(ref_kp, np.float32)
    out = np.repeat(ref[None], num_frames, 0).copy()
    iso = np.array([aspect, 1.0])  # angles are turned in pixel proportions, not normalised ones
    for side, sign in (("left", -1.0), ("right", 1.0)):
        sh, el = _I[f"{side}_shoulder"], _I[f"{side}_elbow"]
        lower = [_I[f"{side}_{n}"] for n in ("wrist", "index", "pinky", "thumb")]
        for f in range(num_frames):
            ph = 2 * np.pi * hz * f / fps
            up = sign * np.deg2rad(raise_deg) * 0.5 * (1 - np.cos(ph))
            wave = sign * np.deg2rad(wave_deg) * np.sin(2 * ph)
            r_up, r_all = _rot(up), _rot(up + wave)
            e = ref[sh, :2] * iso + r_up @ ((ref[el, :2] - ref[sh, :2]) * iso)
            out[f, el, :2] = e / iso
            for j in lower:
                out[f, j, :2] = (e + r_all @ ((ref[j, :2] - ref[el, :2]) * iso)) / iso
    return out
