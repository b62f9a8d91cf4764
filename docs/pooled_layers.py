"""Issue 15 round 20: the pooled layers on held-out photos of both sets (20a every block, 20b the
last block of each stage); protocol in docs/experiments.md, fixed before this run.
Usage: python docs/pooled_layers.py extract   (once: every block pooled, both sets, resumable)
       python docs/pooled_layers.py clive|biq   (one process per set)."""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ml_backend.config import Config
from ml_backend.evaluation.metrics import all_metrics, srcc, terciles
from ml_backend.evaluation.replay import load_dataset, select, simulated_labels
from ml_backend.features.backbones import EfficientNetLite0, get_backbone, log_laplacian_variance, mean_std_pool
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.features.images import decode_image, read_image_bytes
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.prior import fit_prior, resolve_prior

OUT = Path(".mos/exp/r20")
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(460, 490)
BUDGETS = (25, 50, 100, 200)
ARMS = ("default", "20a", "20b")
METRICS = ("srcc", "f1_3class", "rmse")
CHANNELS = [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320]
REPEATS = EfficientNetLite0.SHARPNESS_REPEATS
SETS = {"clive": Path("../shared/data/clive-dev"), "biq": Path("../shared/data/biq-dev")}
CHUNK = 200


def pooled(net, image):
    """Every block's mean and std, the head's std, the sharpness value: [N, 2*1808 + 1280 + 1]."""
    x = net.stem(image)
    out = []
    for block in net.blocks:
        x = block(x)
        out.append(mean_std_pool(x))
    out.append(torch.std(net.head(x), dim=(2, 3), correction=0))
    out.append(log_laplacian_variance(image)[:, None])
    return torch.cat(out, dim=1)


def extract():
    torch.set_num_threads(2)
    net = get_backbone("efficientnet_lite0")
    for tag, root in SETS.items():
        paths = load_dataset(root).paths
        for start in range(0, len(paths), CHUNK):
            part = OUT / f"all-blocks-{tag}-{start:05d}.npy"
            if part.exists():
                continue
            t0 = time.perf_counter()
            rows = []
            with torch.no_grad():
                for path in paths[start:start + CHUNK]:
                    img = decode_image(read_image_bytes(path), path, Config().max_side)
                    rows.append(pooled(net, net.preprocess(img)[None])[0].numpy())
            np.save(part, np.stack(rows).astype(np.float16))
            print(tag, start, f"{time.perf_counter() - t0:.1f} s", flush=True)


def columns(blocks):
    """Columns of the all-blocks pass for these blocks (mean and std each), the head's std and
    the sharpness value repeated as in the default."""
    offsets = np.concatenate([[0], np.cumsum([2 * c for c in CHANNELS])])
    cols = [np.arange(offsets[b], offsets[b + 1]) for b in blocks]
    head = np.arange(offsets[-1], offsets[-1] + 1280)
    sharp = np.full(REPEATS, offsets[-1] + 1280)
    return np.concatenate(cols + [head, sharp])


LAYOUTS = {"default": columns(range(9, 16)), "20a": columns(range(16)), "20b": columns([0, 2, 4, 7, 10, 14, 15])}


def load_all_blocks(tag, n):
    parts = [np.load(OUT / f"all-blocks-{tag}-{s:05d}.npy") for s in range(0, n, CHUNK)]
    return np.concatenate(parts).astype(np.float32)


def gap(mine, cached):
    """Largest absolute difference, and largest in units of the column's standard deviation."""
    diff = np.abs(mine - cached)
    return {"abs": float(diff.max()), "in_sd": float((diff / (cached.std(axis=0) + 1e-12)).max())}


def run(dataset, X, A, priors, labels, pool, held, tag):
    """X: the cached default features; A: the all-blocks pass of the same photos."""
    features = {"default": X, "20a": A[:, LAYOUTS["20a"]], "20b": A[:, LAYOUTS["20b"]]}
    base = Config().params_for("ridge")
    thirds = terciles(dataset.mos)
    res = {}
    for seed in SEEDS:
        order = np.random.default_rng([seed, 20]).permutation(len(dataset.paths))
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
        for arm in ARMS:
            res[("zero-shot", arm, seed)] = srcc(resolve_prior(priors[arm]).predict(features[arm][H]), dataset.mos[H])
        print(tag, "seed", seed, time.strftime("%H:%M:%S"), flush=True)
    rows = []
    for lab in labels:
        for b in BUDGETS:
            row = {"set": tag, "labels": lab, "budget": b,
                   "means": {a: {m: float(np.mean([res[(a, lab, b, k)][m] for k in SEEDS])) for m in METRICS}
                             for a in ARMS}}
            for arm in ("20a", "20b"):
                for m in METRICS:
                    d = np.array([res[(arm, lab, b, k)][m] - res[("default", lab, b, k)][m] for k in SEEDS])
                    row[f"{arm} {m}"] = [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
            rows.append(row)
            print(json.dumps(row), flush=True)
    zero = {arm: float(np.mean([res[("zero-shot", arm, k)] for k in SEEDS])) for arm in ARMS}
    return {"rows": rows, "zero_shot_on_H": zero}


started = time.perf_counter()
which = sys.argv[1]
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))
if which == "extract":
    extract()
else:
    biq = load_dataset(SETS["biq"])
    Xbiq = ex.extract(biq.paths, progress=False).features
    Abiq = load_all_blocks("biq", len(biq.paths))
    control = {"biq": gap(Abiq[:, LAYOUTS["default"]], Xbiq)}
    if which == "clive":
        clive = load_dataset(SETS["clive"])
        X = ex.extract(clive.paths, progress=False).features
        A = load_all_blocks("clive", len(clive.paths))
        control["clive"] = gap(A[:, LAYOUTS["default"]], X)
        priors = {"default": "auto"}
        for arm in ("20a", "20b"):
            fit_prior(Abiq[:, LAYOUTS[arm]], biq.mos, f"round 20 {arm}", "biq-dev").save(OUT / f"prior-{arm}-biq.npz")
            priors[arm] = str(OUT / f"prior-{arm}-biq.npz")
        out = run(clive, X, A, priors, ["oracle", "single"], 300, 100, "clive")
    else:
        order = np.random.default_rng(0).permutation(len(biq.paths))
        a, b = sorted(order[:2000]), sorted(order[2000:])
        fit_prior(Xbiq[a], biq.mos[a], ex.namespace, "biq-dev half A").save(OUT / "prior-default-biq-A.npz")
        priors = {"default": str(OUT / "prior-default-biq-A.npz")}
        for arm in ("20a", "20b"):
            fit_prior(Abiq[a][:, LAYOUTS[arm]], biq.mos[a], f"round 20 {arm}", "biq-dev half A").save(
                OUT / f"prior-{arm}-biq-A.npz")
            priors[arm] = str(OUT / f"prior-{arm}-biq-A.npz")
        out = run(biq.subset(b), Xbiq[b], Abiq[b], priors, ["oracle"], 400, 400, "biq")
    out["control_max_abs"] = control
    print("control: largest |default columns of the all-blocks pass - cached default features|", control)
    out["wall_s"] = time.perf_counter() - started
    json.dump(out, open(OUT / f"results-{which}.json", "w"), indent=1)
print("done", time.perf_counter() - started, flush=True)
