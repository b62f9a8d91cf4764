"""The seed on real images against an in-memory Label Studio: what is imported, skipped, reported."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ml_backend.config import Config
from ml_backend.dev.fakes import RecordingLabelStudio
from ml_backend.dev.local_stack import free_port
from ml_backend.dev.sample_dataset import make_sample_dataset
from ml_backend.errors import ConfigError, SeedError
from ml_backend.labelstudio.seeding import SeedOptions, seed_project, selector_params
from tests.helpers import run_command


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "root" / "photos"
    make_sample_dataset(images, scenes=1)
    return images


def options(folder: Path, tmp_path: Path, **kwargs) -> SeedOptions:
    return SeedOptions(folder=folder, document_root=folder.parent, features=Config(cache_dir=tmp_path / "cache"),
                       selector_params=selector_params("ted", 4), progress=False, **kwargs)


def test_a_link_out_of_the_folder_is_skipped_and_duplicates_are_reported(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.png"
    shutil.copy(folder / "img1.png", outside)
    (folder / "escape.png").symlink_to(outside)
    shutil.copy(folder / "img2.jpg", folder / "copy-of-img2.jpg")
    client = RecordingLabelStudio()
    report = seed_project(client, options(folder, tmp_path))
    assert report.skipped["escape.png"] == "links outside the image folder (Label Studio would not serve it)"
    assert report.n_imported == 14  # 13 sample images + the copy; the link is not imported
    assert [sorted(group) for group in report.duplicates] == [["copy-of-img2.jpg", "img2.jpg"]]
    imported = [task["image_name"] for task in client.projects[report.project_id]["tasks"]]
    assert "escape.png" not in imported and len(imported) == 14


def test_nothing_is_written_to_label_studio_when_a_check_fails(folder: Path, tmp_path: Path) -> None:
    client = RecordingLabelStudio()
    with pytest.raises(ConfigError, match="n_select must be a positive integer, got 0"):
        seed_project(client, SeedOptions(folder=folder, document_root=folder.parent, selector_params={"n_select": 0},
                                         features=Config(cache_dir=tmp_path / "cache"), progress=False))
    with pytest.raises(SeedError, match="must be strictly inside"):
        seed_project(client, SeedOptions(folder=folder, document_root=folder))
    assert client.writes == []


def test_cli_refuses_zero_representatives_and_a_missing_output_folder(folder: Path, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    seeded = run_command("seed", str(folder), "--document-root", str(folder.parent), "-n", "0", "--url", down,
                         "--api-key", "x")
    assert seeded.returncode == 1 and seeded.stderr.strip() == "error: -n/--n-representatives must be at least 1, got 0"
    exported = run_command("export", "--project-id", "1", "--out", str(tmp_path / "missing" / "MOS.csv"),
                           "--url", down, "--api-key", "x")
    assert exported.returncode == 1
    assert exported.stderr.strip() == f"error: output folder {tmp_path / 'missing'} does not exist"
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("mode", ["blind", "suggest"])
def test_the_mode_sets_what_raters_see_and_the_stream_starts_with_the_representatives(
        folder: Path, tmp_path: Path, mode: str) -> None:
    from ml_backend.labelstudio import rate_next
    from ml_backend.labelstudio.label_config import parse_label_config

    client = RecordingLabelStudio()
    report = seed_project(client, options(folder, tmp_path, mode=mode))
    project = client.projects[report.project_id]
    assert parse_label_config(project["label_config"]).suggestion is (mode == "suggest")
    assert project["show_predictions"] is (mode == "suggest")
    assert "configure_labelling" in client.writes
    assert project["views"] == {rate_next.TAB_TITLE: ["tasks:predictions_score"]}
    # Placeholders of the representatives (task ids 1..4, imported first), scores rising in pick order.
    placeholders = project["predictions"]
    assert [p["task"] for p in placeholders] == [1, 2, 3, 4]
    scores = [p["score"] for p in placeholders]
    assert scores == sorted(scores) and scores[-1] < rate_next.FLOOR
    assert project["model_version"] == rate_next.SEED_VERSION
    with pytest.raises(SeedError, match="mode must be one of blind, suggest"):
        seed_project(client, options(folder, tmp_path, mode="loud"))


def test_a_folder_beyond_the_in_memory_limit_is_seeded_from_a_float16_memory_map(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``IN_MEMORY`` images the features stay on disk (float16, as the cache stores them):
    the same representatives, in the same order, as from memory."""
    import numpy as np

    from ml_backend.labelstudio import seeding

    in_memory = seed_project(RecordingLabelStudio(), options(folder, tmp_path))
    fitted = []
    original = seeding.SELECTORS.create

    def recording(name, params):
        selector = original(name, params)
        fit = selector.fit
        selector.fit = lambda X, y=None: fitted.append(X) or fit(X)
        return selector

    monkeypatch.setattr(seeding, "IN_MEMORY", 5)
    monkeypatch.setattr(seeding.SELECTORS, "create", recording)
    on_disk = seed_project(RecordingLabelStudio(), options(folder, tmp_path))
    assert isinstance(fitted[0], np.memmap) and fitted[0].dtype == np.float16 and fitted[0].shape[0] == 13
    assert on_disk.representatives == in_memory.representatives and on_disk.n_imported == 13


def test_near_duplicates_by_perceptual_hash_are_reported(folder: Path, tmp_path: Path) -> None:
    """A recompressed, resized copy is a near-duplicate of its source; another picture is not."""
    import numpy as np
    from PIL import Image

    Image.open(folder / "img1.png").convert("RGB").resize((400, 400)).save(folder / "img1-small.jpg", quality=60)
    noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "other.png")
    report = seed_project(RecordingLabelStudio(), options(folder, tmp_path))
    assert report.near_duplicates is not None
    (group,) = [g for g in report.near_duplicates if "img1-small.jpg" in g]
    assert "img1.png" in group
    assert not any("other.png" in g for g in report.near_duplicates)


def test_duplicates_last_marks_all_but_the_first_of_each_group(folder: Path, tmp_path: Path) -> None:
    """The group's image earliest in the import order is rated first; the others name it and are
    no representatives, so the backend's scores put them after every other image."""
    from PIL import Image

    from ml_backend.labelstudio import rate_next

    Image.open(folder / "img1.png").convert("RGB").resize((400, 400)).save(folder / "img1-small.jpg", quality=60)
    Image.open(folder / "img1.png").convert("RGB").save(folder / "img1-copy.jpg", quality=80)
    client = RecordingLabelStudio()
    report = seed_project(client, options(folder, tmp_path, duplicates_last=True))
    (group,) = [g for g in report.near_duplicates or [] if "img1-small.jpg" in g]
    tasks = client.projects[report.project_id]["tasks"]
    by_name = {t["image_name"]: t for t in tasks}
    order = [t["image_name"] for t in tasks]
    head = min(group, key=order.index)
    for name in group:
        marked = by_name[name].get(rate_next.DUPLICATE_KEY)
        assert marked == (None if name == head else head)
        assert not (marked and by_name[name]["representative"])
    assert sum(rate_next.DUPLICATE_KEY in t for t in tasks) == sum(len(g) - 1 for g in report.near_duplicates or [])
    plain = seed_project(RecordingLabelStudio(), options(folder, tmp_path))
    assert plain.near_duplicates == report.near_duplicates


def test_gold_images_become_hidden_task_fields_and_a_bad_gold_file_fails_first(folder: Path, tmp_path: Path) -> None:
    from ml_backend.errors import DatasetError

    gold = folder / "gold.csv"  # the sample dataset writes one: each reference and its strongest blur
    client = RecordingLabelStudio()
    report = seed_project(client, options(folder, tmp_path, gold=gold))
    tasks = {t["image_name"]: t for t in client.projects[report.project_id]["tasks"]}
    expected = {row.split(",")[0]: tuple(map(float, row.split(",")[1:])) for row in gold.read_text().split()[1:]}
    assert report.n_gold == len(expected) == 2
    assert {name: (t["gold_min"], t["gold_max"]) for name, t in tasks.items() if "gold_min" in t} == expected
    config = client.projects[report.project_id]["label_config"]
    assert "gold" not in config  # no labelling view refers to the fields

    (tmp_path / "bad.csv").write_text("image,min,max\nimg1.png,80,20\n")
    with pytest.raises(DatasetError, match=r"bad.csv line 2: min 80 is above max 20"):
        seed_project(RecordingLabelStudio(), options(folder, tmp_path, gold=tmp_path / "bad.csv"))
    (tmp_path / "stranger.csv").write_text("image,min,max\nnot-here.png,0,20\n")
    fresh = RecordingLabelStudio()
    with pytest.raises(SeedError, match=r"not-here.png"):
        seed_project(fresh, options(folder, tmp_path, gold=tmp_path / "stranger.csv"))
    assert fresh.writes == []  # nothing written to Label Studio
