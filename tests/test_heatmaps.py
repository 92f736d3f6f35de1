import numpy as np
import pytest

from models import keypoints as kpl


def test_layout():
    assert kpl.NUM_KEYPOINTS == 95 and len(kpl.KEYPOINT_NAMES) == 95
    assert kpl.KEYPOINT_NAMES[kpl.LEFT_HAND_START] == "left_hand_wrist"
    assert kpl.KEYPOINT_NAMES[kpl.FACE_START] == "face_lip_corner_left"
    perm = np.array(kpl.MIRROR_PERMUTATION)
    assert (perm[perm] == np.arange(95)).all()


def test_heatmap_peaks_on_bone_and_absent_points_render_nothing():
    kp = kpl.empty_keypoints(2)
    a, b = kpl.INDEX["left_shoulder"], kpl.INDEX["left_elbow"]
    kp[0, a] = (0.25, 0.5, 1.0)
    kp[0, b] = (0.75, 0.5, 1.0)
    hm = kpl.render_heatmaps(kp, 32, 64, sigma=0.05).numpy()
    assert hm.shape == (kpl.HEATMAP_CHANNELS, 2, 32, 64)
    ch = list(kpl.BONE_GROUPS).index("left_arm")
    assert hm[ch, 0, 16, 32] > 0.9  # middle of the bone
    assert hm[ch, 0, 2, 32] < 0.05
    assert hm[:, 1].max() == 0  # second frame: nothing present
    others = [c for c in range(kpl.HEATMAP_CHANNELS) if c != ch]
    assert hm[others].max() < 1e-6


def test_mirror_swaps_sides():
    kp = kpl.empty_keypoints(1)
    kp[0, kpl.INDEX["left_wrist"]] = (0.2, 0.3, 1.0)
    m = kpl.mirror_keypoints(kp)
    assert np.allclose(m[0, kpl.INDEX["right_wrist"]], (0.8, 0.3, 1.0))


def test_validate_and_resample():
    with pytest.raises(ValueError, match="expected shape"):
        kpl.validate_keypoints(np.zeros((4, 10, 3)))
    kp = np.zeros((3, 95, 3), np.float32)
    kp[:, :, 0] = np.array([0.0, 0.5, 1.0])[:, None]
    kp[:, :, 2] = 1
    r = kpl.resample_keypoints(kp, 5)
    assert np.allclose(r[:, 0, 0], [0, 0.25, 0.5, 0.75, 1.0])
