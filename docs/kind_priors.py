"""Issue 15 round 22: one prior per kind of biq-dev photo (ss01 / ss02 / ss03) as columns the
labels weigh (22a: instead of the one prior; 22b: beside it); protocol in docs/experiments.md,
fixed before this run.
Usage: python docs/kind_priors.py clive|biq   (one process per set)."""
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

OUT = Path(".mos/exp/r22")
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(520, 550)
BUDGETS = (25, 50, 100, 200)
ARMS = ("default", "22a", "22b")
METRICS = ("srcc", "f1_3class", "rmse")
SETS = {"clive": Path("../shared/data/clive-dev"), "biq": Path("../shared/data/biq-dev")}
KINDS = ("ss01", "ss02", "ss03")
ONE, KIND = 121, 40  # copies: weight 11 and 6.3 (about 11 / sqrt(3))


def kind_of(paths):
    return np.array([p.name.split(" ")[0] for p in paths])


def columns(X, one, kinds):
    """The arms' features: the default's columns plus the prior columns as copies."""
    p = one.predict(X)[:, None].astype(X.dtype)
    k = np.stack([prior.predict(X) for prior in kinds], axis=1).astype(X.dtype)
    return {"rebuilt default": np.hstack([X, np.repeat(p, ONE, axis=1)]),
            "22a": np.hstack([X, np.repeat(k, KIND, axis=1)]),
            "22b": np.hstack([X, np.repeat(p, ONE, axis=1), np.repeat(k, KIND, axis=1)])}


def run(dataset, X, one_spec, kind_specs, labels, pool, held, tag):
    one = resolve_prior(one_spec)
    kinds = [resolve_prior(s) for s in kind_specs]
    features = columns(X, one, kinds)
    base = Config().params_for("ridge")
    plain = {**base, "prior": "none"}
    thirds = terciles(dataset.mos)
    res, control = {}, 0.0
    for seed in SEEDS:
        order = np.random.default_rng([seed, 22]).permutation(len(dataset.paths))
        P, H = np.sort(order[:pool]), np.sort(order[pool:pool + held])
        ranking = select(X[P], "ted", max(BUDGETS), seed)
        for lab in labels:
            y = simulated_labels(dataset, lab, np.random.default_rng(seed))[P]
            for b in BUDGETS:
                picks = P[ranking[:b]]
                default = PREDICTORS.create("ridge", {**base, "prior": one_spec}).fit(X[picks], y[ranking[:b]])
                pred = default.predict(X[H])
                res[("default", lab, b, seed)] = all_metrics(pred, dataset.mos[H], thirds)
                for arm in ("22a", "22b"):
                    model = PREDICTORS.create("ridge", plain).fit(features[arm][picks], y[ranking[:b]])
                    res[(arm, lab, b, seed)] = all_metrics(model.predict(features[arm][H]), dataset.mos[H], thirds)
                if seed == SEEDS[0]:
                    F = features["rebuilt default"]
                    rebuilt = PREDICTORS.create("ridge", plain).fit(F[picks], y[ranking[:b]])
                    control = max(control, float(np.max(np.abs(rebuilt.predict(F[H]) - pred))))
        zero = {f"kind {k}": srcc(prior.predict(X[H]), dataset.mos[H]) for k, prior in zip(KINDS, kinds, strict=True)}
        zero["mean of the kinds"] = srcc(np.mean([prior.predict(X[H]) for prior in kinds], axis=0), dataset.mos[H])
        zero["one prior"] = srcc(one.predict(X[H]), dataset.mos[H])
        res[("zero-shot", seed)] = zero
        print(tag, "seed", seed, time.strftime("%H:%M:%S"), flush=True)
    print(tag, "control: largest |rebuilt default - product default| over the first seed's fits", control, flush=True)
    rows = []
    for lab in labels:
        for b in BUDGETS:
            row = {"set": tag, "labels": lab, "budget": b,
                   "means": {a: {m: float(np.mean([res[(a, lab, b, k)][m] for k in SEEDS])) for m in METRICS}
                             for a in ARMS}}
            for arm in ("22a", "22b"):
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
    kind = kind_of(biq.paths)
    if which == "clive":
        train, one_spec, label, suffix = np.arange(len(biq.paths)), "auto", "biq-dev", "biq"
    else:
        order = np.random.default_rng(0).permutation(len(biq.paths))
        train, label, suffix = np.sort(order[:2000]), "biq-dev half A", "biq-A"
        fit_prior(Xbiq[train], biq.mos[train], ex.namespace, label).save(OUT / "prior-one-biq-A.npz")
        one_spec = str(OUT / "prior-one-biq-A.npz")
    kind_specs = []
    for k in KINDS:
        rows = train[kind[train] == k]
        path = OUT / f"prior-{k}-{suffix}.npz"
        fit_prior(Xbiq[rows], biq.mos[rows], ex.namespace, f"{label}, {k} ({len(rows)} photos)").save(path)
        kind_specs.append(str(path))
        print(which, k, len(rows), "photos", flush=True)
    if which == "clive":
        clive = load_dataset(SETS["clive"])
        out = run(clive, ex.extract(clive.paths, progress=False).features, one_spec, kind_specs,
                  ["oracle", "single"], 300, 100, "clive")
    else:
        b = np.sort(order[2000:])
        out = run(biq.subset(b), Xbiq[b], one_spec, kind_specs, ["oracle"], 400, 400, "biq")
    out["wall_s"] = time.perf_counter() - started
    json.dump(out, open(OUT / f"results-{which}.json", "w"), indent=1)
    print("done", out["wall_s"], flush=True)


if __name__ == "__main__":
    main()
