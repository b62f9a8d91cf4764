"""Issue 15 round 17: the prior's penalty by leave-cluster-out cross-validation (17a);
protocol in docs/experiments.md, fixed before this run.
Usage: python docs/prior_cluster_penalty.py clive|biq   (one process per set)."""
import json, sys, time
from pathlib import Path
import numpy as np
from sklearn.cluster import KMeans
from ml_backend.config import Config
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.features.standardise import Standardiser
from ml_backend.evaluation.metrics import all_metrics, srcc, terciles
from ml_backend.evaluation.replay import load_dataset, run_trial, select, simulated_labels, subsample_rows
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.prior import QualityPrior, fit_prior, resolve_prior
from ml_backend.prediction.ridge import RidgePredictor

OUT = Path(".mos/exp/r17"); OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(370, 400)
BUDGETS = (25, 50, 100, 200)
ARMS = ("default", "17a")
METRICS = ("srcc", "f1_3class", "rmse")
ALPHAS = np.asarray(RidgePredictor().alphas, dtype=float)
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))


def cluster_cv_alpha(X, y):
    """The penalty of ALPHAS with the smallest squared error pooled over 10 held-out k-means groups."""
    Xs = Standardiser().fit_transform(X).astype(np.float64)
    groups = KMeans(10, n_init=10, random_state=0).fit_predict(Xs)
    errors = np.zeros(len(ALPHAS))
    for g in range(10):
        test, train = groups == g, groups != g
        mean = Xs[train].mean(axis=0)
        A, B = Xs[train] - mean, Xs[test] - mean
        y_mean = y[train].mean()
        eig, U = np.linalg.eigh(A @ A.T)
        eig = np.clip(eig, 0.0, None)
        KU = (B @ A.T) @ U
        Uy = U.T @ (y[train] - y_mean)
        for i, alpha in enumerate(ALPHAS):
            errors[i] += np.sum((y[test] - (y_mean + KU @ (Uy / (eig + alpha)))) ** 2)
    print("cluster sizes", np.bincount(groups, minlength=10).tolist(), flush=True)
    return float(ALPHAS[int(np.argmin(errors))]), (errors / len(y)).tolist()


def priors(X, y, trained_on, tag):
    """The default prior (penalty by leave-one-out) and 17a's (penalty by held-out groups), saved."""
    loo = RidgePredictor(prior="none").fit(X, y)
    alpha, curve = cluster_cv_alpha(X, y)
    model = RidgePredictor(alphas=(alpha,), prior="none").fit(X, y)
    default = fit_prior(X, y, ex.namespace, trained_on)
    clustered = QualityPrior(model.scaler_.mean_, model.scaler_.scale_, model.coef_, model.y_mean_, ex.namespace,
                             trained_on + " (penalty by leave-cluster-out)")
    paths = (OUT / f"prior-{tag}-loo.npz", OUT / f"prior-{tag}-cluster.npz")
    default.save(paths[0])
    clustered.save(paths[1])
    info = {"alpha_loo": float(loo.alpha_), "alpha_cluster": alpha, "cluster_cv_mse": curve}
    print(tag, "penalties: leave-one-out", loo.alpha_, "leave-cluster-out", alpha, flush=True)
    return [str(p) for p in paths], info


def run(dataset, X, specs, labels, pool, tag):
    base = {**Config().params_for("ridge"), "prior": specs[0]}
    params = {"default": base, "17a": {**base, "prior": specs[1]}}
    loaded = [resolve_prior(s, X.shape[1]) for s in specs]
    res, zero, control = {}, [], []
    for seed in SEEDS:
        keep = subsample_rows(len(dataset.paths), pool / len(dataset.paths), seed)
        Xk, dk = X[keep], dataset.subset(keep)
        zero.append(tuple(srcc(p.predict(Xk), dk.mos) for p in loaded))
        thirds = terciles(dk.mos)
        for lab in labels:
            y = simulated_labels(dk, lab, np.random.default_rng(seed))
            for b in BUDGETS:
                picks = select(Xk, "ted", b, seed)
                rest = np.setdiff1d(np.arange(len(Xk)), picks)
                for arm in ARMS:
                    model = PREDICTORS.create("ridge", params[arm]).fit(Xk[picks], y[picks])
                    res[(arm, lab, b, seed)] = all_metrics(model.predict(Xk[rest]), dk.mos[rest], thirds)
                if b == 100 and lab == "oracle":
                    t = run_trial(Xk, dk, "ted", "ridge", b, seed, lab, "upfront", settings={"ridge": base})
                    control.append(abs(t.metrics["srcc"] - res[("default", lab, b, seed)]["srcc"]))
        print(tag, "seed", seed, "zero-shot", [round(v, 3) for v in zero[-1]], time.strftime("%H:%M:%S"), flush=True)
    rows = []
    for lab in labels:
        for b in BUDGETS:
            row = {"set": tag, "labels": lab, "budget": b,
                   "means": {a: {m: float(np.mean([res[(a, lab, b, k)][m] for k in SEEDS])) for m in METRICS}
                             for a in ARMS}}
            for m in METRICS:
                d = np.array([res[("17a", lab, b, k)][m] - res[("default", lab, b, k)][m] for k in SEEDS])
                row[f"17a {m}"] = [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
            rows.append(row)
            print(json.dumps(row), flush=True)
    z = np.array(zero)
    d = z[:, 1] - z[:, 0]
    zero_shot = {"prior": [float(z[:, 0].mean()), float(z[:, 0].std())],
                 "17a": [float(z[:, 1].mean()), float(z[:, 1].std())],
                 "difference": [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]}
    print(tag, "zero-shot", json.dumps(zero_shot), flush=True)
    return rows, zero_shot, max(control)


started = time.perf_counter()
which = sys.argv[1]
biq = load_dataset(Path("../shared/data/biq-dev"))
Xbiq = ex.extract(biq.paths, progress=False).features
if which == "clive":
    specs, info = priors(Xbiq, biq.mos, "biq-dev", "biq-all")
    info["refit_matches_bundled"] = bool(np.allclose(resolve_prior(specs[0]).coef, resolve_prior("auto").coef,
                                                     rtol=1e-3, atol=1e-6))
    specs[0] = "auto"  # the default is the bundled prior, whatever the refit gives
    clive = load_dataset(Path("../shared/data/clive-dev"))
    out = run(clive, ex.extract(clive.paths, progress=False).features, specs, ["oracle", "single"], 320, "clive")
else:
    order = np.random.default_rng(0).permutation(len(biq.paths))
    a, b = sorted(order[:2000]), sorted(order[2000:])
    specs, info = priors(Xbiq[a], biq.subset(a).mos, "biq-dev half A", "biq-A")
    out = run(biq.subset(b), Xbiq[b], specs, ["oracle"], 400, "biq")
rows, zero_shot, control = out
print("control: largest |SRCC - evaluate's upfront default|", control, "default prior", specs[0])
json.dump({"rows": rows, "zero_shot": zero_shot, "penalties": info, "default_prior": specs[0],
           "control_max_abs": control, "wall_s": time.perf_counter() - started},
          open(OUT / f"results-{which}.json", "w"), indent=1)
print("done", time.perf_counter() - started, flush=True)
