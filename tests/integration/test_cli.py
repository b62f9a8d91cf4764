"""The `mos-annotator` command as a user meets it: help, bad settings, bad files, the installed package."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ml_backend.dev.local_stack import free_port
from tests.helpers import REPO, run_command

SUBCOMMANDS = ["serve", "seed", "features", "export", "report", "predict", "evaluate", "train-prior", "sample",
               "settings", "quickstart", "benchmark"]


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_help_lists_every_subcommand_and_each_has_its_own() -> None:
    top = run_command("--help")
    assert top.returncode == 0
    for name in SUBCOMMANDS:
        assert f"    {name}" in top.stdout, top.stdout
        own = run_command(name, "--help")
        assert own.returncode == 0 and f"usage: mos-annotator {name}" in own.stdout, own.stderr
    seed_help = run_command("seed", "--help").stdout
    for option in ("--selector", "--label-config", "--backbone", "--raters", "--backend-url", "MOS_SELECTOR"):
        assert option in seed_help
    assert "python -m ml_backend" not in run_command("settings", "--help").stdout


def test_python_dash_m_is_serve() -> None:
    result = subprocess.run([sys.executable, "-m", "ml_backend", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: mos-annotator serve" in result.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_a_bad_setting_is_one_line_and_exit_1_everywhere(command: str) -> None:
    result = run_command(command, env={"MOS_PORT": "nine"})
    assert one_line_error(result) == "error: MOS_PORT='nine' is not an integer"


def test_a_bad_weights_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "lite0.pth"
    bad.write_text("not a checkpoint")
    env = {"MOS_EFFICIENTNET_WEIGHTS": str(bad)}
    served = run_command("serve", "--port", str(free_port()), env=env, timeout=120)
    assert str(bad) in one_line_error(served)
    dataset = tmp_path / "data"
    dataset.mkdir()
    (dataset / "labels.csv").write_text("image,mos\na.png,50\n")
    assert str(bad) in one_line_error(run_command("evaluate", str(dataset), "--out", str(tmp_path / "out"), env=env))
    images = tmp_path / "root" / "images"
    images.mkdir(parents=True)
    seeded = run_command("seed", str(images), "--document-root", str(tmp_path / "root"),
                         "--url", f"http://127.0.0.1:{free_port()}", "--api-key", "x", env=env)
    assert str(bad) in one_line_error(seeded)  # before Label Studio is even asked


def test_a_bad_predictor_setting_stops_serve(tmp_path: Path) -> None:
    result = run_command("serve", "--port", str(free_port()), env={"MOS_PREDICTOR": "svm"}, timeout=120)
    assert "unknown predictor 'svm'" in one_line_error(result)


def test_missing_folders_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    seeded = run_command("seed", str(missing), "--document-root", str(tmp_path), "--url", "http://127.0.0.1:9",
                         "--api-key", "x")
    assert str(missing) in one_line_error(seeded)
    assert "labels.csv not found" in one_line_error(run_command("evaluate", str(missing)))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert str(blocker) in one_line_error(run_command("sample", str(blocker / "sample")))
    root = ["--document-root", str(tmp_path), "--url", "http://127.0.0.1:9", "--api-key", "x"]
    seeded = run_command("seed", str(tmp_path), *root, "--raters", "0")  # 0 raters once meant 1
    assert "--raters must be at least 1, got 0" in one_line_error(seeded)
    refused = run_command("quickstart", "--home", str(tmp_path / "qs"), "--backend-port", "70000")
    assert "--backend-port must be between 1 and 65535, got 70000" in one_line_error(refused)
    (tmp_path / "ratings.csv").write_text("image,score\na.png,3\n")
    refused = run_command("predict", str(tmp_path), "--ratings", str(tmp_path / "ratings.csv"), "--scale", "3", "3",
                          "--out", str(tmp_path / "MOS.csv"))
    assert "--scale MIN MAX: MIN must be below MAX, got 3 3" in one_line_error(refused)
    assert not (tmp_path / "qs").exists() and not (tmp_path / "MOS.csv").exists()
    for scenes in ("0", "-1", "7"):  # 0 once meant every scene, -1 all but the last
        result = run_command("sample", str(tmp_path / "sample"), "--scenes", scenes)
        assert f"--scenes must be between 1 and 6, got {scenes}" in one_line_error(result)
    assert not (tmp_path / "sample").exists()


def test_prediction_and_selection_import_without_torch() -> None:
    """The numpy-only predictors and every selector work where torch cannot be imported."""
    code = (
        "import sys\n"
        "class NoTorch:\n"  # `import torch` (and torchvision) now raise ImportError
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
        "            raise ImportError(f'{name} is not installed here')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import numpy as np\n"
        "import ml_backend.prediction.ridge, ml_backend.cli\n"
        "from ml_backend.prediction import PREDICTORS\n"
        "from ml_backend.selection import SELECTORS\n"
        "X = np.random.default_rng(0).normal(size=(40, 8)); y = X[:, 0] * 10 + 50\n"
        "print(PREDICTORS.create('ridge').fit(X, y).predict(X[:2]).shape)\n"
        "print(len(SELECTORS.create('ted', {'n_select': 5}).fit(X).selected_))\n"
        "print(PREDICTORS.names())\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["(2,)", "5", "['knn', 'ridge', 'similarity']", "False"]


def test_the_built_package_works_outside_the_checkout(tmp_path: Path) -> None:
    """A wheel holds the label configs and the command; installed elsewhere, it runs from another folder."""
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("mos_annotator-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    configs = {f"ml_backend/labelstudio/configs/{name}" for name in ("number_0_100.xml", "rating_1_5.xml")}
    priors = {f"ml_backend/prediction/priors/{name}.npz" for name in ("biq2021", "biq2021-lite012")}
    assert configs | priors <= set(names)
    assert not any(name.startswith(("tests/", "scripts/")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mos-annotator = ml_backend.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(target), "PATH": f"{target / 'bin'}:/usr/bin:/bin"}
    code = ("import ml_backend, sys; from ml_backend.cli import main; "
            "assert ml_backend.__file__.startswith(sys.argv[1]), ml_backend.__file__; sys.exit(main(sys.argv[2:]))")
    for args in (["sample", "data", "--scenes", "1"], ["seed", "--help"]):
        result = subprocess.run([sys.executable, "-c", code, str(target), *args], capture_output=True, text=True,
                                cwd=elsewhere, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
    assert len(list((elsewhere / "data").glob("img*"))) == 13
    assert "number_0_100.xml" in result.stdout


def test_train_prior_writes_a_prior_the_ridge_can_use(tmp_path: Path) -> None:
    from ml_backend.dev.sample_dataset import make_sample_dataset
    from ml_backend.prediction.prior import load_prior

    make_sample_dataset(tmp_path / "data", scenes=2)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    prior = tmp_path / "ladders.prior"  # any name: nothing is appended to it
    trained = run_command("train-prior", str(tmp_path / "data"), "--labels-csv", "proxy_labels.csv", "--out",
                          str(prior), *cache)
    assert trained.returncode == 0, trained.stderr
    loaded = load_prior(str(prior))
    assert loaded.trained_on == "data/proxy_labels.csv: 26 images" and len(loaded.coef) > 4000
    evaluated = run_command("evaluate", str(tmp_path / "data"), "--labels-csv", "proxy_labels.csv", "--out",
                            str(tmp_path / "out"), "--budgets", "6", "--seeds", "2", "--selectors", "random",
                            "--predictors", "ridge:prior=none", f"ridge:prior={prior}", *cache)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"ridge:prior={prior}" in (tmp_path / "out" / "results.md").read_text()


def test_train_prior_fits_a_prior_per_kind_of_photo_named_by_a_pattern(tmp_path: Path) -> None:
    from ml_backend.dev.sample_dataset import make_sample_dataset
    from ml_backend.prediction.prior import load_prior

    make_sample_dataset(tmp_path / "data", scenes=3)  # img1 .. img39
    cache = ["--cache-dir", str(tmp_path / "cache")]
    common = ["train-prior", str(tmp_path / "data"), "--labels-csv", "proxy_labels.csv", *cache]
    prior = tmp_path / "kinds.npz"
    trained = run_command(*common, "--out", str(prior), "--kind-pattern", r"img([12])\d")
    assert trained.returncode == 0, trained.stderr
    assert "one per kind (1: 10 images, 2: 10 images)" in trained.stdout  # img1-9 and img30-39: main prior only
    assert load_prior(str(prior)).kinds == ("1", "2")
    evaluated = run_command("evaluate", str(tmp_path / "data"), "--labels-csv", "proxy_labels.csv", "--out",
                            str(tmp_path / "out"), "--budgets", "6", "--seeds", "1", "--selectors", "random",
                            "--predictors", f"ridge:prior={prior}", *cache)
    assert evaluated.returncode == 0, evaluated.stderr
    for pattern, message in ((r"img(\d", "--kind-pattern 'img(\\\\d' is not a regular expression"),
                             (r"img(1)\d", "kind priors need at least 2 kinds of photo, got 1: ['1']")):
        refused = run_command(*common, "--out", str(tmp_path / "refused.npz"), "--kind-pattern", pattern)
        last = refused.stderr.strip().splitlines()[-1]  # after the progress bar, if any
        assert refused.returncode == 1 and last.startswith("error: ") and message in last
    assert not (tmp_path / "refused.npz").exists()
