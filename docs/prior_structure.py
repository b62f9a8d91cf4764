"""Issue 15 round 9: the prior's feature relevance (9a, 9b) and a quality subspace from its
training data (9c) (protocol in docs/experiments.md, fixed before this run)."""
import json, time
from pathlib import Path
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.cross_decomposition import PLSRegression
from ml_backend.config import Config
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.features.standardise import Standardiser
from ml_backend.evaluation.replay import load_dataset, run_trial, subsample_rows
from ml_backend.prediction import ridge as ridge_module
from ml_backend.prediction.prior import QualityPrior, fit_prior, resolve_prior
from ml_backend.selection import SELECTORS
from ml_backend.selection.ted import TEDSelector

OUT = Path(".mos/exp/r9"); OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(130, 160)
BUDGETS = (25, 50, 100, 200)
N_PLS = 8
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))
_picks: dict = {}
state: dict = {"s": None, "d0": None}
cost: dict = {}


@SELECTORS.register("ted_memo")
class TedMemo(BaseEstimator):
    """The default's `ted` on the default features only, its picks memoised so that the
    configurations share them."""
    def __init__(self, n_select: int = 25, random_state: int | None = 0) -> None:
        self.n_select, self.random_state = n_select, random_state
    def check_params(self):
        return self
    def fit(self, X, y=None):
        X = X[:, : state["d0"]]
        key = (X.shape, self.n_select, self.random_state, float(X[:, :50].sum()), float(X[::7, -200:].sum()))
        if key not in _picks:
            _picks[key] = TEDSelector(n_select=self.n_select, random_state=self.random_state).fit(X).selected_
        self.selected_ = _picks[key]
        return self


class Weighted(Standardiser):
    """The ridge's standardisation, its first columns multiplied by ``state["s"]`` (when set)."""
    def _set(self, mean, centred_rows, X):
        super()._set(mean, centred_rows, X)
        s = state["s"]
        if s is not None:
            self.scale_[: len(s)] /= np.maximum(s, 1e-12)


ridge_module.Standardiser = Weighted


def padded(prior, extra, path):
    QualityPrior(np.r_[prior.mean, np.zeros(extra)], np.r_[prior.scale, np.ones(extra)],
                 np.r_[prior.coef, np.zeros(extra)], prior.intercept, prior.features, prior.trained_on).save(path)
    return str(path)


def top_share(s):
    w = np.sort(s ** 2)[::-1]
    return float(w[: len(w) // 10].sum() / w.sum())


def run(dataset, prior_spec, train, labels, pool, tag):
    X = ex.extract(dataset.paths, progress=False).features
    d0 = state["d0"] = X.shape[1]
    prior = resolve_prior(prior_spec, d0)
    beta = np.abs(prior.coef)
    s9a, s9b = np.sqrt(beta / beta.mean()), beta / np.sqrt((beta ** 2).mean())
    t0 = time.perf_counter()
    pls = PLSRegression(N_PLS, scale=True).fit(train[0].astype(np.float64), train[1])
    T = pls.transform(X.astype(np.float64)).astype(X.dtype)
    info = {"pls_fit_s": time.perf_counter() - t0, "top10_share_9a": top_share(s9a), "top10_share_9b": top_share(s9b)}
    print(tag, info, flush=True)
    ridge = {**Config().params_for("ridge"), "prior": prior_spec}
    wide = {**ridge, "prior": padded(prior, N_PLS, OUT / f"prior-{tag}-9c.npz")}
    configs = {"base": (X, None, ridge), "control": (X, np.ones(d0), ridge), "9a": (X, s9a, ridge),
               "9b": (X, s9b, ridge),
               "9c": (np.hstack([X, T]), np.r_[np.ones(d0), np.full(N_PLS, 11 / np.sqrt(N_PLS))], wide)}
    res = {}
    for seed in SEEDS:
        keep = subsample_rows(len(dataset.paths), pool / len(dataset.paths), seed)
        dk = dataset.subset(keep)
        for name, (F, s, settings) in configs.items():
            Fk = F[keep]
            state["s"] = s
            for lab in labels:
                for b in BUDGETS:
                    t1 = time.perf_counter()
                    res[(name, lab, b, seed)] = run_trial(Fk, dk, "ted_memo", "ridge", b, seed, lab,
                                                          settings={"ridge": settings}).metrics["srcc"]
                    cost[name] = cost.get(name, 0.0) + time.perf_counter() - t1
            state["s"] = None
        print(tag, "seed", seed, "done", flush=True)
    rows = []
    for name in ("control", "9a", "9b", "9c"):
        for lab in labels:
            for b in BUDGETS:
                d = np.array([res[(name, lab, b, k)] - res[("base", lab, b, k)] for k in SEEDS])
                base = np.mean([res[("base", lab, b, k)] for k in SEEDS])
                rows.append((tag, name, lab, b, round(base, 3), round(d.mean(), 4),
                             round(d.std(ddof=1) / np.sqrt(len(d)), 4), float(np.abs(d).max())))
                print(*rows[-1], flush=True)
    return rows, info


started = time.perf_counter()
out = {}
biq = load_dataset(Path("../shared/data/biq-dev"))
Xbiq = ex.extract(biq.paths, progress=False).features
order = np.random.default_rng(0).permutation(len(biq.paths))
a, b = sorted(order[:2000]), sorted(order[2000:])
A, B = biq.subset(a), biq.subset(b)
fit_prior(Xbiq[a], A.mos, ex.namespace, "biq-dev half A").save(OUT / "prior-biq-A.npz")
clive = load_dataset(Path("../shared/data/clive-dev"))
out["clive"] = run(clive, "auto", (Xbiq, biq.mos), ["oracle", "single"], 320, "clive")
out["biq"] = run(B, str(OUT / "prior-biq-A.npz"), (Xbiq[a], A.mos), ["oracle"], 400, "biq")
out["cost_s"] = cost
out["wall_s"] = time.perf_counter() - started
json.dump(out, open(OUT / "results.json", "w"), indent=1)
print("done", json.dumps(cost), out["wall_s"], flush=True)
