"""Baseline for the maps benchmark: PyTorch CPU autograd on the same architecture and input size.

MobileNetV2 with width multiplier 1.4 at 224 x 224 (torchvision's definition, random weights: timing only),
features = global average of the last 1792-channel layer, as in the nsfwjs MobileNetV2 1.4 we use.
A pair = two forward passes and two vector-Jacobian products of <v, phi(x)>. Prints JSON timings.
argv: threads repeats
"""
import json
import sys
import time

import torch
from torchvision.models import mobilenet_v2

threads, repeats = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
net = mobilenet_v2(width_mult=1.4).features.eval()
for p in net.parameters():
    p.requires_grad_(False)


def phi(x):
    return net(x).mean(dim=(2, 3))


def pair():
    xo = torch.rand(1, 3, 224, 224, requires_grad=True)
    xr = torch.rand(1, 3, 224, 224, requires_grad=True)
    fo = phi(xo)
    fr = phi(xr)
    v = (torch.rand(fo.shape[1]) * fo.detach() * fr.detach())[0]
    (go,) = torch.autograd.grad((fo[0] * v).sum(), xo)
    (gr,) = torch.autograd.grad((fr[0] * v).sum(), xr)
    return go, gr


with torch.no_grad():
    dim = phi(torch.rand(1, 3, 224, 224)).shape[1]
pair()  # warm-up
times = []
for _ in range(repeats):
    t = time.perf_counter()
    pair()
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"pairSeconds": times[len(times) // 2], "dim": dim, "threads": threads, "torch": torch.__version__}))
