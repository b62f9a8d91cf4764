"""Issue 15 round 13: the order in which people rate (U up front, S the product's stream,
A evaluate's `active`); protocol in docs/experiments.md, fixed before this run.
Usage: python docs/rating_order.py clive|biq   (one process per set)."""
import json, sys, time
from pathlib import Path
import numpy as np
from ml_backend.config import Config
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.evaluation.metrics import all_metrics, srcc, terciles
from ml_backend.evaluation.replay import _fit_predict, load_dataset, run_trial, select, simulated_labels, subsample_rows
from ml_backend.prediction.prior import fit_prior

OUT = Path(".mos/exp/r13"); OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(250, 280)
BUDGETS = (25, 50, 100, 200)
REPRESENTATIVES = 20
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))


def stream(X, d, params, seed, labels):
    """S: `ted`'s 20 picks, then one at a time the least confident of the model fitted on all so far."""
    y = simulated_labels(d, labels, np.random.default_rng(seed))
    labelled = select(X, "ted", REPRESENTATIVES, seed)
    out = {}
    while True:
        rest = np.setdiff1d(np.arange(len(X)), labelled)
        predicted, confidence = _fit_predict("ridge", params, d, X, y, labelled, rest)
        if len(labelled) in BUDGETS:
            truth = d.mos[rest]
            out[len(labelled)] = {**all_metrics(predicted, truth, terciles(d.mos)),
                                  "confidence_srcc": srcc(confidence, np.abs(predicted - truth))}
        if len(labelled) == max(BUDGETS):
            return out
        labelled = np.concatenate([labelled, rest[np.argsort(confidence, kind="stable")[:1]]])


def run(dataset, prior_spec, labels, pool, tag):
    X = ex.extract(dataset.paths, progress=False).features
    params = {**Config().params_for("ridge"), "prior": prior_spec}
    settings = {"ridge": params}
    res = {}
    for seed in SEEDS:
        keep = subsample_rows(len(dataset.paths), pool / len(dataset.paths), seed)
        Xk, dk = X[keep], dataset.subset(keep)
        for lab in labels:
            for b, m in stream(Xk, dk, params, seed, lab).items():
                res[("S", lab, b, seed)] = m
            for arm, strategy in (("U", "upfront"), ("A", "active")):
                for b in BUDGETS:
                    t = run_trial(Xk, dk, "ted", "ridge", b, seed, lab, strategy, settings=settings)
                    res[(arm, lab, b, seed)] = {**t.metrics, "confidence_srcc": t.confidence_srcc}
        print(tag, "seed", seed, "done", time.strftime("%H:%M:%S"), flush=True)
    rows = []
    for arm in ("U", "A"):
        for lab in labels:
            for b in BUDGETS:
                row = {"set": tag, "arm": arm, "against": "S", "labels": lab, "budget": b}
                for m in ("srcc", "f1_3class", "rmse"):
                    d = np.array([res[(arm, lab, b, k)][m] - res[("S", lab, b, k)][m] for k in SEEDS])
                    row[m] = [float(np.mean([res[("S", lab, b, k)][m] for k in SEEDS])),
                              float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
                row["confidence_srcc"] = {a: float(np.mean([res[(a, lab, b, k)]["confidence_srcc"] for k in SEEDS]))
                                          for a in ("S", "U", "A")}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


started = time.perf_counter()
which = sys.argv[1]
if which == "clive":
    out = run(load_dataset(Path("../shared/data/clive-dev")), "auto", ["oracle", "single"], 320, "clive")
else:
    biq = load_dataset(Path("../shared/data/biq-dev"))
    Xbiq = ex.extract(biq.paths, progress=False).features
    order = np.random.default_rng(0).permutation(len(biq.paths))
    a, b = sorted(order[:2000]), sorted(order[2000:])
    A, B = biq.subset(a), biq.subset(b)
    fit_prior(Xbiq[a], A.mos, ex.namespace, "biq-dev half A").save(OUT / "prior-biq-A.npz")
    out = run(B, str(OUT / "prior-biq-A.npz"), ["oracle"], 400, "biq")
json.dump({"rows": out, "wall_s": time.perf_counter() - started}, open(OUT / f"results-{which}.json", "w"), indent=1)
print("done", time.perf_counter() - started, flush=True)
