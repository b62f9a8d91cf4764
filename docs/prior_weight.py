"""Issue 15 round 7: the prior column's weight chosen jointly with the ridge penalty by leave-one-out
error (11a), and its control (protocol in docs/experiments.md, fixed before this run)."""
import json, time
from collections import Counter
from pathlib import Path
import numpy as np
from sklearn.base import BaseEstimator
from ml_backend.config import Config
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.evaluation.replay import load_dataset, run_trial, subsample_rows
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction import ridge as ridge_module
from ml_backend.prediction.prior import fit_prior
from ml_backend.selection import SELECTORS
from ml_backend.selection.ted import TEDSelector

OUT = Path(".mos/exp/r7"); OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(70, 100)
BUDGETS = (25, 50, 100, 200)
GRID = (11 / 3, 11.0, 33.0, 99.0)
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))
_picks: dict = {}
chosen: Counter = Counter()
cost = {"base": 0.0, "11a": 0.0}


@SELECTORS.register("ted_memo")
class TedMemo(BaseEstimator):
    """The default's `ted`, its picks memoised so that the configurations share them."""
    def __init__(self, n_select: int = 25, random_state: int | None = 0) -> None:
        self.n_select, self.random_state = n_select, random_state
    def check_params(self):
        return self
    def fit(self, X, y=None):
        key = (X.shape, self.n_select, self.random_state, float(X[:, :50].sum()), float(X[::7, -200:].sum()))
        if key not in _picks:
            _picks[key] = TEDSelector(n_select=self.n_select, random_state=self.random_state).fit(X).selected_
        self.selected_ = _picks[key]
        return self


@PREDICTORS.register("ridge_wsel")
class RidgeWeightChosen(BaseEstimator):
    """The default ridge fitted once per prior-column weight; the fit with the smallest mean squared
    leave-one-out residual kept."""
    def __init__(self, weights=GRID, prior: str = "auto", tag: str = "") -> None:
        self.weights, self.prior, self.tag = weights, prior, tag
    def check_params(self):
        return self
    def fit(self, X, y, images=None):
        best = None
        for w in self.weights:
            ridge_module.PRIOR_WEIGHT = w
            try:
                m = ridge_module.RidgePredictor(**{**Config().params_for("ridge"), "prior": self.prior}).fit(X, y)
            finally:
                ridge_module.PRIOR_WEIGHT = 11.0
            err = float(np.mean(m.loo_residuals_ ** 2))
            if best is None or err < best[0]:
                best = (err, w, m)
        self.weight_, self.model_ = best[1], best[2]
        if self.tag:
            chosen[(self.tag, len(y), round(self.weight_, 2))] += 1
        return self
    def predict_with_confidence(self, X, images=None):
        return self.model_.predict_with_confidence(X)


def run(dataset, prior_spec, labels, pool, tag):
    X = ex.extract(dataset.paths, progress=False).features
    base = {**Config().params_for("ridge"), "prior": prior_spec}
    configs = {"control": ("ridge_wsel", {"ridge_wsel": {"weights": (11.0,), "prior": prior_spec}}),  # pays `ted`
               "base": ("ridge", {"ridge": base}),
               "11a": ("ridge_wsel", {"ridge_wsel": {"weights": GRID, "prior": prior_spec}})}
    res = {}
    for seed in SEEDS:
        keep = subsample_rows(len(dataset.paths), pool / len(dataset.paths), seed)
        dk, Xk = dataset.subset(keep), X[keep]
        for lab in labels:
            for b in BUDGETS:
                for name, (pred, settings) in configs.items():
                    if name == "11a":
                        settings = {"ridge_wsel": {**settings["ridge_wsel"], "tag": f"{tag}/{lab}"}}
                    t0 = time.perf_counter()
                    res[(name, lab, b, seed)] = run_trial(Xk, dk, "ted_memo", pred, b, seed, lab,
                                                          settings=settings).metrics["srcc"]
                    if name in cost:
                        cost[name] += time.perf_counter() - t0
        print(tag, "seed", seed, "done", flush=True)
    rows = []
    for name in ("control", "11a"):
        for lab in labels:
            for b in BUDGETS:
                d = np.array([res[(name, lab, b, s)] - res[("base", lab, b, s)] for s in SEEDS])
                basem = np.mean([res[("base", lab, b, s)] for s in SEEDS])
                rows.append((tag, name, lab, b, round(basem, 3), round(d.mean(), 4),
                             round(d.std(ddof=1) / np.sqrt(len(d)), 4), float(np.abs(d).max())))
                print(*rows[-1], flush=True)
    return rows


out = {}
biq = load_dataset(Path("../shared/data/biq-dev"))
order = np.random.default_rng(0).permutation(len(biq.paths))
A, B = biq.subset(sorted(order[:2000])), biq.subset(sorted(order[2000:]))
prior_a = fit_prior(ex.extract(A.paths, progress=False).features, A.mos, ex.namespace, "biq-dev half A")
prior_a.save(OUT / "prior-biq-A.npz")
clive = load_dataset(Path("../shared/data/clive-dev"))
started = time.perf_counter()
out["clive"] = run(clive, "auto", ["oracle", "single"], 320, "clive")
out["biq"] = run(B, str(OUT / "prior-biq-A.npz"), ["oracle"], 400, "biq")
out["chosen"] = {f"{t} @{n} w={w}": c for (t, n, w), c in sorted(chosen.items())}
out["cost_s"] = cost
out["wall_s"] = time.perf_counter() - started
print(json.dumps({"chosen": out["chosen"], "cost_s": cost}, indent=1))
json.dump(out, open(OUT / "results.json", "w"), indent=1)
print("done", flush=True)
