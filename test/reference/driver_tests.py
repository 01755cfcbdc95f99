"""Independent reference for the driver tests (numpy / scipy), fed raw trials as JSON on stdin.

Input: {"stimuli": [{"category"}], "channels": C, "trials": [{"stimulus": i, "responses": [C]}],
        "declared": category or null, "minRepeats", "selectivityAlpha", "q",
        "welch": [[[n, mean, var], [n, mean, var]], ...]  (summary pairs for the plain Welch check),
        "permutation": [{"means": [...], "labels": [...], "k": int, "declared": bool}]  (exact enumeration)}
Output: {"welch": [{"t", "df", "p"}], "channels": [{"preferred", "selectivityP", "candidates": [{"stimulus",
         "t", "df", "p", "q"}], "drivers": [stimulus, ...]}], "permutation": [exact p, ...]}

Selectivity: one-sided Welch t-test (scipy.stats.ttest_ind, equal_var=False) of the preferred category's
stimulus means against the other stimuli's, p times the number of categories when the preferred category is
the highest trial mean (not declared). Candidates: scipy's Welch test of each out-of-category stimulus' trials
against all trials of the preferred category; Benjamini-Hochberg q-values.
"""
import itertools
import json
import sys

import numpy as np
from scipy import stats


def welch_df(a, b):
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    return (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))


def bh(p):
    p = np.asarray(p, dtype=float)
    m = len(p)
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1)
    return out


d = json.load(sys.stdin)
out = {"welch": [], "channels": [], "permutation": []}
for (na, ma, va), (nb, mb, vb) in d.get("welch", []):
    r = stats.ttest_ind_from_stats(ma, np.sqrt(va), na, mb, np.sqrt(vb), nb, equal_var=False, alternative="greater")
    sa, sb = va / na, vb / nb
    out["welch"].append({"t": float(r.statistic), "df": float((sa + sb) ** 2 / (sa**2 / (na - 1) + sb**2 / (nb - 1))), "p": float(r.pvalue)})

if "trials" in d:
    cats = sorted({s["category"] for s in d["stimuli"]})
    cat_of = [s["category"] for s in d["stimuli"]]
    S = len(cat_of)
    by_stim = [[] for _ in range(S)]
    for t in d["trials"]:
        by_stim[t["stimulus"]].append(t["responses"])
    for c in range(d["channels"]):
        x = [np.array([r[c] for r in rows]) for rows in by_stim]
        trials_of = {k: np.concatenate([x[s] for s in range(S) if cat_of[s] == k and len(x[s])]) for k in cats}
        pref = d["declared"] or max(cats, key=lambda k: trials_of[k].mean())
        means = np.array([x[s].mean() for s in range(S) if len(x[s])])
        labels = [cat_of[s] for s in range(S) if len(x[s])]
        a = means[[l == pref for l in labels]]
        b = means[[l != pref for l in labels]]
        sel = stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
        if not d["declared"]:
            sel = min(1.0, sel * len(set(labels)))
        ch = {"preferred": pref, "selectivityP": float(sel), "candidates": [], "drivers": []}
        if sel <= d["selectivityAlpha"]:
            ref = trials_of[pref]
            cand = [s for s in range(S) if cat_of[s] != pref and len(x[s]) >= max(2, d["minRepeats"])]
            rows = []
            for s in cand:
                r = stats.ttest_ind(x[s], ref, equal_var=False, alternative="greater")
                rows.append({"stimulus": s, "t": float(r.statistic), "df": float(welch_df(x[s], ref)), "p": float(r.pvalue)})
            if rows:
                for row, q in zip(rows, bh([r["p"] for r in rows])):
                    row["q"] = float(q)
            ch["candidates"] = rows
            ch["drivers"] = [r["stimulus"] for r in rows if r["q"] <= d["q"]]
        out["channels"].append(ch)

for case in d.get("permutation", []):
    means = np.array(case["means"])
    labels = case["labels"]
    present = sorted(set(labels))

    def diff(ls, k):
        ls = np.array(ls)
        return means[ls == k].mean() - means[ls != k].mean()

    def stat(ls):
        return diff(ls, case["k"]) if case["declared"] else max(diff(ls, k) for k in present)

    observed = stat(labels)
    # every distinct assignment of the labels to the stimuli is equally likely under exchangeability
    assignments = set(itertools.permutations(labels))
    out["permutation"].append(sum(stat(list(a)) >= observed - 1e-12 * abs(observed) for a in assignments) / len(assignments))

json.dump(out, sys.stdout)
