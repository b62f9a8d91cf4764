"""Issue 15 round 14: the rating order judged on photos no order may rate (S the product's stream,
U `ted` up front, A evaluate's `active`); protocol in docs/experiments.md, fixed before this run.
Usage: python docs/rating_order_heldout.py clive|biq   (one process per set)."""
import json, math, sys, time
from pathlib import Path
import numpy as np
from ml_backend.config import Config
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.evaluation.metrics import all_metrics, srcc, terciles
from ml_backend.evaluation.replay import load_dataset, select, simulated_labels
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.prior import fit_prior

OUT = Path(".mos/exp/r14"); OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(280, 310)
BUDGETS = (25, 50, 100, 200)
REPRESENTATIVES = 20
ARMS = ("S", "U", "A")
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))


def measure(params, XP, yP, mosP, XH, mosH, thirds, labelled):
    """The model fitted on `labelled` (rows of P) scored on H, with the reported-beside numbers."""
    model = PREDICTORS.create("ridge", params).fit(XP[labelled], yP[labelled])
    rest = np.setdiff1d(np.arange(len(XP)), labelled)
    on_h = model.predict(XH)
    on_rest = model.predict(XP[rest])
    exported = np.empty(len(XP))
    exported[labelled], exported[rest] = yP[labelled], on_rest
    return {**all_metrics(on_h, mosH, thirds), "srcc_rest": srcc(on_rest, mosP[rest]),
            "srcc_export": srcc(exported, mosP), "rest_mos_std": float(np.std(mosP[rest]))}


def least_confident(params, XP, yP, labelled, count):
    model = PREDICTORS.create("ridge", params).fit(XP[labelled], yP[labelled])
    rest = np.setdiff1d(np.arange(len(XP)), labelled)
    _, confidence = model.predict_with_confidence(XP[rest])
    return rest[np.argsort(confidence, kind="stable")[:count]]


def trial(params, XP, yP, mosP, XH, mosH, thirds, seed):
    """Every arm at every budget on one pool and one set of labels."""
    out = {}
    ranking = select(XP, "ted", max(BUDGETS), seed)  # nested: the first b are ted's picks for b
    for b in BUDGETS:
        out[("U", b)] = measure(params, XP, yP, mosP, XH, mosH, thirds, ranking[:b])
        labelled = ranking[: b // 2]
        per_round = max(1, math.ceil((b - len(labelled)) / 4))
        while len(labelled) < b:
            take = least_confident(params, XP, yP, labelled, min(per_round, b - len(labelled)))
            labelled = np.concatenate([labelled, take])
        out[("A", b)] = measure(params, XP, yP, mosP, XH, mosH, thirds, labelled)
    labelled = ranking[:REPRESENTATIVES]
    while True:
        if len(labelled) in BUDGETS:
            out[("S", len(labelled))] = measure(params, XP, yP, mosP, XH, mosH, thirds, labelled)
        if len(labelled) == max(BUDGETS):
            return out
        labelled = np.concatenate([labelled, least_confident(params, XP, yP, labelled, 1)])


def run(dataset, X, prior_spec, labels, pool, held, tag):
    params = {**Config().params_for("ridge"), "prior": prior_spec}
    thirds = terciles(dataset.mos)
    res = {}
    for seed in SEEDS:
        order = np.random.default_rng([seed, 14]).permutation(len(dataset.paths))
        P, H = np.sort(order[:pool]), np.sort(order[pool:pool + held])
        for lab in labels:
            y = simulated_labels(dataset, lab, np.random.default_rng(seed))
            for (arm, b), m in trial(params, X[P], y[P], dataset.mos[P], X[H], dataset.mos[H], thirds, seed).items():
                res[(arm, lab, b, seed)] = m
        print(tag, "seed", seed, "done", time.strftime("%H:%M:%S"), flush=True)
    rows = []
    for lab in labels:
        for b in BUDGETS:
            row = {"set": tag, "labels": lab, "budget": b,
                   "means": {a: {m: float(np.mean([res[(a, lab, b, k)][m] for k in SEEDS]))
                                 for m in res[(a, lab, b, SEEDS[0])]} for a in ARMS}}
            for arm in ("U", "A"):
                for m in ("srcc", "f1_3class", "rmse", "srcc_rest", "srcc_export", "rest_mos_std"):
                    d = np.array([res[(arm, lab, b, k)][m] - res[("S", lab, b, k)][m] for k in SEEDS])
                    row[f"{arm}-S {m}"] = [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


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
    A, B = biq.subset(a), biq.subset(b)
    fit_prior(Xbiq[a], A.mos, ex.namespace, "biq-dev half A").save(OUT / "prior-biq-A.npz")
    out = run(B, Xbiq[b], str(OUT / "prior-biq-A.npz"), ["oracle"], 400, 400, "biq")
json.dump({"rows": out, "wall_s": time.perf_counter() - started}, open(OUT / f"results-{which}.json", "w"), indent=1)
print("done", time.perf_counter() - started, flush=True)
