"""Independent reference for the per-neuron statistics (numpy / scipy), fed the raw trials as JSON on stdin.

Input: {"stimuli": [{"id", "category"}], "channels": C, "trials": [{"stimulus": i, "responses": [C]}]}
Output: per channel the category means, preferred category, selectivity index, d', split-half r and the
Spearman-Brown noise ceiling; per stimulus the mean and unbiased variance per channel.
"""
import json
import sys

import numpy as np
from scipy import stats

d = json.load(sys.stdin)
S = len(d["stimuli"])
C = d["channels"]
cats = sorted({s["category"] for s in d["stimuli"]})
by_stim = [[] for _ in range(S)]
for t in d["trials"]:
    by_stim[t["stimulus"]].append(t["responses"])
by_cat = {k: [] for k in cats}
for s, rows in enumerate(by_stim):
    by_cat[d["stimuli"][s]["category"]].extend(rows)

out = {"channels": [], "stimuli": []}
for c in range(C):
    means = {k: (float(np.mean([r[c] for r in by_cat[k]])) if by_cat[k] else None) for k in cats}
    pref = max((k for k in cats if means[k] is not None), key=lambda k: means[k])
    p = np.array([r[c] for r in by_cat[pref]])
    o = np.array([r[c] for k in cats if k != pref for r in by_cat[k]])
    si = (p.mean() - o.mean()) / (abs(p.mean()) + abs(o.mean()))
    dp = (p.mean() - o.mean()) / np.sqrt((p.var(ddof=1) + o.var(ddof=1)) / 2)
    even, odd = [], []
    for rows in by_stim:
        e = [r[c] for i, r in enumerate(rows) if i % 2 == 0]
        od = [r[c] for i, r in enumerate(rows) if i % 2 == 1]
        if e and od:
            even.append(np.mean(e))
            odd.append(np.mean(od))
    r = float(stats.pearsonr(even, odd)[0])
    out["channels"].append({"categoryMeans": means, "preferredCategory": pref, "selectivityIndex": float(si),
                            "dPrime": float(dp), "splitHalfR": r, "noiseCeiling": 2 * r / (1 + r)})
for s, rows in enumerate(by_stim):
    a = np.array(rows)
    out["stimuli"].append({"n": len(rows), "mean": a.mean(axis=0).tolist(),
                           "variance": a.var(axis=0, ddof=1).tolist() if len(rows) > 1 else None})
json.dump(out, sys.stdout)
