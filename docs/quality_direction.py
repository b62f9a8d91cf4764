"""Issue 15 round 4: a quality direction learned from synthetic distortions (protocol in docs/experiments.md, fixed before this run)."""
import io, json
from pathlib import Path
import numpy as np
from PIL import Image, ImageFilter
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from ml_backend.config import Config, DEFAULTS
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.features.images import load_image
from ml_backend.evaluation.replay import Grid, load_dataset, run_grid
from ml_backend.prediction.prior import QualityPrior, fit_prior, resolve_prior

OUT = Path(".mos/exp/qd"); OUT.mkdir(parents=True, exist_ok=True)
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))
LEVELS = 3

def distorted(img, kind, level, rng):
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur((1, 2, 4)[level]))
    a = np.asarray(img, dtype=np.float32)
    if kind == "noise":
        a = a + rng.normal(0, (5, 10, 20)[level], a.shape)
    elif kind == "exposure":
        luma = (0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]).mean()
        a = a * ((0.7, 0.5, 0.35) if luma < 128 else (1.3, 1.6, 2.0))[level]
    else:  # jpeg
        buf = io.BytesIO(); img.save(buf, "JPEG", quality=(40, 20, 10)[level])
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))

KINDS = ("blur", "noise", "jpeg", "exposure")

def direction(paths, name):
    """Learns w from the 200 images' copies; returns (w, mean, std) on the default features."""
    folder = OUT / name; folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(2)
    copies = []
    for i, p in enumerate(paths):
        img = load_image(p, DEFAULTS.max_side)
        for kind in KINDS:
            for level in range(LEVELS):
                q = folder / f"{i}-{kind}-{level}.png"
                d = distorted(img, kind, level, rng)  # always drawn, so the noise does not depend on what exists
                if not q.exists():
                    d.save(q)
                copies.append(q)
    src = ex.extract(paths, progress=False); assert not src.failed
    cp = ex.extract(copies, progress=True); assert not cp.failed, cp.failed
    F0 = src.features.astype(np.float64)
    mean, std = F0.mean(0), F0.std(0) + 1e-6
    Z0 = (F0 - mean) / std
    Zc = ((cp.features.astype(np.float64) - mean) / std).reshape(len(paths), len(KINDS), LEVELS, -1)
    diffs = []
    for i in range(len(paths)):
        for k in range(len(KINDS)):
            versions = [Z0[i]] + [Zc[i, k, l] for l in range(LEVELS)]
            for a in range(4):
                for b in range(a + 1, 4):
                    diffs.append(versions[a] - versions[b])
    D = np.array(diffs)
    X = np.vstack([D, -D]); y = np.r_[np.ones(len(D)), np.zeros(len(D))]
    clf = LogisticRegression(C=1.0, fit_intercept=False, max_iter=1000).fit(X, y)
    print(name, "pairs", len(D), "train accuracy", clf.score(X, y), flush=True)
    return clf.coef_[0], mean, std

def padded(prior, extra, path):
    QualityPrior(np.r_[prior.mean, np.zeros(extra)], np.r_[prior.scale, np.ones(extra)],
                 np.r_[prior.coef, np.zeros(extra)], prior.intercept, prior.features, prior.trained_on).save(path)
    return str(path)

def run(dataset, prior_spec, prior, labels, pool, tag):
    X = ex.extract(dataset.paths, progress=False).features
    rows200 = sorted(np.random.default_rng(1).permutation(len(dataset.paths))[:200])
    w, mean, std = direction([dataset.paths[i] for i in rows200], tag)
    s = ((X.astype(np.float64) - mean) / std) @ w
    info = {"zero_shot_srcc_direction": float(spearmanr(s, dataset.mos)[0]),
            "zero_shot_srcc_prior": float(spearmanr(prior.predict(X), dataset.mos)[0])}
    print(tag, info, flush=True)
    Xs = {"base": X, "8a": np.hstack([X, np.repeat(s[:, None], 121, axis=1)]).astype(np.float32)}
    settings = Config().params_for("ridge")
    results = {}
    for name, F in Xs.items():
        spec = prior_spec if name == "base" else padded(prior, F.shape[1] - X.shape[1], OUT / f"prior-{tag}-{name}.npz")
        grid = Grid(budgets=[25, 50, 100, 200], selectors=["ted"], predictors=["ridge"], labels=labels, seeds=10,
                    pool=pool, settings={"ridge": {**settings, "prior": spec}})
        results[name] = {(t.labels, t.budget, t.seed): t.metrics["srcc"] for t in run_grid(F, dataset, grid)}
        print(tag, name, "done", flush=True)
    rows = []
    for lab in labels:
        for budget in (25, 50, 100, 200):
            d = np.array([results["8a"][(lab, budget, k)] - results["base"][(lab, budget, k)] for k in range(10)])
            base = np.mean([results["base"][(lab, budget, k)] for k in range(10)])
            rows.append((tag, "8a", lab, budget, round(base, 3), round(d.mean(), 4), round(d.std(ddof=1) / np.sqrt(10), 4)))
            print(*rows[-1], flush=True)
    return rows, info

out = {}
clive = load_dataset(Path("../shared/data/clive-dev"))
out["clive"] = run(clive, "auto", resolve_prior("auto"), ["oracle", "single"], 320, "clive")
biq = load_dataset(Path("../shared/data/biq-dev"))
order = np.random.default_rng(0).permutation(len(biq.paths))
A, B = biq.subset(sorted(order[:2000])), biq.subset(sorted(order[2000:]))
prior_a = fit_prior(ex.extract(A.paths, progress=False).features, A.mos, ex.namespace, "biq-dev half A")
prior_a.save(OUT / "prior-biq-A.npz")
out["biq"] = run(B, str(OUT / "prior-biq-A.npz"), prior_a, ["oracle"], 400, "biq")
json.dump(out, open(OUT / "results.json", "w"), indent=1)
