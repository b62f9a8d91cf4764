"""Issue 15 round 3: pseudo-reference features (protocol in docs/experiments.md, fixed before this run)."""
import csv, json, sys
from pathlib import Path
import numpy as np
from PIL import ImageFilter
from ml_backend.config import Config, DEFAULTS
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.features.images import load_image
from ml_backend.evaluation.replay import Grid, load_dataset, run_grid
from ml_backend.prediction.prior import QualityPrior, fit_prior, resolve_prior

OUT = Path(".mos/exp/pr"); OUT.mkdir(parents=True, exist_ok=True)
CACHE = Path(".mos/cache")
SIGMA = 1.5
ACT = 2 * (2 * 112 + 4 * 192 + 320) + 1280  # activation columns (the sharpness copies excluded)
ex = FeatureExtractor(cache_dir=CACHE)

def blurred_paths(paths, name):
    folder = OUT / f"blur-{name}"; folder.mkdir(exist_ok=True)
    out = []
    for i, p in enumerate(paths):
        q = folder / f"{i}.png"
        if not q.exists():
            load_image(p, DEFAULTS.max_side).filter(ImageFilter.GaussianBlur(SIGMA)).save(q)
        out.append(q)
    return out

def features(dataset, name):
    f = ex.extract(dataset.paths, progress=False)
    assert not f.failed, f.failed
    b = ex.extract(blurred_paths(dataset.paths, name), progress=False)
    assert not b.failed
    X, Xb = f.features, b.features
    diff = X - Xb
    r = np.linalg.norm(diff[:, :ACT], axis=1) / np.linalg.norm(X[:, :ACT], axis=1)
    return {"base": X, "7a": np.hstack([X, diff]), "7b": np.hstack([X, np.repeat(r[:, None], 121, axis=1)])}

def padded(prior, extra, path):
    QualityPrior(np.r_[prior.mean, np.zeros(extra)], np.r_[prior.scale, np.ones(extra)],
                 np.r_[prior.coef, np.zeros(extra)], prior.intercept, prior.features, prior.trained_on).save(path)
    return str(path)

def run(dataset, Xs, prior_spec, prior, labels, pool, tag):
    settings = Config().params_for("ridge")
    results = {}
    for name, X in Xs.items():
        spec = prior_spec if name == "base" else padded(prior, X.shape[1] - Xs["base"].shape[1], OUT / f"prior-{tag}-{name}.npz")
        grid = Grid(budgets=[25, 50, 100, 200], selectors=["ted"], predictors=["ridge"], labels=labels, seeds=10,
                    pool=pool, settings={"ridge": {**settings, "prior": spec}})
        trials = run_grid(X, dataset, grid)
        results[name] = {(t.labels, t.budget, t.seed): t.metrics["srcc"] for t in trials}
        print(tag, name, "done", flush=True)
    rows = []
    for name in ("7a", "7b"):
        for lab in labels:
            for budget in (25, 50, 100, 200):
                d = np.array([results[name][(lab, budget, s)] - results["base"][(lab, budget, s)] for s in range(10)])
                base = np.mean([results["base"][(lab, budget, s)] for s in range(10)])
                rows.append((tag, name, lab, budget, round(base, 3), round(d.mean(), 4), round(d.std(ddof=1) / np.sqrt(10), 4)))
                print(*rows[-1], flush=True)
    return rows

rows = []
clive = load_dataset(Path("../shared/data/clive-dev"))
rows += run(clive, features(clive, "clive"), "auto", resolve_prior("auto"), ["oracle", "single"], 320, "clive")
biq = load_dataset(Path("../shared/data/biq-dev"))
order = np.random.default_rng(0).permutation(len(biq.paths))
A, B = biq.subset(sorted(order[:2000])), biq.subset(sorted(order[2000:]))
XA = ex.extract(A.paths, progress=False).features
prior_a = fit_prior(XA, A.mos, ex.namespace, "biq-dev half A")
prior_a.save(OUT / "prior-biq-A.npz")
rows += run(B, features(B, "biqB"), str(OUT / "prior-biq-A.npz"), prior_a, ["oracle"], 400, "biq")
json.dump(rows, open(OUT / "results.json", "w"))
