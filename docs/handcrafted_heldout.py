"""Issue 15 round 21: the hand-crafted statistics clive-dev dropped, on held-out photos of both sets
(21a: 10 global statistics of exposure, contrast and colour, weight 5; 21b: BRISQUE's 36 values,
weight 2); protocol in docs/experiments.md, fixed before this run.
Usage: python docs/handcrafted_heldout.py extract   (once: both blocks, both sets, resumable)
       python docs/handcrafted_heldout.py clive|biq   (one process per set)."""
import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.special import gamma

from ml_backend.config import Config
from ml_backend.evaluation.metrics import all_metrics, srcc, terciles
from ml_backend.evaluation.replay import load_dataset, select, simulated_labels
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.features.images import decode_image, read_image_bytes
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.prior import fit_prior, resolve_prior

OUT = Path(".mos/exp/r21")
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(490, 520)
BUDGETS = (25, 50, 100, 200)
ARMS = ("default", "21a", "21b")
METRICS = ("srcc", "f1_3class", "rmse")
SETS = {"clive": Path("../shared/data/clive-dev"), "biq": Path("../shared/data/biq-dev")}
CHUNK = 200
N_GLOBAL, N_BRISQUE = 10, 36
COPIES = {"21a": 25, "21b": 4}  # weight 5 and weight 2
SHAPES = np.arange(0.2, 10.0, 0.001)
GGD_RATIO = gamma(1 / SHAPES) * gamma(3 / SHAPES) / gamma(2 / SHAPES) ** 2
AGGD_RATIO = gamma(2 / SHAPES) ** 2 / (gamma(1 / SHAPES) * gamma(3 / SHAPES))


def global_statistics(rgb):
    """rgb [H, W, 3] in [0, 255] -> the 10 values of exposure, contrast and colour."""
    y = rgb @ np.array([0.299, 0.587, 0.114]) / 255.0
    hist = np.histogram(y, bins=256, range=(0.0, 1.0))[0] / y.size
    entropy = -np.sum(hist[hist > 0] * np.log2(hist[hist > 0]))
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    top, bottom = rgb.max(axis=2), rgb.min(axis=2)
    saturation = np.where(top > 0, (top - bottom) / np.maximum(top, 1e-12), 0.0)
    p5, p95 = np.percentile(y, [5, 95])
    return [y.mean(), y.std(), p5, p95, np.mean(y < 0.02), np.mean(y > 0.98), entropy,
            colourfulness, saturation.mean(), saturation.std()]


def ggd(x):
    """Generalised Gaussian by moment matching: shape, variance."""
    variance = np.mean(x * x)
    rho = variance / np.mean(np.abs(x)) ** 2
    return [SHAPES[np.argmin(np.abs(rho - GGD_RATIO))], variance]


def aggd(x):
    """Asymmetric generalised Gaussian by moment matching: shape, mean, left and right variances."""
    left, right = np.sqrt(np.mean(x[x < 0] ** 2)), np.sqrt(np.mean(x[x > 0] ** 2))
    ratio = left / right
    rhat = np.mean(np.abs(x)) ** 2 / np.mean(x * x)
    rhat_norm = rhat * (ratio ** 3 + 1) * (ratio + 1) / (ratio ** 2 + 1) ** 2
    shape = SHAPES[np.argmin((AGGD_RATIO - rhat_norm) ** 2)]
    mean = (right - left) * gamma(2 / shape) / gamma(1 / shape) * np.sqrt(gamma(1 / shape) / gamma(3 / shape))
    return [shape, mean, left ** 2, right ** 2]


def brisque_scale(luma):
    """The 18 values of one scale: GGD of the MSCN coefficients, AGGD of 4 neighbour products."""
    sigma = 7 / 6
    truncate = 3 / sigma  # a 7 x 7 window
    mu = gaussian_filter(luma, sigma, truncate=truncate)
    sd = np.sqrt(np.abs(gaussian_filter(luma * luma, sigma, truncate=truncate) - mu * mu))
    m = (luma - mu) / (sd + 1)
    products = [m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]]
    return ggd(m) + [v for p in products for v in aggd(p)]


def brisque(rgb):
    luma = (rgb @ np.array([0.299, 0.587, 0.114])).astype(np.float64)
    half = np.asarray(Image.fromarray(luma.astype(np.float32), mode="F").resize(
        (luma.shape[1] // 2, luma.shape[0] // 2), Image.Resampling.BICUBIC), dtype=np.float64)
    return brisque_scale(luma) + brisque_scale(half)


def statistics(path):
    img = decode_image(read_image_bytes(path), path, Config().max_side)
    rgb = np.asarray(img, dtype=np.float64)
    return np.array(global_statistics(rgb) + brisque(rgb), dtype=np.float32)


def extract():
    for tag, root in SETS.items():
        paths = load_dataset(root).paths
        for start in range(0, len(paths), CHUNK):
            part = OUT / f"stats-{tag}-{start:05d}.npy"
            if part.exists():
                continue
            t0 = time.perf_counter()
            with Pool(2) as pool:
                rows = pool.map(statistics, paths[start:start + CHUNK])
            np.save(part, np.stack(rows))
            print(tag, start, f"{time.perf_counter() - t0:.1f} s", flush=True)


def load_stats(tag, n):
    S = np.concatenate([np.load(OUT / f"stats-{tag}-{s:05d}.npy") for s in range(0, n, CHUNK)])
    assert np.isfinite(S).all(), f"non-finite statistics in {tag}"
    return S


def candidates(X, S):
    """The arms' features: the default's columns plus each block's copies."""
    blocks = {"21a": S[:, :N_GLOBAL], "21b": S[:, N_GLOBAL:]}
    out = {"default": X}
    for arm, block in blocks.items():
        out[arm] = np.ascontiguousarray(np.hstack([X, np.repeat(block, COPIES[arm], axis=1)]))
    return out, blocks


def run(dataset, X, S, priors, labels, pool, held, tag):
    features, blocks = candidates(X, S)
    base = Config().params_for("ridge")
    thirds = terciles(dataset.mos)
    res = {}
    for seed in SEEDS:
        order = np.random.default_rng([seed, 21]).permutation(len(dataset.paths))
        P, H = np.sort(order[:pool]), np.sort(order[pool:pool + held])
        ranking = {arm: select(features[arm][P], "ted", max(BUDGETS), seed) for arm in ARMS}
        for lab in labels:
            y = simulated_labels(dataset, lab, np.random.default_rng(seed))[P]
            for arm in ARMS:
                XP, XH = features[arm][P], features[arm][H]
                for b in BUDGETS:
                    picks = ranking[arm][:b]
                    model = PREDICTORS.create("ridge", {**base, "prior": priors[arm]}).fit(XP[picks], y[picks])
                    res[(arm, lab, b, seed)] = all_metrics(model.predict(XH), dataset.mos[H], thirds)
        y = simulated_labels(dataset, "oracle", np.random.default_rng(seed))[P]
        picks = ranking["default"][:100]
        for arm, block in blocks.items():
            alone = PREDICTORS.create("ridge", {**base, "prior": "none"}).fit(block[P][picks], y[picks])
            res[("alone", arm, seed)] = srcc(alone.predict(block[H]), dataset.mos[H])
        for arm in ARMS:
            res[("zero-shot", arm, seed)] = srcc(resolve_prior(priors[arm]).predict(features[arm][H]), dataset.mos[H])
        print(tag, "seed", seed, time.strftime("%H:%M:%S"), flush=True)
    rows = []
    for lab in labels:
        for b in BUDGETS:
            row = {"set": tag, "labels": lab, "budget": b,
                   "means": {a: {m: float(np.mean([res[(a, lab, b, k)][m] for k in SEEDS])) for m in METRICS}
                             for a in ARMS}}
            for arm in ("21a", "21b"):
                for m in METRICS:
                    d = np.array([res[(arm, lab, b, k)][m] - res[("default", lab, b, k)][m] for k in SEEDS])
                    row[f"{arm} {m}"] = [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
            rows.append(row)
            print(json.dumps(row), flush=True)
    zero = {arm: float(np.mean([res[("zero-shot", arm, k)] for k in SEEDS])) for arm in ARMS}
    alone = {arm: float(np.mean([res[("alone", arm, k)] for k in SEEDS])) for arm in blocks}
    return {"rows": rows, "zero_shot_on_H": zero, "block_alone_at_100_on_H": alone}


def main():
    started = time.perf_counter()
    which = sys.argv[1]
    if which == "extract":
        extract()
        print("done", time.perf_counter() - started, flush=True)
        return
    ex = FeatureExtractor(cache_dir=Path(".mos/cache"))
    biq = load_dataset(SETS["biq"])
    Xbiq = ex.extract(biq.paths, progress=False).features
    Fbiq, _ = candidates(Xbiq, load_stats("biq", len(biq.paths)))
    if which == "clive":
        clive = load_dataset(SETS["clive"])
        X = ex.extract(clive.paths, progress=False).features
        S = load_stats("clive", len(clive.paths))
        priors = {"default": "auto"}
        for arm in ("21a", "21b"):
            fit_prior(Fbiq[arm], biq.mos, f"round 21 {arm}", "biq-dev").save(OUT / f"prior-{arm}-biq.npz")
            priors[arm] = str(OUT / f"prior-{arm}-biq.npz")
        out = run(clive, X, S, priors, ["oracle", "single"], 300, 100, "clive")
    else:
        order = np.random.default_rng(0).permutation(len(biq.paths))
        a, b = sorted(order[:2000]), sorted(order[2000:])
        priors = {}
        for arm in ARMS:
            name = ex.namespace if arm == "default" else f"round 21 {arm}"
            fit_prior(Fbiq[arm][a], biq.mos[a], name, "biq-dev half A").save(
                OUT / f"prior-{arm}-biq-A.npz")
            priors[arm] = str(OUT / f"prior-{arm}-biq-A.npz")
        out = run(biq.subset(b), Xbiq[b], load_stats("biq", len(biq.paths))[b], priors, ["oracle"], 400, 400, "biq")
    out["wall_s"] = time.perf_counter() - started
    json.dump(out, open(OUT / f"results-{which}.json", "w"), indent=1)
    print("done", out["wall_s"], flush=True)


if __name__ == "__main__":
    main()
