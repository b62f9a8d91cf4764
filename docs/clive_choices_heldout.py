"""Issue 15 round 19: two of clive-dev's own choices measured on held-out photos of both sets
(19a: the sharpness value as one ordinary column; 19b: `ted` with mu 0.1); protocol in
docs/experiments.md, fixed before this run.
Usage: python docs/clive_choices_heldout.py clive|biq   (one process per set)."""
import json
import sys
import time
from pathlib import Path

import numpy as np

from ml_backend.config import Config
from ml_backend.evaluation.metrics import all_metrics, terciles
from ml_backend.evaluation.replay import load_dataset, select, simulated_labels
from ml_backend.features.backbones import EfficientNetLite0
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.prior import QualityPrior, fit_prior, resolve_prior

OUT = Path(".mos/exp/r19")
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(430, 460)
BUDGETS = (25, 50, 100, 200)
ARMS = ("default", "19a", "19b")
METRICS = ("srcc", "f1_3class", "rmse")
N_ACT = EfficientNetLite0.dim - EfficientNetLite0.SHARPNESS_REPEATS  # 3,904 activation columns
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))


def one_sharpness_column(X):
    return np.ascontiguousarray(X[:, : N_ACT + 1])


def one_sharpness_prior(prior: QualityPrior, X, path: Path) -> tuple[str, float]:
    """The prior on the 3,905 columns: the copies' coefficients summed onto the one copy kept."""
    sharp = slice(N_ACT, None)
    assert np.ptp(prior.mean[sharp]) == 0 and np.ptp(prior.scale[sharp]) == 0
    coef = np.concatenate([prior.coef[:N_ACT], [prior.coef[sharp].sum()]])
    reduced = QualityPrior(prior.mean[: N_ACT + 1], prior.scale[: N_ACT + 1], coef, prior.intercept,
                           prior.features + " (one sharpness copy)", prior.trained_on)
    reduced.save(path)
    reloaded = resolve_prior(str(path))
    return str(path), float(np.max(np.abs(reloaded.predict(one_sharpness_column(X)) - prior.predict(X))))


def run(dataset, X, prior_spec, labels, pool, held, tag):
    prior19a, prior_gap = one_sharpness_prior(resolve_prior(prior_spec), X, OUT / f"prior-{tag}-one-sharpness.npz")
    print(tag, "19a prior: largest prediction difference", prior_gap, flush=True)
    base = Config().params_for("ridge")
    params = {"default": {**base, "prior": prior_spec}, "19a": {**base, "prior": prior19a},
              "19b": {**base, "prior": prior_spec}}
    X19a = one_sharpness_column(X)
    thirds = terciles(dataset.mos)
    res = {}
    for seed in SEEDS:
        order = np.random.default_rng([seed, 19]).permutation(len(dataset.paths))
        P, H = np.sort(order[:pool]), np.sort(order[pool:pool + held])
        features = {"default": X, "19a": X19a, "19b": X}
        ranking = {"default": select(X[P], "ted", max(BUDGETS), seed),
                   "19a": select(X19a[P], "ted", max(BUDGETS), seed),
                   "19b": select(X[P], "ted:mu=0.1", max(BUDGETS), seed)}
        for lab in labels:
            y = simulated_labels(dataset, lab, np.random.default_rng(seed))[P]
            for arm in ARMS:
                XP, XH = features[arm][P], features[arm][H]
                for b in BUDGETS:
                    picks = ranking[arm][:b]
                    model = PREDICTORS.create("ridge", params[arm]).fit(XP[picks], y[picks])
                    res[(arm, lab, b, seed)] = all_metrics(model.predict(XH), dataset.mos[H], thirds)
        overlap = {arm: len(np.intersect1d(ranking[arm][:100], ranking["default"][:100])) for arm in ("19a", "19b")}
        res[("overlap", seed)] = overlap
        print(tag, "seed", seed, "picks shared with the default's @100", overlap, time.strftime("%H:%M:%S"), flush=True)
    rows = []
    for lab in labels:
        for b in BUDGETS:
            row = {"set": tag, "labels": lab, "budget": b,
                   "means": {a: {m: float(np.mean([res[(a, lab, b, k)][m] for k in SEEDS])) for m in METRICS}
                             for a in ARMS}}
            for arm in ("19a", "19b"):
                for m in METRICS:
                    d = np.array([res[(arm, lab, b, k)][m] - res[("default", lab, b, k)][m] for k in SEEDS])
                    row[f"{arm} {m}"] = [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
            rows.append(row)
            print(json.dumps(row), flush=True)
    overlap = {arm: float(np.mean([res[("overlap", k)][arm] for k in SEEDS])) for arm in ("19a", "19b")}
    return {"rows": rows, "prior_gap": prior_gap, "mean_shared_picks_at_100": overlap}


started = time.perf_counter()
which = sys.argv[1]
if which == "clive":
    clive = load_dataset(Path("../shared/data/clive-dev"))
    X = ex.extract(clive.paths, progress=False).features
    out = run(clive, X, "auto", ["oracle", "single"], 300, 100, "clive")
else:
    biq = load_dataset(Path("../shared/data/biq-dev"))
    Xbiq = ex.extract(biq.paths, progress=False).features
    order = np.random.default_rng(0).permutation(len(biq.paths))
    a, b = sorted(order[:2000]), sorted(order[2000:])
    fit_prior(Xbiq[a], biq.subset(a).mos, ex.namespace, "biq-dev half A").save(OUT / "prior-biq-A.npz")
    out = run(biq.subset(b), Xbiq[b], str(OUT / "prior-biq-A.npz"), ["oracle"], 400, 400, "biq")
out["wall_s"] = time.perf_counter() - started
json.dump(out, open(OUT / f"results-{which}.json", "w"), indent=1)
print("done", out["wall_s"], flush=True)
