"""Draw the bundled example reference: a simple toon portrait (deterministic, no inputs).

The synthetic toon world (models/data) renders the training characters; this script only makes
the small README example so a fresh clone has a reference image to animate.
"""

import sys

import cv2
import numpy as np


def draw(size: int = 256) -> np.ndarray:
    s = size / 256
    img = np.zeros((size, size, 3), np.uint8)
    for y in range(size):  # sky-to-floor gradient background
        img[y] = (70 + 60 * y // size, 140 + 40 * y // size, 200 - 30 * y // size)

    def P(x, y):
        return int(round(x * s)), int(round(y * s))

    def R(r):
        return int(round(r * s))

    aa = cv2.LINE_AA
    cv2.ellipse(img, P(128, 270), (R(100), R(70)), 0, 0, 360, (220, 90, 60), -1, aa)  # shirt
    cv2.rectangle(img, P(112, 170), P(144, 205), (120, 170, 235), -1, aa)  # neck
    cv2.ellipse(img, P(128, 120), (R(62), R(72)), 0, 0, 360, (130, 185, 245), -1, aa)  # face
    cv2.ellipse(img, P(128, 78), (R(68), R(42)), 0, 180, 360, (40, 50, 90), -1, aa)  # hair
    for cx in (102, 154):
        cv2.ellipse(img, P(cx, 112), (R(13), R(16)), 0, 0, 360, (255, 255, 255), -1, aa)
        cv2.circle(img, P(cx + 2, 115), R(7), (60, 40, 20), -1, aa)
        cv2.circle(img, P(cx + 4, 112), R(2), (255, 255, 255), -1, aa)
        cv2.ellipse(img, P(cx, 90), (R(14), R(4)), 0, 180, 360, (40, 50, 90), R(3), aa)  # brows
    cv2.ellipse(img, P(128, 160), (R(22), R(9)), 0, 0, 180, (60, 40, 160), -1, aa)  # mouth
    cv2.ellipse(img, P(86, 145), (R(10), R(6)), 0, 0, 360, (120, 150, 250), -1, aa)  # cheeks
    cv2.ellipse(img, P(170, 145), (R(10), R(6)), 0, 0, 360, (120, 150, 250), -1, aa)
    return img[..., ::-1].copy()  # drawn in BGR


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "resources/examples/toon.png"
    cv2.imwrite(out, draw()[..., ::-1])
