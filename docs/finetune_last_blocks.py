"""Issue 15 round 5, candidate 9: the last blocks of EfficientNet-Lite0 fine-tuned on synthetic-distortion rankings
(protocol in docs/experiments.md, fixed before this run)."""
import io, json, time
from pathlib import Path
import numpy as np
import torch
from PIL import Image, ImageFilter
from scipy.stats import spearmanr
from torch.nn import functional as F
from ml_backend.config import Config, DEFAULTS
from ml_backend.evaluation.replay import Grid, load_dataset, run_grid
from ml_backend.features.backbones import EfficientNetLite0, mean_std_pool
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.features.images import load_image
from ml_backend.prediction.prior import QualityPrior, fit_prior, resolve_prior

OUT = Path(".mos/exp/r5ft"); OUT.mkdir(parents=True, exist_ok=True)
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))
torch.set_num_threads(2)
KINDS, LEVELS, FROZEN = ("blur", "noise", "jpeg", "exposure"), 3, 14

def distorted(img, kind, level, rng):  # round 4's distortions, unchanged
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

def trunk(net, img):
    """Output of the frozen stem and blocks 0-13, float16 [192, h, w]."""
    with torch.no_grad():
        x = net.stem(net.preprocess(img)[None])
        for i in range(FROZEN):
            x = net.blocks[i](x)
    return x[0].half()

def tail(net, x):
    """The trainable part's pooled outputs: blocks 14 and 15 mean and std, the head's std (2,304 values)."""
    x14 = net.blocks[14](x); x15 = net.blocks[15](x14)
    return torch.cat([mean_std_pool(x14), mean_std_pool(x15), torch.std(net.head(x15), dim=(2, 3), correction=0)], 1)

def finetune(dataset, tag):
    torch.manual_seed(0)
    net = EfficientNetLite0().eval()
    net.requires_grad_(False)
    t0 = time.time()
    rows200 = sorted(np.random.default_rng(1).permutation(len(dataset.paths))[:200])
    rng = np.random.default_rng(2)
    groups = []  # per source image: [13, 192, h, w] (source, then kind x level)
    for i in rows200:
        img = load_image(dataset.paths[i], DEFAULTS.max_side)
        versions = [img] + [distorted(img, k, l, rng) for k in KINDS for l in range(LEVELS)]
        groups.append(torch.stack([trunk(net, v) for v in versions]))
    t_trunk = time.time() - t0
    print(tag, f"trunk of {len(groups) * 13} training versions: {t_trunk:.0f} s", flush=True)
    with torch.no_grad():
        G0 = torch.cat([tail(net, g[:1].float()) for g in groups])
    mu, sd = G0.mean(0), G0.std(0) + 1e-6
    lin = torch.nn.Linear(G0.shape[1], 1, bias=False); torch.nn.init.zeros_(lin.weight)
    params = [p for m in (net.blocks[14], net.blocks[15], net.head) for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam([{"params": params, "lr": 1e-4}, {"params": lin.parameters(), "lr": 1e-3}])
    def index(k, j):  # version j of kind k: 0 = source, 1..3 = levels
        return 0 if j == 0 else 1 + k * LEVELS + (j - 1)
    pair_idx = torch.tensor([(index(k, a), index(k, b)) for k in range(len(KINDS))
                             for a in range(LEVELS + 1) for b in range(a + 1, LEVELS + 1)])
    t1 = time.time(); losses = []
    for epoch in range(3):
        order = torch.randperm(len(groups)).tolist()
        for step in range(0, len(order), 4):
            opt.zero_grad()
            loss = 0.0
            for gi in order[step:step + 4]:
                s = lin((tail(net, groups[gi].float()) - mu) / sd)[:, 0]
                loss = loss + F.softplus(s[pair_idx[:, 1]] - s[pair_idx[:, 0]]).mean() / 4
            loss.backward(); opt.step(); losses.append(float(loss))
        print(tag, "epoch", epoch, "mean loss", round(float(np.mean(losses[-50:])), 4), flush=True)
    t_train = time.time() - t1
    net.requires_grad_(False)
    with torch.no_grad():
        acc = np.mean([float((lambda s: (s[pair_idx[:, 0]] > s[pair_idx[:, 1]]).float().mean())(lin((tail(net, g.float()) - mu) / sd)[:, 0])) for g in groups])
        t2 = time.time()
        G = []
        for p in dataset.paths:
            G.append(tail(net, trunk(net, load_image(p, DEFAULTS.max_side))[None].float())[0])
        G = torch.stack(G)
        s = lin((G - mu) / sd)[:, 0].numpy()
    t_eval = time.time() - t2
    timing = {"trunk_s": t_trunk, "train_s": t_train, "eval_s": t_eval, "eval_images": len(dataset.paths),
              "train_pair_accuracy": acc, "train_minutes_per_1000_sources": (t_trunk + t_train) / 60 * 1000 / 200}
    print(tag, timing, flush=True)
    return G.numpy().astype(np.float32), s, timing

def padded(prior, extra, path):
    QualityPrior(np.r_[prior.mean, np.zeros(extra)], np.r_[prior.scale, np.ones(extra)],
                 np.r_[prior.coef, np.zeros(extra)], prior.intercept, prior.features, prior.trained_on).save(path)
    return str(path)

def run(dataset, prior_spec, prior, labels, pool, tag):
    X = ex.extract(dataset.paths, progress=False).features
    G, s, timing = finetune(dataset, tag)
    info = {"zero_shot_srcc_finetuned_score": float(spearmanr(s, dataset.mos)[0]),
            "zero_shot_srcc_prior": float(spearmanr(prior.predict(X), dataset.mos)[0]), **timing}
    print(tag, info, flush=True)
    Xs = {"base": X, "9a": np.hstack([X, G]).astype(np.float32),
          "9b": np.hstack([X, np.repeat(s[:, None], 121, axis=1)]).astype(np.float32)}
    settings = Config().params_for("ridge")
    results = {}
    for name, Fm in Xs.items():
        spec = prior_spec if name == "base" else padded(prior, Fm.shape[1] - X.shape[1], OUT / f"prior-{tag}-{name}.npz")
        grid = Grid(budgets=[25, 50, 100, 200], selectors=["ted"], predictors=["ridge"], labels=labels, seeds=10,
                    pool=pool, settings={"ridge": {**settings, "prior": spec}})
        results[name] = {(t.labels, t.budget, t.seed): t.metrics["srcc"] for t in run_grid(Fm, dataset, grid)}
        print(tag, name, "done", flush=True)
    rows = []
    for cand in ("9a", "9b"):
        for lab in labels:
            for budget in (25, 50, 100, 200):
                d = np.array([results[cand][(lab, budget, k)] - results["base"][(lab, budget, k)] for k in range(10)])
                base = np.mean([results["base"][(lab, budget, k)] for k in range(10)])
                rows.append((tag, cand, lab, budget, round(base, 3), round(d.mean(), 4), round(d.std(ddof=1) / np.sqrt(10), 4)))
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
json.dump(out, open(OUT / "results.json", "w"), indent=1, default=float)
