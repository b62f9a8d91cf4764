"""Issue 15 round 5, candidate 5r: `ted` with the prior's prediction as a column of weight 11, on fresh seeds 10-39
(protocol in docs/experiments.md, fixed before this run)."""
import json, sys
from pathlib import Path
import numpy as np
from sklearn.base import BaseEstimator
from ml_backend.config import Config
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.evaluation.replay import load_dataset, run_trial, subsample_rows
from ml_backend.prediction.prior import fit_prior, resolve_prior
from ml_backend.selection import SELECTORS
from ml_backend.selection.ted import TEDSelector

OUT = Path(".mos/exp/r5"); OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(10, 40)
BUDGETS = (25, 50, 100, 200)
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))

@SELECTORS.register("ted_prior")
class TedPrior(BaseEstimator):
    """`ted` on [X, prior(X) x 121]: the prior column with weight 11 (round 2's candidate 5)."""
    def __init__(self, n_select: int = 25, random_state: int | None = 0, prior: str = "auto") -> None:
        self.n_select, self.random_state, self.prior = n_select, random_state, prior
    def check_params(self):
        return self
    def fit(self, X, y=None):
        p = resolve_prior(self.prior, X.shape[1]).predict(X)
        Xs = np.hstack([X, np.repeat(p[:, None], 121, axis=1).astype(X.dtype)])
        self.selected_ = TEDSelector(n_select=self.n_select, random_state=self.random_state).fit(Xs).selected_
        return self

def run(dataset, prior_spec, labels, pool, tag):
    X = ex.extract(dataset.paths, progress=False).features
    settings = {"ridge": {**Config().params_for("ridge"), "prior": prior_spec}}
    res = {}
    for seed in SEEDS:
        keep = subsample_rows(len(dataset.paths), pool / len(dataset.paths), seed)
        Xk, dk = X[keep], dataset.subset(keep)
        for lab in labels:
            for b in BUDGETS:
                for name, sel in (("base", "ted"), ("5r", f"ted_prior:prior={prior_spec}")):
                    res[(name, lab, b, seed)] = run_trial(Xk, dk, sel, "ridge", b, seed, lab, settings=settings).metrics["srcc"]
        print(tag, "seed", seed, "done", flush=True)
    rows = []
    for lab in labels:
        for b in BUDGETS:
            d = np.array([res[("5r", lab, b, s)] - res[("base", lab, b, s)] for s in SEEDS])
            base = np.mean([res[("base", lab, b, s)] for s in SEEDS])
            rows.append((tag, "5r", lab, b, round(base, 3), round(d.mean(), 4), round(d.std(ddof=1) / np.sqrt(len(d)), 4)))
            print(*rows[-1], flush=True)
    return rows

out = {}
clive = load_dataset(Path("../shared/data/clive-dev"))
out["clive"] = run(clive, "auto", ["oracle", "single"], 320, "clive")
biq = load_dataset(Path("../shared/data/biq-dev"))
order = np.random.default_rng(0).permutation(len(biq.paths))
A, B = biq.subset(sorted(order[:2000])), biq.subset(sorted(order[2000:]))
prior_a = fit_prior(ex.extract(A.paths, progress=False).features, A.mos, ex.namespace, "biq-dev half A")
prior_a.save(OUT / "prior-biq-A.npz")
out["biq"] = run(B, str(OUT / "prior-biq-A.npz"), ["oracle"], 400, "biq")
json.dump(out, open(OUT / "results.json", "w"), indent=1)
