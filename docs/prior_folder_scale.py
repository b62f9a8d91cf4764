"""Issue 15 round 16: the prior standardised by the folder's own statistics (16a);
protocol in docs/experiments.md, fixed before this run.
Usage: python docs/prior_folder_scale.py clive|biq   (one process per set)."""
import json, sys, time
from pathlib import Path
import numpy as np
from ml_backend.config import Config
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.evaluation.metrics import all_metrics, srcc, terciles
from ml_backend.evaluation.replay import load_dataset, run_trial, select, simulated_labels, subsample_rows
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.prior import QualityPrior, fit_prior, resolve_prior

OUT = Path(".mos/exp/r16"); OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(340, 370)
BUDGETS = (25, 50, 100, 200)
ARMS = ("default", "16a")
METRICS = ("srcc", "f1_3class", "rmse")
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))


def folder_scaled(prior, X):
    """The prior with the folder's mean and standard deviation (a constant feature keeps the prior's scale)."""
    mean, scale = X.mean(axis=0, dtype=np.float64), X.std(axis=0, dtype=np.float64)
    scale = np.where(scale > 0, scale, prior.scale)
    return QualityPrior(mean, scale, prior.coef, prior.intercept, prior.features, prior.trained_on + " (folder-scaled)")


def run(dataset, X, prior_spec, labels, pool, tag):
    base = {**Config().params_for("ridge"), "prior": prior_spec}
    prior = resolve_prior(prior_spec, X.shape[1])
    res, zero, control = {}, [], []
    for seed in SEEDS:
        keep = subsample_rows(len(dataset.paths), pool / len(dataset.paths), seed)
        Xk, dk = X[keep], dataset.subset(keep)
        adapted = folder_scaled(prior, Xk)
        path = OUT / f"prior-{tag}-{seed}.npz"
        adapted.save(path)
        zero.append((srcc(prior.predict(Xk), dk.mos), srcc(adapted.predict(Xk), dk.mos)))
        params = {"default": base, "16a": {**base, "prior": str(path)}}
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
                d = np.array([res[("16a", lab, b, k)][m] - res[("default", lab, b, k)][m] for k in SEEDS])
                row[f"16a {m}"] = [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
            rows.append(row)
            print(json.dumps(row), flush=True)
    z = np.array(zero)
    d = z[:, 1] - z[:, 0]
    zero_shot = {"prior": [float(z[:, 0].mean()), float(z[:, 0].std())],
                 "folder-scaled": [float(z[:, 1].mean()), float(z[:, 1].std())],
                 "difference": [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]}
    print(tag, "zero-shot", json.dumps(zero_shot), flush=True)
    return rows, zero_shot, max(control)


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
rows, zero_shot, control = out
print("control: largest |SRCC - evaluate's upfront default|", control)
json.dump({"rows": rows, "zero_shot": zero_shot, "control_max_abs": control, "wall_s": time.perf_counter() - started},
          open(OUT / f"results-{which}.json", "w"), indent=1)
print("done", time.perf_counter() - started, flush=True)
