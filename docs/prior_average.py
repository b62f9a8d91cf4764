"""Issue 15 round 15: the prior's two uses averaged (15a equal, 15b stacked by leave-one-out);
protocol in docs/experiments.md, fixed before this run.
Usage: python docs/prior_average.py clive|biq   (one process per set)."""
import json, sys, time
from pathlib import Path
import numpy as np
from ml_backend.config import Config
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.evaluation.metrics import all_metrics, terciles
from ml_backend.evaluation.replay import load_dataset, run_trial, select, simulated_labels, subsample_rows
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.prior import fit_prior

OUT = Path(".mos/exp/r15"); OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(310, 340)
BUDGETS = (25, 50, 100, 200)
ARMS = ("default", "15a", "15b", "mean")
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))


def stack_weight(r_f, r_m):
    """w minimising mean((w r_f + (1 - w) r_m)^2) over [0, 1]; 1/2 for equal residuals."""
    d = r_m - r_f
    return 0.5 if not np.any(d) else float(np.clip(r_m @ d / (d @ d), 0.0, 1.0))


def run(dataset, X, prior_spec, labels, pool, tag):
    params = {**Config().params_for("ridge"), "prior": prior_spec}
    res, weights, control = {}, {}, []
    for seed in SEEDS:
        keep = subsample_rows(len(dataset.paths), pool / len(dataset.paths), seed)
        Xk, dk = X[keep], dataset.subset(keep)
        thirds = terciles(dk.mos)
        for lab in labels:
            y = simulated_labels(dk, lab, np.random.default_rng(seed))
            for b in BUDGETS:
                picks = select(Xk, "ted", b, seed)
                rest = np.setdiff1d(np.arange(len(Xk)), picks)
                f = PREDICTORS.create("ridge", params).fit(Xk[picks], y[picks])
                m = PREDICTORS.create("ridge", {**params, "prior_mode": "mean"}).fit(Xk[picks], y[picks])
                pf, pm = f.predict(Xk[rest]), m.predict(Xk[rest])
                w = stack_weight(f.loo_residuals_, m.loo_residuals_)
                weights[(lab, b, seed)] = w
                truth = dk.mos[rest]
                for arm, p in (("default", pf), ("15a", (pf + pm) / 2), ("15b", w * pf + (1 - w) * pm), ("mean", pm)):
                    res[(arm, lab, b, seed)] = all_metrics(p, truth, thirds)
                if b == 100 and lab == "oracle":
                    t = run_trial(Xk, dk, "ted", "ridge", b, seed, lab, "upfront", settings={"ridge": params})
                    control.append(abs(t.metrics["srcc"] - res[("default", lab, b, seed)]["srcc"]))
        print(tag, "seed", seed, "done", time.strftime("%H:%M:%S"), flush=True)
    rows = []
    for lab in labels:
        for b in BUDGETS:
            row = {"set": tag, "labels": lab, "budget": b,
                   "means": {a: {m: float(np.mean([res[(a, lab, b, k)][m] for k in SEEDS]))
                                 for m in ("srcc", "f1_3class", "rmse")} for a in ARMS},
                   "w_mean": float(np.mean([weights[(lab, b, k)] for k in SEEDS]))}
            for arm in ARMS[1:]:
                for m in ("srcc", "f1_3class", "rmse"):
                    d = np.array([res[(arm, lab, b, k)][m] - res[("default", lab, b, k)][m] for k in SEEDS])
                    row[f"{arm} {m}"] = [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows, max(control)


started = time.perf_counter()
which = sys.argv[1]
if which == "clive":
    clive = load_dataset(Path("../shared/data/clive-dev"))
    out, control = run(clive, ex.extract(clive.paths, progress=False).features, "auto", ["oracle", "single"], 320,
                       "clive")
else:
    biq = load_dataset(Path("../shared/data/biq-dev"))
    Xbiq = ex.extract(biq.paths, progress=False).features
    order = np.random.default_rng(0).permutation(len(biq.paths))
    a, b = sorted(order[:2000]), sorted(order[2000:])
    fit_prior(Xbiq[a], biq.subset(a).mos, ex.namespace, "biq-dev half A").save(OUT / "prior-biq-A.npz")
    out, control = run(biq.subset(b), Xbiq[b], str(OUT / "prior-biq-A.npz"), ["oracle"], 400, "biq")
print("control: largest |SRCC - evaluate's upfront default|", control)
json.dump({"rows": out, "control_max_abs": control, "wall_s": time.perf_counter() - started},
          open(OUT / f"results-{which}.json", "w"), indent=1)
print("done", time.perf_counter() - started, flush=True)
