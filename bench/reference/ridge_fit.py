"""Baseline for the ridge benchmark: scikit-learn RidgeCV(alpha_per_target=True) refitted from scratch.

argv: dir S D N ; reads X.f64 (S x D), Y.f64 (S x N), Xtest.f64 (T x D), alphas.f64 from dir.
Prints JSON: best fit seconds over repeats, predictions on Xtest (T x N), chosen alphas, BLAS info.
"""
import json
import sys
import time

import numpy as np
from sklearn.linear_model import RidgeCV
from threadpoolctl import threadpool_info

d, S, D, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
X = np.fromfile(f"{d}/X.f64").reshape(S, D)
Y = np.fromfile(f"{d}/Y.f64").reshape(S, N)
Xtest = np.fromfile(f"{d}/Xtest.f64").reshape(-1, D)
alphas = np.fromfile(f"{d}/alphas.f64")
times = []
for _ in range(2):
    t = time.perf_counter()
    m = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y)
    times.append(time.perf_counter() - t)
json.dump({"seconds": min(times), "pred": m.predict(Xtest).tolist(), "alpha": np.atleast_1d(m.alpha_).tolist(),
           "blas": [f"{i.get('internal_api')} {i.get('num_threads')} threads" for i in threadpool_info()]}, sys.stdout)
