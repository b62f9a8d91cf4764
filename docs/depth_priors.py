"""Issue 15 round 24: depth priors beside the default's priors (24a, the candidate) and the default
with its priors fitted on fewer photos (24b, deciding nothing); protocol in docs/experiments.md,
fixed before this run.
Usage: python docs/depth_priors.py clive|biq   (one process per set)."""
import json
import sys
import time
from pathlib import Path

import numpy as np

from ml_backend.config import Config
from ml_backend.evaluation.metrics import all_metrics, srcc, terciles
from ml_backend.evaluation.replay import load_dataset, select, simulated_labels
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.prior import fit_prior, resolve_prior

OUT = Path(".mos/exp/r24")
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(580, 610)
BUDGETS = (25, 50, 100, 200)
METRICS = ("srcc", "f1_3class", "rmse")
SETS = {"clive": Path("../shared/data/clive-dev"), "biq": Path("../shared/data/biq-dev")}
ONE, OTHER = 121, 40  # copies: the one prior's and every other prior's
SHARP = np.arange(3904, 4025)
GROUPS = {"112-channel blocks": np.r_[0:448, SHARP], "192/320-channel blocks": np.r_[448:2624, SHARP],
          "head": np.r_[2624:3904, SHARP]}


def prior_copies(X, prior):
    """The prior's columns as copies: its prediction 121 times, each kind prior's 40 times."""
    cols = prior.columns(X, kinds=True).astype(X.dtype)
    return np.hstack([np.repeat(cols[:, :1], ONE, axis=1), np.repeat(cols[:, 1:], OTHER, axis=1)])


def run(dataset, X, spec, depth, smaller, labels, pool, held, tag):
    default = resolve_prior(spec)
    rebuilt = np.hstack([X, prior_copies(X, default)])
    depth_cols = [np.repeat(p.predict(X[:, GROUPS[g]])[:, None].astype(X.dtype), OTHER, axis=1)
                  for g, p in depth.items()]
    features = {"24a": np.hstack([rebuilt, *depth_cols])}
    features |= {f"24b n={n}": np.hstack([X, prior_copies(X, p)]) for n, p in smaller.items()}
    arms = ["default", *features]
    base = Config().params_for("ridge")
    plain = {**base, "prior": "none"}
    thirds = terciles(dataset.mos)
    res, control = {}, 0.0
    for seed in SEEDS:
        order = np.random.default_rng([seed, 24]).permutation(len(dataset.paths))
        P, H = np.sort(order[:pool]), np.sort(order[pool:pool + held])
        ranking = select(X[P], "ted", max(BUDGETS), seed)
        for lab in labels:
            y = simulated_labels(dataset, lab, np.random.default_rng(seed))[P]
            for b in BUDGETS:
                picks, yb = P[ranking[:b]], y[ranking[:b]]
                pred = PREDICTORS.create("ridge", {**base, "prior": spec}).fit(X[picks], yb).predict(X[H])
                res[("default", lab, b, seed)] = all_metrics(pred, dataset.mos[H], thirds)
                for arm, F in features.items():
                    model = PREDICTORS.create("ridge", plain).fit(F[picks], yb)
                    res[(arm, lab, b, seed)] = all_metrics(model.predict(F[H]), dataset.mos[H], thirds)
                if seed == SEEDS[0]:
                    again = PREDICTORS.create("ridge", plain).fit(rebuilt[picks], yb).predict(rebuilt[H])
                    control = max(control, float(np.max(np.abs(again - pred))))
        zero = {f"depth prior, {g}": srcc(p.predict(X[H][:, GROUPS[g]]), dataset.mos[H]) for g, p in depth.items()}
        zero |= {f"one prior, n={n}": srcc(p.predict(X[H]), dataset.mos[H]) for n, p in smaller.items()}
        zero["one prior, default"] = srcc(default.predict(X[H]), dataset.mos[H])
        res[("zero-shot", seed)] = zero
        print(tag, "seed", seed, time.strftime("%H:%M:%S"), flush=True)
    print(tag, "control: largest |rebuilt default - product default| over the first seed's fits", control, flush=True)
    rows = []
    for lab in labels:
        for b in BUDGETS:
            row = {"set": tag, "labels": lab, "budget": b,
                   "means": {a: {m: float(np.mean([res[(a, lab, b, k)][m] for k in SEEDS])) for m in METRICS}
                             for a in arms}}
            for arm in features:
                for m in METRICS:
                    d = np.array([res[(arm, lab, b, k)][m] - res[("default", lab, b, k)][m] for k in SEEDS])
                    row[f"{arm} {m}"] = [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
            rows.append(row)
            print(json.dumps(row), flush=True)
    names = res[("zero-shot", SEEDS[0])].keys()
    zero = {n: float(np.mean([res[("zero-shot", k)][n] for k in SEEDS])) for n in names}
    return {"rows": rows, "zero_shot_on_H": zero, "control_max_abs": control}


def main():
    started = time.perf_counter()
    which = sys.argv[1]
    ex = FeatureExtractor(cache_dir=Path(".mos/cache"))
    biq = load_dataset(SETS["biq"])
    Xbiq = ex.extract(biq.paths, progress=False).features
    assert Xbiq.shape[1] == 4025
    kind = np.array([p.name.split(" ")[0] for p in biq.paths])
    if which == "clive":
        train, spec, sizes = np.arange(len(biq.paths)), "auto", (1000, 2000)
    else:
        order = np.random.default_rng(0).permutation(len(biq.paths))
        train, spec, sizes = np.sort(order[:2000]), str(Path(".mos/exp/prior-biq-A.npz").resolve()), (500, 1000)
        assert resolve_prior(spec).kinds == ("ss01", "ss02", "ss03")
    Xt, yt, kt = Xbiq[train], biq.mos[train], kind[train]
    depth = {g: fit_prior(Xt[:, cols], yt, ex.namespace, g) for g, cols in GROUPS.items()}
    nested = np.random.default_rng(24).permutation(len(train))
    smaller = {n: fit_prior(Xt[nested[:n]], yt[nested[:n]], ex.namespace, f"{n} photos", kinds=list(kt[nested[:n]]))
               for n in sizes}
    if which == "clive":
        clive = load_dataset(SETS["clive"])
        out = run(clive, ex.extract(clive.paths, progress=False).features, spec, depth, smaller,
                  ["oracle", "single"], 300, 100, "clive")
    else:
        b = np.sort(order[2000:])
        out = run(biq.subset(b), Xbiq[b], spec, depth, smaller, ["oracle"], 400, 400, "biq")
    out["wall_s"] = time.perf_counter() - started
    json.dump(out, open(OUT / f"results-{which}.json", "w"), indent=1)
    print("done", out["wall_s"], flush=True)


if __name__ == "__main__":
    main()
