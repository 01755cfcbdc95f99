"""Independent reference for the CNN input (Pillow decodes, scipy interpolates), fed JSON on stdin.

Input: {"files": [path, ...], "size": N}. Output: {"images": [[N*N*3 floats], ...]}.
Each image: decoded by Pillow, composited onto mid-grey (128) where transparent, padded with grey to a
square (centred, the extra pixel at the bottom/right), then resized to N x N by bilinear interpolation
with aligned corners (TensorFlow's resize_bilinear(align_corners=True), the preprocessing nsfwjs feeds its
MobileNetV2): output pixel (i, j) samples (i (S-1)/(N-1), j (S-1)/(N-1)) with scipy.ndimage.map_coordinates,
order 1.
"""
import json
import sys

import numpy as np
from PIL import Image
from scipy import ndimage

d = json.load(sys.stdin)
N = d["size"]
out = []
for f in d["files"]:
    img = Image.open(f).convert("RGBA")
    grey = Image.new("RGBA", img.size, (128, 128, 128, 255))
    rgb = np.asarray(Image.alpha_composite(grey, img).convert("RGB"), dtype=np.float64) / 255
    h, w, _ = rgb.shape
    S = max(h, w)
    sq = np.full((S, S, 3), 128 / 255)
    top, left = (S - h) // 2, (S - w) // 2
    sq[top : top + h, left : left + w] = rgb
    coords = np.arange(N) * (S - 1) / (N - 1)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    res = np.stack([ndimage.map_coordinates(sq[:, :, k], [yy, xx], order=1, mode="nearest") for k in range(3)], axis=-1)
    out.append(res.ravel().tolist())
json.dump({"images": out}, sys.stdout)
