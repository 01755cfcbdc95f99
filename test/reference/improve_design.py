"""Independent reference for the improve design (server/src/compute/followup.ts), in weight space.

The server works in function space over the candidate pool (kernels, a solve per regularisation value,
rank-1 updates of the pool covariance). Here: Bayesian linear regression on phi(x) = [x - m, 1] (m: the
pool's mean features), prior w ~ N(0, I / a), unit noise per trial, so the posterior precision is
a I + sum over trials of phi phi^T; the predictive covariance over the pool is Phi_P Sigma_w Phi_P^T,
rebuilt by inversion after each pick. Gain of one more trial of candidate c for value a:
|Sigma_P[:, c]|^2 / (Sigma_P[c, c] + 1) / tr(Sigma_P at the request), summed over the grid; greedy, each
candidate at most once per request.

Input JSON on stdin: {"pool": [[...]] (M x D), "observed": [[...]] (n x D), "counts": [...] (n),
"alphas": [...], "count": k}. Output JSON: {"picks": [...], "percent": [...]} (percent of the remaining
summed, weighted variance each pick removes).
"""
import json
import sys

import numpy as np

d = json.load(sys.stdin)
P = np.array(d["pool"], dtype=np.float64)
m = P.mean(axis=0)
phi = lambda X: np.hstack([X - m, np.ones((X.shape[0], 1))])
PhiP = phi(P)
obs = np.array(d["observed"], dtype=np.float64).reshape(-1, P.shape[1])
PhiT = phi(obs) if len(obs) else np.zeros((0, PhiP.shape[1]))
counts = np.array(d["counts"], dtype=np.float64)
precisions = [a * np.eye(PhiP.shape[1]) + PhiT.T @ (counts[:, None] * PhiT) for a in d["alphas"]]
cov = lambda prec: PhiP @ np.linalg.inv(prec) @ PhiP.T
weights = [1.0 / np.trace(cov(prec)) for prec in precisions]
before = sum(w * np.trace(cov(prec)) for w, prec in zip(weights, precisions))
picks, percent = [], []
for _ in range(d["count"]):
    gains = np.zeros(len(P))
    for w, prec in zip(weights, precisions):
        S = cov(prec)
        gains += w * (S ** 2).sum(axis=0) / (np.diag(S) + 1)
    gains[picks] = -np.inf
    c = int(np.argmax(gains))
    picks.append(c)
    percent.append(100 * gains[c] / before)
    precisions = [prec + np.outer(PhiP[c], PhiP[c]) for prec in precisions]
json.dump({"picks": picks, "percent": percent}, sys.stdout)
