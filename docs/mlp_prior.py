"""Issue 15 round 6: an MLP quality prior (10a) and the mean of the MLP and ridge priors (10b), as the
ridge's prior column of weight 11 (protocol in docs/experiments.md, fixed before this run)."""
import json, time
from pathlib import Path
import numpy as np
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPRegressor
from ml_backend.config import Config
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.evaluation.replay import load_dataset, run_trial, subsample_rows
from ml_backend.prediction.prior import fit_prior, resolve_prior
from ml_backend.selection import SELECTORS
from ml_backend.selection.ted import TEDSelector

OUT = Path(".mos/exp/r6"); OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(40, 70)
BUDGETS = (25, 50, 100, 200)
ALPHAS = (0.1, 1.0, 10.0)
COPIES = 121
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))
D = ex.dim
_picks: dict = {}


@SELECTORS.register("ted_features")
class TedOnFeatures(BaseEstimator):
    """The default's `ted` on the first D columns (the features), whatever is appended; memoised."""
    def __init__(self, n_select: int = 25, random_state: int | None = 0) -> None:
        self.n_select, self.random_state = n_select, random_state
    def check_params(self):
        return self
    def fit(self, X, y=None):
        F = X[:, :D]
        key = (F.shape, self.n_select, self.random_state, float(F[:, :50].sum()), float(F[::7, -200:].sum()))
        if key not in _picks:
            _picks[key] = TEDSelector(n_select=self.n_select, random_state=self.random_state).fit(F).selected_
        self.selected_ = _picks[key]
        return self


def mlp(alpha):
    return MLPRegressor(hidden_layer_sizes=(256,), activation="relu", solver="adam", alpha=alpha, batch_size=64,
                        learning_rate_init=1e-3, max_iter=200, early_stopping=True, validation_fraction=0.1,
                        n_iter_no_change=10, random_state=0)


def fit_mlp_prior(X, y, tag):
    """Standardise X and y on the training set, alpha by 5-fold CV SRCC, refit on all: returns predict(X)."""
    mu, sd = X.mean(0), X.std(0)
    sd[sd == 0] = 1
    Z = (X - mu) / sd
    ym, ys = y.mean(), y.std()
    t = (y - ym) / ys
    cv = {}
    started = time.perf_counter()
    for a in ALPHAS:
        scores = []
        for tr, va in KFold(5, shuffle=True, random_state=0).split(Z):
            scores.append(spearmanr(mlp(a).fit(Z[tr], t[tr]).predict(Z[va]), t[va])[0])
        cv[a] = float(np.mean(scores))
        print(tag, "alpha", a, "cv srcc", round(cv[a], 4), flush=True)
    best = max(ALPHAS, key=lambda a: cv[a])
    t0 = time.perf_counter()
    model = mlp(best).fit(Z, t)
    info = {"cv_srcc": cv, "alpha": best, "refit_s": time.perf_counter() - t0, "all_s": time.perf_counter() - started,
            "epochs": model.n_iter_}
    return (lambda A: model.predict((A - mu) / sd) * ys + ym), info


def widened(X, p):
    return np.hstack([X, np.repeat(p[:, None], COPIES, axis=1).astype(X.dtype)])


def run(dataset, prior_spec, mlp_predict, labels, pool, tag):
    X = ex.extract(dataset.paths, progress=False).features
    p_ridge = resolve_prior(prior_spec, X.shape[1]).predict(X)
    p_mlp = mlp_predict(X)
    info = {"zero_shot_srcc_ridge_prior": float(spearmanr(p_ridge, dataset.mos)[0]),
            "zero_shot_srcc_mlp_prior": float(spearmanr(p_mlp, dataset.mos)[0]),
            "zero_shot_srcc_mean_prior": float(spearmanr((p_ridge + p_mlp) / 2, dataset.mos)[0])}
    print(tag, info, flush=True)
    variants = {"control": widened(X, p_ridge), "10a": widened(X, p_mlp), "10b": widened(X, (p_ridge + p_mlp) / 2)}
    base_settings = {"ridge": {**Config().params_for("ridge"), "prior": prior_spec}}
    none_settings = {"ridge": {**Config().params_for("ridge"), "prior": "none"}}
    res = {}
    for seed in SEEDS:
        keep = subsample_rows(len(dataset.paths), pool / len(dataset.paths), seed)
        dk = dataset.subset(keep)
        for lab in labels:
            for b in BUDGETS:
                res[("base", lab, b, seed)] = run_trial(X[keep], dk, "ted_features", "ridge", b, seed, lab,
                                                        settings=base_settings).metrics["srcc"]
                for name, Xv in variants.items():
                    res[(name, lab, b, seed)] = run_trial(Xv[keep], dk, "ted_features", "ridge", b, seed, lab,
                                                          settings=none_settings).metrics["srcc"]
        print(tag, "seed", seed, "done", flush=True)
    rows = []
    for name in variants:
        for lab in labels:
            for b in BUDGETS:
                d = np.array([res[(name, lab, b, s)] - res[("base", lab, b, s)] for s in SEEDS])
                base = np.mean([res[("base", lab, b, s)] for s in SEEDS])
                rows.append((tag, name, lab, b, round(base, 3), round(d.mean(), 4), round(d.std(ddof=1) / np.sqrt(len(d)), 4),
                             float(np.abs(d).max())))
                print(*rows[-1], flush=True)
    return rows, info


out = {}
biq = load_dataset(Path("../shared/data/biq-dev"))
Xbiq = ex.extract(biq.paths, progress=False).features
order = np.random.default_rng(0).permutation(len(biq.paths))
A, B = biq.subset(sorted(order[:2000])), biq.subset(sorted(order[2000:]))
XA = ex.extract(A.paths, progress=False).features
prior_a = fit_prior(XA, A.mos, ex.namespace, "biq-dev half A")
prior_a.save(OUT / "prior-biq-A.npz")
mlp_all, info_all = fit_mlp_prior(Xbiq, biq.mos, "mlp on all biq-dev")
mlp_a, info_a = fit_mlp_prior(XA, A.mos, "mlp on biq-dev half A")
print("all", info_all, "\nA", info_a, flush=True)
clive = load_dataset(Path("../shared/data/clive-dev"))
out["clive"] = run(clive, "auto", mlp_all, ["oracle", "single"], 320, "clive") + (info_all,)
out["biq"] = run(B, str(OUT / "prior-biq-A.npz"), mlp_a, ["oracle"], 400, "biq") + (info_a,)
json.dump(out, open(OUT / "results.json", "w"), indent=1)
print("done", flush=True)
