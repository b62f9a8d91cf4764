"""docker-compose.yml, requirements and settings documentation stay consistent."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest
import yaml

from ml_backend.config import SETTINGS, Config, settings_table
from tests.helpers import REPO


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_services_share_the_image_mount_and_ls_settings() -> None:
    services = compose()["services"]
    assert set(services) == {"db", "label-studio", "ml-backend"}
    ls_env, backend_env = services["label-studio"]["environment"], services["ml-backend"]["environment"]
    assert ls_env["USE_DEFAULT_BANNED_SUBNETS"] == "false"
    assert ls_env["LOCAL_FILES_SERVING_ENABLED"] == "true"
    assert ls_env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert ls_env["DJANGO_DB"] == "default" and ls_env["POSTGRE_HOST"] == "db"
    assert ls_env["LOCAL_FILES_DOCUMENT_ROOT"] == backend_env["LOCAL_FILES_DOCUMENT_ROOT"]
    mounts = [[v for v in services[s]["volumes"] if isinstance(v, dict)] for s in ("label-studio", "ml-backend")]
    assert mounts[0] == mounts[1] and mounts[0][0]["target"] == ls_env["LOCAL_FILES_DOCUMENT_ROOT"]
    assert services["ml-backend"]["build"]["dockerfile"] == "ml_backend/Dockerfile"
    dockerfile = (REPO / "ml_backend" / "Dockerfile").read_text()
    assert '-c requirements.txt ".[similarity]"' in dockerfile  # LPIPS and MS-SSIM in the image too
    assert set(backend_env) - {"LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"} <= set(SETTINGS)


def test_docker_compose_config_parses() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the `docker compose` client is not installed here; checked the YAML structure only")
    env = {"IMAGE_ROOT": "/tmp", "LABEL_STUDIO_API_KEY": "x" * 40, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([docker, "compose", "config", "-q"], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_lists_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    assert settings_table() in readme, "README settings table is out of date: paste `mos-annotator settings --defaults`"


def test_config_from_env_and_errors() -> None:
    config = Config.from_env({"MOS_KNN_K": "7", "MOS_KNN_WEIGHTS": "uniform", "LABEL_STUDIO_URL": "http://h:1/",
                              "MOS_BACKBONE": "resnet50", "MOS_RESNET50_WEIGHTS": "/w.pth"})
    assert config.params_for("knn") == {"n_neighbors": 7, "weights": "uniform"}
    assert config.params_for("ridge") == {"prior": "auto"} and config.params_for("similarity") == {}
    assert Config.from_env({"MOS_PRIOR": "none"}).params_for("ridge") == {"prior": "none"}
    assert Config.from_env({"MOS_LPIPS_WEIGHTS": "/a.pth"}).params_for("similarity") == {"lpips_weights": "/a.pth"}
    assert config.label_studio_url == "http://h:1"
    assert config.backbone_params() == {"weights_path": "/w.pth"}
    assert Config.from_env({}).backbone_params() == {}
    lite0_file = {"MOS_EFFICIENTNET_WEIGHTS": "/l0.pth", "MOS_EFFICIENTNET_LITE2_WEIGHTS": "/l2.pth"}
    assert Config.from_env(lite0_file).backbone_params() == {"weights_path": "/l0.pth"}  # one setting, two backbones
    assert Config.from_env({**lite0_file, "MOS_BACKBONE": "efficientnet_lite012"}).backbone_params() == {
        "lite0_weights": "/l0.pth", "lite2_weights": "/l2.pth"}
    with pytest.raises(ValueError, match="MOS_PORT='x' is not an integer"):
        Config.from_env({"MOS_PORT": "x"})
    for env, message in (({"MOS_PORT": "70000"}, r"MOS_PORT \(--port\) must be between 1 and 65535, got 70000"),
                         ({"MOS_MAX_SIDE": "0"}, r"MOS_MAX_SIDE \(--max-side\) must be at least 32, got 0"),
                         ({"MOS_REPRESENTATIVES": "0"}, "MOS_REPRESENTATIVES must be at least 1, got 0"),
                         ({"MOS_KNN_K": "-1"}, "MOS_KNN_K must be at least 1, got -1"),
                         ({"MOS_TORCH_THREADS": "-1"}, "MOS_TORCH_THREADS must be at least 0, got -1")):
        with pytest.raises(ValueError, match=message):
            Config.from_env(env)
    with pytest.raises(ValueError, match="must be between 1 and 65535, got 0"):  # an option overriding it too
        dataclasses.replace(Config(), port=0)
