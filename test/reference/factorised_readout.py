"""Independent reference for the factorised space x feature readout (server/src/compute/factorised-readout.ts).

Input JSON on stdin: {"F": [...] (n x S x C flat), "y": [...], "height", "width", "channels",
"alphaMask", "alphaWeights", "smoothness"}.
Output JSON: the objective, mask, weights and intercept of
- "als": alternating least squares written here with numpy (np.linalg.solve on each step's normal equations,
  the Laplacian built with scipy.sparse's grid graph), from the mean-pooling mask, to convergence;
- "lbfgs": scipy.optimize.minimize (L-BFGS-B with its analytic gradient) on the full penalised objective from
  the ALS solution's neighbourhood and from a random start (the better of the two): a different algorithm.
"""
import json
import sys

import numpy as np
from scipy.optimize import minimize
from scipy.sparse.csgraph import laplacian

d = json.load(sys.stdin)
h, w_, C = d["height"], d["width"], d["channels"]
S = h * w_
F = np.array(d["F"], dtype=np.float64).reshape(-1, S, C)
y = np.array(d["y"], dtype=np.float64)
am, aw, sm = d["alphaMask"], d["alphaWeights"], d.get("smoothness", 0.0)
Fc = F - F.mean(axis=0)
yc = y - y.mean()

# grid graph adjacency (4 neighbours) -> Laplacian
A = np.zeros((S, S))
for r in range(h):
    for c in range(w_):
        s = r * w_ + c
        if c + 1 < w_:
            A[s, s + 1] = A[s + 1, s] = 1
        if r + 1 < h:
            A[s, s + w_] = A[s + w_, s] = 1
L = laplacian(A)


def objective(m, w):
    pred = np.einsum("isc,s,c->i", Fc, m, w)
    return float(((yc - pred) ** 2).sum() + am * m @ m + aw * w @ w + sm * m @ L @ m)


m = np.full(S, 1.0 / S)
w = np.zeros(C)
prev = np.inf
for it in range(5000):
    G = np.einsum("isc,s->ic", Fc, m)
    w = np.linalg.solve(G.T @ G + aw * np.eye(C), G.T @ yc)
    Z = np.einsum("isc,c->is", Fc, w)
    m = np.linalg.solve(Z.T @ Z + am * np.eye(S) + sm * L, Z.T @ yc)
    obj = objective(m, w)
    if prev - obj <= 1e-13 * obj:
        break
    prev = obj
if m.sum() < 0:
    m, w = -m, -w


def fun(theta):
    mm, ww = theta[:S], theta[S:]
    r = yc - np.einsum("isc,s,c->i", Fc, mm, ww)
    gm = -2 * np.einsum("i,isc,c->s", r, Fc, ww) + 2 * am * mm + 2 * sm * L @ mm
    gw = -2 * np.einsum("i,isc,s->c", r, Fc, mm) + 2 * aw * ww
    return objective(mm, ww), np.concatenate([gm, gw])


rng = np.random.default_rng(0)
best = None
for start in [np.concatenate([m, w]) + 0.01 * rng.standard_normal(S + C), rng.standard_normal(S + C) * 0.1]:
    res = minimize(fun, start, jac=True, method="L-BFGS-B", options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-10})
    if best is None or res.fun < best.fun:
        best = res
json.dump({
    "als": {"objective": objective(m, w), "mask": m.tolist(), "weights": w.tolist(),
            "intercept": float(y.mean() - np.einsum("sc,s,c->", F.mean(axis=0), m, w)), "iterations": it + 1},
    "lbfgs": {"objective": float(best.fun)},
}, sys.stdout)
