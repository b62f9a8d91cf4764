"""Issue 15 round 23: cluster priors beside the kind priors (23a, the candidate) and random-part
priors instead of the kind priors (23b, a control); protocol in docs/experiments.md, fixed before
this run.
Usage: python docs/more_priors.py clive|biq   (one process per set)."""
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans

from ml_backend.config import Config
from ml_backend.evaluation.metrics import all_metrics, srcc, terciles
from ml_backend.evaluation.replay import load_dataset, select, simulated_labels
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.features.standardise import Standardiser
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.prior import fit_prior, resolve_prior

OUT = Path(".mos/exp/r23")
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(550, 580)
BUDGETS = (25, 50, 100, 200)
ARMS = ("default", "23a", "23b")
METRICS = ("srcc", "f1_3class", "rmse")
SETS = {"clive": Path("../shared/data/clive-dev"), "biq": Path("../shared/data/biq-dev")}
ONE, OTHER = 121, 40  # copies: the one prior's and every other prior's


def partial_priors(X, y, labels, namespace):
    """One prior per value of ``labels`` (0, 1, 2), as predictors of every photo."""
    return [fit_prior(X[labels == v], y[labels == v], namespace, f"part {v}") for v in range(3)]


def copies(X, one, others):
    return np.hstack([X, np.repeat(one.predict(X)[:, None].astype(X.dtype), ONE, axis=1)]
                     + [np.repeat(p.predict(X)[:, None].astype(X.dtype), OTHER, axis=1) for p in others])


def run(dataset, X, spec, clusters, parts, labels, pool, held, tag):
    default = resolve_prior(spec)
    kinds = default.columns(X)[:, 1:]
    one = default.predict(X)[:, None].astype(X.dtype)
    rebuilt = np.hstack([X, np.repeat(one, ONE, axis=1), np.repeat(kinds.astype(X.dtype), OTHER, axis=1)])
    features = {"23a": np.hstack([rebuilt, copies(X, default, clusters)[:, X.shape[1] + ONE:]]),
                "23b": copies(X, default, parts)}
    base = Config().params_for("ridge")
    plain = {**base, "prior": "none"}
    thirds = terciles(dataset.mos)
    res, control = {}, 0.0
    for seed in SEEDS:
        order = np.random.default_rng([seed, 23]).permutation(len(dataset.paths))
        P, H = np.sort(order[:pool]), np.sort(order[pool:pool + held])
        ranking = select(X[P], "ted", max(BUDGETS), seed)
        for lab in labels:
            y = simulated_labels(dataset, lab, np.random.default_rng(seed))[P]
            for b in BUDGETS:
                picks, yb = P[ranking[:b]], y[ranking[:b]]
                pred = PREDICTORS.create("ridge", {**base, "prior": spec}).fit(X[picks], yb).predict(X[H])
                res[("default", lab, b, seed)] = all_metrics(pred, dataset.mos[H], thirds)
                for arm in ("23a", "23b"):
                    model = PREDICTORS.create("ridge", plain).fit(features[arm][picks], yb)
                    res[(arm, lab, b, seed)] = all_metrics(model.predict(features[arm][H]), dataset.mos[H], thirds)
                if seed == SEEDS[0]:
                    again = PREDICTORS.create("ridge", plain).fit(rebuilt[picks], yb).predict(rebuilt[H])
                    control = max(control, float(np.max(np.abs(again - pred))))
        zero = {f"cluster {i}": srcc(p.predict(X[H]), dataset.mos[H]) for i, p in enumerate(clusters)}
        zero |= {f"random part {i}": srcc(p.predict(X[H]), dataset.mos[H]) for i, p in enumerate(parts)}
        res[("zero-shot", seed)] = zero
        print(tag, "seed", seed, time.strftime("%H:%M:%S"), flush=True)
    print(tag, "control: largest |rebuilt default - product default| over the first seed's fits", control, flush=True)
    rows = []
    for lab in labels:
        for b in BUDGETS:
            row = {"set": tag, "labels": lab, "budget": b,
                   "means": {a: {m: float(np.mean([res[(a, lab, b, k)][m] for k in SEEDS])) for m in METRICS}
                             for a in ARMS}}
            for arm in ("23a", "23b"):
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
    kind = np.array([p.name.split(" ")[0] for p in biq.paths])
    if which == "clive":
        train, spec = np.arange(len(biq.paths)), "auto"
    else:
        order = np.random.default_rng(0).permutation(len(biq.paths))
        train, spec = np.sort(order[:2000]), str(Path(".mos/exp/prior-biq-A.npz").resolve())
        assert resolve_prior(spec).kinds == ("ss01", "ss02", "ss03")
    Xt, yt = Xbiq[train], biq.mos[train]
    clusters = KMeans(3, n_init=10, random_state=0).fit_predict(Standardiser().fit_transform(Xt))
    sizes = [int((kind[train] == k).sum()) for k in ("ss01", "ss02", "ss03")]
    parts = np.repeat([0, 1, 2], sizes)[np.random.default_rng(23).permutation(len(train))]
    print(which, "cluster sizes", np.bincount(clusters).tolist(), "random parts", np.bincount(parts).tolist(),
          flush=True)
    cluster_priors = partial_priors(Xt, yt, clusters, ex.namespace)
    part_priors = partial_priors(Xt, yt, parts, ex.namespace)
    if which == "clive":
        clive = load_dataset(SETS["clive"])
        out = run(clive, ex.extract(clive.paths, progress=False).features, spec, cluster_priors, part_priors,
                  ["oracle", "single"], 300, 100, "clive")
    else:
        b = np.sort(order[2000:])
        out = run(biq.subset(b), Xbiq[b], spec, cluster_priors, part_priors, ["oracle"], 400, 400, "biq")
    out["cluster_sizes"] = np.bincount(clusters).tolist()
    out["wall_s"] = time.perf_counter() - started
    json.dump(out, open(OUT / f"results-{which}.json", "w"), indent=1)
    print("done", out["wall_s"], flush=True)


if __name__ == "__main__":
    main()
