"""Issue 15 round 11: a steadier deep prior (round 10's fine-tuning with a lower learning rate,
augmentation and weight averaging) beside the linear prior (protocol in docs/experiments.md, fixed
before this run)."""
import copy, json, time
from pathlib import Path
import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator
from ml_backend.config import Config, DEFAULTS
from ml_backend.evaluation.replay import load_dataset, run_trial, subsample_rows
from ml_backend.features.backbones import EfficientNetLite0, mean_std_pool
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.features.images import load_image
from ml_backend.features.standardise import Standardiser
from ml_backend.prediction import ridge as ridge_module
from ml_backend.prediction.prior import QualityPrior, fit_prior, resolve_prior
from ml_backend.selection import SELECTORS
from ml_backend.selection.ted import TEDSelector

OUT = Path(".mos/exp/r11"); OUT.mkdir(parents=True, exist_ok=True)
SEEDS = range(190, 220)
BUDGETS = (25, 50, 100, 200)
FROZEN, EPOCHS, BATCH, AVERAGE_FROM = 14, 6, 16, 2
torch.set_num_threads(2)
ex = FeatureExtractor(cache_dir=Path(".mos/cache"))
_picks: dict = {}
state: dict = {"s": None, "d0": None}
info: dict = {}


@SELECTORS.register("ted_memo")
class TedMemo(BaseEstimator):
    """The default's `ted` on the default features only, its picks memoised."""
    def __init__(self, n_select: int = 25, random_state: int | None = 0) -> None:
        self.n_select, self.random_state = n_select, random_state
    def check_params(self):
        return self
    def fit(self, X, y=None):
        X = X[:, : state["d0"]]
        key = (X.shape, self.n_select, self.random_state, float(X[:, :50].sum()), float(X[::7, -200:].sum()))
        if key not in _picks:
            _picks[key] = TEDSelector(n_select=self.n_select, random_state=self.random_state).fit(X).selected_
        self.selected_ = _picks[key]
        return self


class Weighted(Standardiser):
    """The ridge's standardisation, its first columns multiplied by ``state["s"]`` (when set)."""
    def _set(self, mean, centred_rows, X):
        super()._set(mean, centred_rows, X)
        s = state["s"]
        if s is not None:
            self.scale_[: len(s)] /= np.maximum(s, 1e-12)


ridge_module.Standardiser = Weighted


def trunks(paths, tag):
    """Output of the frozen stem and blocks 0-13 per image, float16 [192, h, w] (cached on disk)."""
    cache = OUT / f"trunk-{tag}.pt"
    if cache.exists():
        return torch.load(cache)
    net = EfficientNetLite0().eval(); net.requires_grad_(False)
    t0, out = time.perf_counter(), []
    with torch.no_grad():
        for i, p in enumerate(paths):
            x = net.stem(net.preprocess(load_image(p, DEFAULTS.max_side))[None])
            for b in range(FROZEN):
                x = net.blocks[b](x)
            out.append(x[0].half())
            if i % 500 == 0:
                print(tag, "trunk", i, flush=True)
    info[f"trunk_s_{tag}"] = time.perf_counter() - t0
    torch.save(out, cache)
    return out


def tail(net, x):
    """The trainable part's pooled outputs: blocks 14 and 15 mean and std, the head's std (2,304 values)."""
    x14 = net.blocks[14](x); x15 = net.blocks[15](x14)
    return torch.cat([mean_std_pool(x14), mean_std_pool(x15), torch.std(net.head(x15), dim=(2, 3), correction=0)], 1)


def batches(T, rows, shuffle):
    """Chunks of at most BATCH rows whose trunk outputs share a shape."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(T[r].shape), []).append(r)
    chunks = []
    for g in groups.values():
        g = [g[i] for i in torch.randperm(len(g)).tolist()] if shuffle else g
        chunks += [g[i:i + BATCH] for i in range(0, len(g), BATCH)]
    return [chunks[i] for i in torch.randperm(len(chunks)).tolist()] if shuffle else chunks


def scores(net, lin, mu, sd, T, rows):
    out = np.zeros(len(rows))
    where = {r: i for i, r in enumerate(rows)}
    with torch.no_grad():
        for chunk in batches(T, rows, False):
            s = lin((tail(net, torch.stack([T[r] for r in chunk]).float()) - mu) / sd)[:, 0]
            out[[where[r] for r in chunk]] = s.numpy()
    return out


def augment(x):
    """A random crop (75-100 % of each side, one for the batch) and a horizontal flip half the time."""
    h, w = x.shape[2:]
    ch = max(1, round(h * (0.75 + 0.25 * float(torch.rand(())))))
    cw = max(1, round(w * (0.75 + 0.25 * float(torch.rand(())))))
    top = int(torch.randint(0, h - ch + 1, ())); left = int(torch.randint(0, w - cw + 1, ()))
    x = x[:, :, top:top + ch, left:left + cw]
    return torch.flip(x, dims=[3]) if float(torch.rand(())) < 0.5 else x


def finetune(T, y, tag):
    """The deep prior trained on trunk outputs ``T`` and MOS ``y``; returns a scoring function."""
    torch.manual_seed(0)
    net = EfficientNetLite0().eval(); net.requires_grad_(False)
    perm = np.random.default_rng(3).permutation(len(T))
    hold, fit = sorted(perm[: len(T) // 10]), sorted(perm[len(T) // 10:])
    with torch.no_grad():
        G0 = torch.cat([tail(net, torch.stack([T[r] for r in c]).float()) for c in batches(T, fit, False)])
    mu, sd = G0.mean(0), G0.std(0) + 1e-6
    y = np.asarray(y, dtype=np.float64)
    yz = torch.tensor((y - y[fit].mean()) / y[fit].std(), dtype=torch.float32)
    lin = torch.nn.Linear(G0.shape[1], 1, bias=True); torch.nn.init.zeros_(lin.weight); torch.nn.init.zeros_(lin.bias)
    trained = [net.blocks[14], net.blocks[15], net.head]
    params = [p for m in trained for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam([{"params": params, "lr": 3e-5}, {"params": lin.parameters(), "lr": 1e-3}])
    avg_net, avg_lin, n_avg = copy.deepcopy(net), copy.deepcopy(lin), 0
    avg_net.requires_grad_(False); avg_lin.requires_grad_(False)
    pairs = [(a, p) for m, am in zip(trained + [lin], [avg_net.blocks[14], avg_net.blocks[15], avg_net.head, avg_lin])
             for a, p in zip(am.parameters(), m.parameters())]
    t0, held, held_avg = time.perf_counter(), [], []
    for epoch in range(EPOCHS):
        losses = []
        for chunk in batches(T, fit, True):
            opt.zero_grad()
            s = lin((tail(net, augment(torch.stack([T[r] for r in chunk]).float())) - mu) / sd)[:, 0]
            loss = torch.mean((s - yz[chunk]) ** 2)
            loss.backward(); opt.step(); losses.append(float(loss))
        srcc = float(spearmanr(scores(net, lin, mu, sd, T, hold), y[hold])[0])
        held.append(srcc)
        if epoch + 1 >= AVERAGE_FROM:
            n_avg += 1
            with torch.no_grad():
                for a_, p_ in pairs:
                    a_.add_((p_.detach() - a_) / n_avg)
            held_avg.append(float(spearmanr(scores(avg_net, avg_lin, mu, sd, T, hold), y[hold])[0]))
        print(tag, "epoch", epoch + 1, "loss", round(float(np.mean(losses)), 4), "held-out SRCC", round(srcc, 4),
              "averaged", held_avg[-1:] , flush=True)
    net, lin = avg_net, avg_lin
    info[f"train_{tag}"] = {"held_out_srcc_by_epoch": held, "held_out_srcc_averaged": held_avg, "epochs_averaged": n_avg,
                            "train_s": time.perf_counter() - t0, "train_images": len(fit),
                            "weights_bytes": 4 * (sum(p.numel() for p in params) + lin.weight.numel() + 1)}
    print(tag, info[f"train_{tag}"], flush=True)
    return lambda Te: scores(net, lin, mu, sd, Te, list(range(len(Te))))


def padded(prior, path):
    QualityPrior(np.r_[prior.mean, 0.0], np.r_[prior.scale, 1.0], np.r_[prior.coef, 0.0], prior.intercept,
                 prior.features, prior.trained_on).save(path)
    return str(path)


def run(dataset, prior_spec, t, labels, pool, tag):
    X = ex.extract(dataset.paths, progress=False).features
    d0 = state["d0"] = X.shape[1]
    prior = resolve_prior(prior_spec, d0)
    info[f"zero_shot_{tag}"] = {"finetuned": float(spearmanr(t, dataset.mos)[0]),
                                "linear_prior": float(spearmanr(prior.predict(X), dataset.mos)[0])}
    print(tag, info[f"zero_shot_{tag}"], flush=True)
    F = np.hstack([X.astype(np.float32), t[:, None].astype(np.float32)])
    ridge = {**Config().params_for("ridge"), "prior": prior_spec}
    lin_padded = {**ridge, "prior": padded(prior, OUT / f"prior-{tag}-padded.npz")}
    configs = {"base": (X, None, ridge), "control": (F, np.r_[np.ones(d0), 0.0], lin_padded),
               "11b": (F, np.r_[np.ones(d0), 11.0], lin_padded)}
    res = {}
    for seed in SEEDS:
        keep = subsample_rows(len(dataset.paths), pool / len(dataset.paths), seed)
        dk = dataset.subset(keep)
        for name, (Fm, s, settings) in configs.items():
            Fk = Fm[keep]
            state["s"] = s
            for lab in labels:
                for b in BUDGETS:
                    res[(name, lab, b, seed)] = run_trial(Fk, dk, "ted_memo", "ridge", b, seed, lab,
                                                          settings={"ridge": settings}).metrics["srcc"]
            state["s"] = None
        print(tag, "seed", seed, "done", flush=True)
    rows = []
    for name in ("control", "11b"):
        for lab in labels:
            for b in BUDGETS:
                d = np.array([res[(name, lab, b, k)] - res[("base", lab, b, k)] for k in SEEDS])
                base = np.mean([res[("base", lab, b, k)] for k in SEEDS])
                rows.append((tag, name, lab, b, round(base, 3), round(d.mean(), 4),
                             round(d.std(ddof=1) / np.sqrt(len(d)), 4), float(np.abs(d).max())))
                print(*rows[-1], flush=True)
    return rows


started = time.perf_counter()
out = {}
biq = load_dataset(Path("../shared/data/biq-dev"))
Xbiq = ex.extract(biq.paths, progress=False).features
order = np.random.default_rng(0).permutation(len(biq.paths))
a, b = sorted(order[:2000]), sorted(order[2000:])
A, B = biq.subset(a), biq.subset(b)
fit_prior(Xbiq[a], A.mos, ex.namespace, "biq-dev half A").save(OUT / "prior-biq-A.npz")
clive = load_dataset(Path("../shared/data/clive-dev"))
Tbiq, Tclive = trunks(biq.paths, "biq"), trunks(clive.paths, "clive")
t_all = finetune(Tbiq, biq.mos, "biq-all")
out["clive"] = run(clive, "auto", t_all(Tclive), ["oracle", "single"], 320, "clive")
t_a = finetune([Tbiq[i] for i in a], A.mos, "biq-A")
out["biq"] = run(B, str(OUT / "prior-biq-A.npz"), t_a([Tbiq[i] for i in b]), ["oracle"], 400, "biq")
out["info"] = info
out["wall_s"] = time.perf_counter() - started
json.dump(out, open(OUT / "results.json", "w"), indent=1, default=float)
print("done", out["wall_s"], flush=True)
