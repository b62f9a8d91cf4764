"""Issue 15 round 18: the ridge's penalty by maximum marginal likelihood (18a);
protocol in docs/experiments.md, fixed before this run.
Usage: python docs/ridge_evidence_penalty.py clive|biq   (one process per set)."""
import json, sys, time
from pathlib import Path
import numpy as np
from ml_backend.config import Config
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.evaluation.metrics import all_metrics, terciles
from ml_backend.evaluation.replay import load_dataset, run_trial, select, simulated_labels, subsample_rows
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.prior import fit_prior
from ml_backend.prediction.ridge import RidgePredictor

OUT = Path(".mos/exp/r18"); OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(400, 430)
BUDGETS = (25, 50, 100, 200)
ARMS = ("default", "18a")
METRICS = ("srcc", "f1_3class", "rmse")
ALPHAS = np.asarray(RidgePredictor().alphas, dtype=float)
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))


def evidence_alpha(Xs, y):
    """The penalty of ALPHAS with the largest marginal likelihood (noise variance profiled out),
    on the rows as the default ridge standardised and centred them; the intercept's direction dropped."""
    A = np.asarray(Xs, dtype=np.float64)
    A = A - A.mean(axis=0)
    eig, U = np.linalg.eigh(A @ A.T)
    eig = np.clip(eig, 0.0, None)
    keep = np.arange(len(eig)) != int(np.argmax(np.abs(U.sum(axis=0))))  # the constant vector's
    z2 = (U[:, keep].T @ (y - y.mean())) ** 2
    lam, m = eig[keep], keep.sum()
    scores = [-0.5 * m * np.log(np.mean(z2 / (1 + lam / a))) - 0.5 * np.sum(np.log1p(lam / a)) for a in ALPHAS]
    return float(ALPHAS[int(np.argmax(scores))])


def run(dataset, X, prior_spec, labels, pool, tag):
    base = {**Config().params_for("ridge"), "prior": prior_spec}
    res, alphas, control = {}, [], []
    for seed in SEEDS:
        keep = subsample_rows(len(dataset.paths), pool / len(dataset.paths), seed)
        Xk, dk = X[keep], dataset.subset(keep)
        thirds = terciles(dk.mos)
        for lab in labels:
            y = simulated_labels(dk, lab, np.random.default_rng(seed))
            for b in BUDGETS:
                picks = select(Xk, "ted", b, seed)
                rest = np.setdiff1d(np.arange(len(Xk)), picks)
                default = PREDICTORS.create("ridge", base).fit(Xk[picks], y[picks])
                alpha = evidence_alpha(default.neighbours_.Xs_, y[picks].astype(float))
                chosen = PREDICTORS.create("ridge", {**base, "alphas": (alpha,)}).fit(Xk[picks], y[picks])
                alphas.append((lab, b, default.alpha_, alpha))
                for arm, model in (("default", default), ("18a", chosen)):
                    res[(arm, lab, b, seed)] = all_metrics(model.predict(Xk[rest]), dk.mos[rest], thirds)
                if b == 100 and lab == "oracle":
                    t = run_trial(Xk, dk, "ted", "ridge", b, seed, lab, "upfront", settings={"ridge": base})
                    control.append(abs(t.metrics["srcc"] - res[("default", lab, b, seed)]["srcc"]))
        print(tag, "seed", seed, "penalties", alphas[-1], time.strftime("%H:%M:%S"), flush=True)
    rows = []
    for lab in labels:
        for b in BUDGETS:
            row = {"set": tag, "labels": lab, "budget": b,
                   "means": {a: {m: float(np.mean([res[(a, lab, b, k)][m] for k in SEEDS])) for m in METRICS}
                             for a in ARMS}}
            for m in METRICS:
                d = np.array([res[("18a", lab, b, k)][m] - res[("default", lab, b, k)][m] for k in SEEDS])
                row[f"18a {m}"] = [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
            pen = np.array([(a0, a1) for la, bb, a0, a1 in alphas if la == lab and bb == b])
            row["penalties"] = {"median_loo": float(np.median(pen[:, 0])), "median_evidence": float(np.median(pen[:, 1])),
                                "agree": float(np.mean(pen[:, 0] == pen[:, 1])),
                                "evidence_larger": float(np.mean(pen[:, 1] > pen[:, 0]))}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows, max(control)


started = time.perf_counter()
which = sys.argv[1]
if which == "clive":
    clive = load_dataset(Path("../shared/data/clive-dev"))
    out = run(clive, ex.extract(clive.paths, progress=False).features, "auto", ["oracle", "single"], 320, "clive")
else:
    biq = load_dataset(Path("../shared/data/biq-dev"))
    Xbiq = ex.extract(biq.paths, progress=False).features
    order = np.random.default_rng(0).permutation(len(biq.paths))
    a, b = sorted(order[:2000]), sorted(order[2000:])
    fit_prior(Xbiq[a], biq.subset(a).mos, ex.namespace, "biq-dev half A").save(OUT / "prior-biq-A.npz")
    out = run(biq.subset(b), Xbiq[b], str(OUT / "prior-biq-A.npz"), ["oracle"], 400, "biq")
rows, control = out
print("control: largest |SRCC - evaluate's upfront default|", control)
json.dump({"rows": rows, "control_max_abs": control, "wall_s": time.perf_counter() - started},
          open(OUT / f"results-{which}.json", "w"), indent=1)
print("done", time.perf_counter() - started, flush=True)
