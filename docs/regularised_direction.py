"""Issue 15 round 8: round 4's quality direction learned from synthetic distortions, with a 1,000x
stronger penalty (8b) or on 32 principal components (8c) (protocol in docs/experiments.md, fixed
before this run)."""
import io, json, time
from pathlib import Path
import numpy as np
from PIL import Image, ImageFilter
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from ml_backend.config import Config, DEFAULTS
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.features.images import load_image
from ml_backend.evaluation.replay import load_dataset, run_trial, subsample_rows
from ml_backend.prediction.prior import QualityPrior, fit_prior, resolve_prior
from ml_backend.selection import SELECTORS
from ml_backend.selection.ted import TEDSelector

OUT = Path(".mos/exp/r8"); OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(100, 130)
BUDGETS = (25, 50, 100, 200)
KINDS = ("blur", "noise", "jpeg", "exposure")
LEVELS = 3
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))
_picks: dict = {}


@SELECTORS.register("ted_memo")
class TedMemo(BaseEstimator):
    """The default's `ted`, its picks memoised so that label modes share them."""
    def __init__(self, n_select: int = 25, random_state: int | None = 0) -> None:
        self.n_select, self.random_state = n_select, random_state
    def check_params(self):
        return self
    def fit(self, X, y=None):
        key = (X.shape, self.n_select, self.random_state, float(X[:, :50].sum()), float(X[::7, -200:].sum()))
        if key not in _picks:
            _picks[key] = TEDSelector(n_select=self.n_select, random_state=self.random_state).fit(X).selected_
        self.selected_ = _picks[key]
        return self


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


def pairs(paths, name):
    """Round 4's pairs: standardised features of the 200 sources and their copies, and the
    (better - worse) differences."""
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
    return np.array(diffs), Z0, mean, std


def scores(X, paths, name):
    """8b and 8c's scores of every row of X, and their training-pair accuracies."""
    D, Z0, mean, std = pairs(paths, name)
    y = np.r_[np.ones(len(D)), np.zeros(len(D))]
    Z = (X.astype(np.float64) - mean) / std
    b = LogisticRegression(C=1e-3, fit_intercept=False, max_iter=1000).fit(np.vstack([D, -D]), y)
    pca = PCA(32, random_state=0).fit(Z0)
    P = D @ pca.components_.T  # differences of projections (the centring cancels)
    c = LogisticRegression(C=1.0, fit_intercept=False, max_iter=1000).fit(np.vstack([P, -P]), y)
    acc = {"8b": b.score(np.vstack([D, -D]), y), "8c": c.score(np.vstack([P, -P]), y)}
    return {"8b": Z @ b.coef_[0], "8c": pca.transform(Z) @ c.coef_[0]}, acc


def padded(prior, extra, path):
    QualityPrior(np.r_[prior.mean, np.zeros(extra)], np.r_[prior.scale, np.ones(extra)],
                 np.r_[prior.coef, np.zeros(extra)], prior.intercept, prior.features, prior.trained_on).save(path)
    return str(path)


def run(dataset, prior_spec, labels, pool, tag):
    X = ex.extract(dataset.paths, progress=False).features
    prior = resolve_prior(prior_spec, X.shape[1])
    rows200 = sorted(np.random.default_rng(1).permutation(len(dataset.paths))[:200])
    t0 = time.perf_counter()
    s, acc = scores(X, [dataset.paths[i] for i in rows200], tag)
    info = {"pair_accuracy": acc, "learn_s": time.perf_counter() - t0,
            "zero_shot_srcc_prior": float(spearmanr(prior.predict(X), dataset.mos)[0]),
            **{f"zero_shot_srcc_{k}": float(spearmanr(v, dataset.mos)[0]) for k, v in s.items()}}
    print(tag, info, flush=True)
    ridge = Config().params_for("ridge")
    configs = {"base": (X, {"ridge": {**ridge, "prior": prior_spec}})}
    for k, v in s.items():
        F = np.hstack([X, np.repeat(v[:, None], 121, axis=1).astype(X.dtype)])
        configs[k] = (F, {"ridge": {**ridge, "prior": padded(prior, 121, OUT / f"prior-{tag}-{k}.npz")}})
    res = {}
    for seed in SEEDS:
        keep = subsample_rows(len(dataset.paths), pool / len(dataset.paths), seed)
        dk = dataset.subset(keep)
        for name, (F, settings) in configs.items():
            Fk = F[keep]
            for lab in labels:
                for b in BUDGETS:
                    res[(name, lab, b, seed)] = run_trial(Fk, dk, "ted_memo", "ridge", b, seed, lab,
                                                          settings=settings).metrics["srcc"]
        print(tag, "seed", seed, "done", flush=True)
    rows = []
    for name in s:
        for lab in labels:
            for b in BUDGETS:
                d = np.array([res[(name, lab, b, k)] - res[("base", lab, b, k)] for k in SEEDS])
                base = np.mean([res[("base", lab, b, k)] for k in SEEDS])
                rows.append((tag, name, lab, b, round(base, 3), round(d.mean(), 4), round(d.std(ddof=1) / np.sqrt(len(d)), 4)))
                print(*rows[-1], flush=True)
    return rows, info


started = time.perf_counter()
out = {}
clive = load_dataset(Path("../shared/data/clive-dev"))
out["clive"] = run(clive, "auto", ["oracle", "single"], 320, "clive")
biq = load_dataset(Path("../shared/data/biq-dev"))
order = np.random.default_rng(0).permutation(len(biq.paths))
A, B = biq.subset(sorted(order[:2000])), biq.subset(sorted(order[2000:]))
fit_prior(ex.extract(A.paths, progress=False).features, A.mos, ex.namespace, "biq-dev half A").save(OUT / "prior-biq-A.npz")
out["biq"] = run(B, str(OUT / "prior-biq-A.npz"), ["oracle"], 400, "biq")
out["wall_s"] = time.perf_counter() - started
json.dump(out, open(OUT / "results.json", "w"), indent=1)
print("done", out["wall_s"], flush=True)
