"""Independent reference for the ridge encoding model: scikit-learn RidgeCV with per-target alphas.

Input JSON on stdin: {"X": [[...]] (S x D), "Y": [[...]] (S x N), "Xtest": [[...]], "alphas": [...]}
Output JSON: chosen alpha per neuron, predictions on Xtest (T x N), coefficients (N x D), intercepts,
and the leave-one-out squared errors summed over samples per (alpha, neuron).
"""
import json
import sys

import numpy as np
from sklearn.linear_model import RidgeCV

d = json.load(sys.stdin)
X = np.array(d["X"], dtype=np.float64)
Y = np.array(d["Y"], dtype=np.float64)
alphas = np.array(d["alphas"], dtype=np.float64)
kw = {"store_cv_values": True}
m = RidgeCV(alphas=alphas, alpha_per_target=True, fit_intercept=True, **kw).fit(X, Y)
cv = m.cv_values_  # (S, N, A) squared leave-one-out errors
json.dump({
    "alpha": np.atleast_1d(m.alpha_).tolist(),
    "pred": m.predict(np.array(d["Xtest"], dtype=np.float64)).tolist(),
    "coef": m.coef_.tolist(),
    "intercept": np.atleast_1d(m.intercept_).tolist(),
    "looLoss": cv.sum(axis=0).tolist(),  # (N, A)
}, sys.stdout)
