"""Seed a Label Studio project from an image folder, representatives first.

Re-running on the same project imports only images it does not have yet (matched by image URL), so
adding photos to the folder and seeding again never duplicates tasks.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DEFAULTS, Config
from ..errors import SeedError
from ..features import phash
from ..features.extractor import FeatureExtractor
from ..features.images import list_images, natural_key
from ..ratings.gold import read_gold
from ..selection import SELECTORS
from ..selection.auto import AutoSelector, Clustering
from . import rate_next
from .aggregation import GOLD_KEYS
from .client import LabelStudioClient
from .label_config import blind, bundled_config, parse_label_config, read_label_config
from .task_images import local_files_url

MODES = ("blind", "suggest")
#: Folders up to this size get the structure analysis in the seed summary.
MAX_STRUCTURE = 20_000
#: Beyond this many images the features are a float16 memory map beside the feature cache, not
#: float32 in memory (16 KB per image: 16 GB for a million; the map costs page cache only).
IN_MEMORY = 100_000


def selector_params(selector: str, n_select: int | None = None, seed: int = 0, eps: float | None = None,
                    min_samples: int | None = None, include_outliers: bool = False) -> dict[str, Any]:
    """The seed's options as the selector's parameters: DBSCAN takes its own (None: its default;
    no ``n_select``: one per cluster), the others a count (default ``MOS_REPRESENTATIVES``) and a
    random seed."""
    if selector == "dbscan":
        params = {"eps": eps, "min_samples": min_samples, "n_select": n_select, "include_outliers": include_outliers}
        return {key: value for key, value in params.items() if value is not None}
    return {"n_select": DEFAULTS.n_representatives if n_select is None else n_select, "random_state": seed}


@dataclass
class SeedOptions:
    folder: Path
    document_root: Path
    label_config: Path = field(default_factory=lambda: bundled_config("number_0_100.xml"))
    title: str | None = None
    project_id: int | None = None
    selector: str = DEFAULTS.selector
    selector_params: dict[str, Any] = field(default_factory=dict)
    #: Feature settings (backbone and its weights, cache folder, max side, torch threads).
    features: Config = DEFAULTS
    backend_url: str | None = None
    backend_auth: tuple[str, str] | None = None
    raters: int | None = None  # None: 1 for a new project, unchanged for an existing one
    progress: bool = True
    #: blind: the rater sees no model output; suggest: a line "model ridge-v3: 56 · confidence
    #: 0.42" under an empty score control (README, "What raters see").
    mode: str = "blind"
    #: Rate one image of each near-duplicate group first: the others are marked
    #: (``rate_next.DUPLICATE_KEY``) and come after every other image in the stream.
    duplicates_last: bool = False
    #: ``image,min,max`` CSV of gold images (``ratings.gold``): their ranges become task fields
    #: (``aggregation.GOLD_KEYS``) that no labelling view shows and the "Rate next" tab hides.
    gold: Path | None = None


@dataclass
class SeedReport:
    project_id: int
    project_url: str
    created: bool
    n_images: int
    n_imported: int
    n_already_present: int
    representatives: list[str]
    n_clusters: int
    skipped: dict[str, str]
    backend: str
    #: Groups of byte-identical images (each imported, each needs its own rating).
    duplicates: list[list[str]] = field(default_factory=list)
    #: Groups of near-duplicates by perceptual hash (the same scene, or versions of one image);
    #: None when the folder is too large to hash (``phash.MAX_IMAGES``).
    near_duplicates: list[list[str]] | None = None
    #: The folder's clusters by the best of several clusterings (``AutoSelector``); None when
    #: too large to analyse or without structure.
    structure: Clustering | None = None
    #: Gold images imported now (gold images already in the project keep their fields).
    n_gold: int = 0


def _check_folder(options: SeedOptions) -> tuple[Path, Path]:
    folder, root = options.folder.resolve(), options.document_root.resolve()
    if not folder.is_dir():
        raise SeedError(f"image folder {options.folder} does not exist or is not a folder")
    if folder == root or root not in folder.parents:
        raise SeedError(
            f"image folder {folder} must be strictly inside LOCAL_FILES_DOCUMENT_ROOT {root} "
            "(Label Studio serves local files only below that root)"
        )
    return folder, root


def seed_project(client: LabelStudioClient, options: SeedOptions) -> SeedReport:
    folder, root = _check_folder(options)
    if options.mode not in MODES:
        raise SeedError(f"mode must be one of {', '.join(MODES)}, got {options.mode!r}")
    label_config = read_label_config(options.label_config)
    tag = parse_label_config(label_config)  # a broken config fails here, with its reason
    if options.mode == "blind":
        label_config = blind(label_config)
        tag = parse_label_config(label_config)
    # Bad settings, weights, a wrong token or a stopped server fail here, before minutes of features.
    gold = read_gold(options.gold) if options.gold else {}
    selector = SELECTORS.create(options.selector, options.selector_params)
    extractor = FeatureExtractor.from_config(options.features)
    client.check()

    found, skipped_paths = list_images(folder)
    if not found:
        raise SeedError(f"no images found in {folder} (extensions: jpg, jpeg, png, bmp, tif, tiff, webp)")
    paths = []
    for path in found:
        if folder in path.resolve().parents:
            paths.append(path)
        else:  # a link to elsewhere: Label Studio serves only files under the folder's storage
            skipped_paths[path] = "links outside the image folder (Label Studio would not serve it)"
    _check_gold(gold, [path.relative_to(folder).as_posix() for path in paths], options.gold, folder)
    if len(paths) > IN_MEMORY:
        features = extractor.extract_to_file(paths, options.features.cache_dir, progress=options.progress)
    else:
        features = extractor.extract(paths, progress=options.progress)
    skipped = {str(p.relative_to(folder)): why for p, why in {**skipped_paths, **features.failed}.items()}
    if not features.paths:
        raise SeedError(f"none of the {len(found)} images in {folder} could be read")

    selector.fit(features.features)
    structure = _structure(selector, features.features, options.selector_params.get("n_select"))
    order = [int(i) for i in selector.selected_]
    representative = set(order)
    order += [i for i in range(len(features.paths)) if i not in representative]
    clusters = [int(c) for c in selector.labels_]
    urls = [local_files_url(path, root) for path in features.paths]  # every check before Label Studio is written
    near = _near_duplicate_groups(features.paths)
    names = [path.relative_to(folder).as_posix() for path in features.paths]
    _check_gold(gold, names, options.gold, folder)  # again: a gold image may be unreadable
    duplicate_of = _rate_last(near, order) if options.duplicates_last and near else {}

    project_id, created = _project(client, options, label_config, folder)
    client.ensure_local_storage(project_id, folder)
    client.configure_labelling(project_id, show_predictions=options.mode == "suggest")  # see rate_next
    client.ensure_view(project_id, rate_next.TAB_TITLE, rate_next.TAB_ORDERING,
                       hidden=[f"tasks:data.{key}" for key in GOLD_KEYS])
    present = {str(data.get(tag.data_key)) for data in client.task_data(project_id)}
    tasks = []
    for index in order:
        if urls[index] in present:
            continue
        task = {
            tag.data_key: urls[index],
            "image_name": names[index],
            "representative": int(index in representative and index not in duplicate_of),
            "cluster": clusters[index],
        }
        if index in duplicate_of:
            task[rate_next.DUPLICATE_KEY] = names[duplicate_of[index]]
        if names[index] in gold:
            task.update(zip(GOLD_KEYS, gold[names[index]], strict=True))
        tasks.append(task)
    ids = client.import_tasks(project_id, tasks) if tasks else []  # one request: task ids follow this order
    # Connecting the backend resets the project's model version: the placeholders come after.
    backend = _connect_backend(client, project_id, options.backend_url, options.backend_auth)
    if created and ids:  # the backend's first model replaces these
        first = [task_id for task_id, task in zip(ids, tasks, strict=True) if task["representative"]]
        client.import_predictions(project_id, rate_next.placeholders(first))
        client.set_model_version(project_id, rate_next.SEED_VERSION)
    return SeedReport(
        project_id=project_id,
        project_url=client.project_url(project_id),
        created=created,
        n_images=len(features.paths),
        n_imported=len(tasks),
        n_already_present=len(features.paths) - len(tasks),
        representatives=[features.paths[i].relative_to(folder).as_posix() for i in selector.selected_],
        n_clusters=len(Counter(c for c in clusters if c >= 0)),
        skipped=skipped,
        backend=backend,
        duplicates=_duplicates(features.paths, features.keys, folder),
        near_duplicates=None if near is None else [[names[i] for i in group] for group in near],
        structure=structure,
        n_gold=sum(GOLD_KEYS[0] in task for task in tasks),
    )


def _structure(selector: Any, X: Any, n_select: int | None) -> Clustering | None:
    """What ``--selector auto`` found, or the same analysis for the summary (folders up to
    ``MAX_STRUCTURE`` images: HDBSCAN and the silhouettes grow faster than the folder)."""
    if isinstance(selector, AutoSelector):
        return selector.structure_
    if len(X) > MAX_STRUCTURE:
        return None
    return AutoSelector(n_select=n_select or DEFAULTS.n_representatives).fit(X).structure_


def _check_gold(gold: dict[str, tuple[float, float]], names: list[str], path: Path | None, folder: Path) -> None:
    unknown = sorted(set(gold) - set(names), key=natural_key)
    if unknown:
        raise SeedError(f"{path}: {len(unknown)} gold image(s) are not readable images of {folder}: "
                        f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")


def _near_duplicate_groups(paths: list[Path]) -> list[list[int]] | None:
    if len(paths) > phash.MAX_IMAGES:
        return None
    return phash.near_duplicate_groups([phash.dhash(path) for path in paths])


def _rate_last(groups: list[list[int]], order: list[int]) -> dict[int, int]:
    """image -> the image of its group rated before it: the one earliest in the import order
    (a representative when the group has one), so each group gets one rating first."""
    place = {index: rank for rank, index in enumerate(order)}
    marked = {}
    for group in groups:
        head = min(group, key=place.__getitem__)
        marked.update({index: head for index in group if index != head})
    return marked


def _duplicates(paths: list[Path], keys: list[str], folder: Path) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for path, key in zip(paths, keys, strict=True):
        groups.setdefault(key, []).append(path.relative_to(folder).as_posix())
    return [names for names in groups.values() if len(names) > 1]


def _project(client: LabelStudioClient, options: SeedOptions, label_config: str, folder: Path) -> tuple[int, bool]:
    if options.project_id is not None:
        client.get_project(options.project_id)  # fails clearly if it does not exist
        if options.raters is not None:
            client.set_raters(options.project_id, options.raters)
        return options.project_id, False
    title = options.title or f"MOS {folder.name}"
    existing = client.find_project(title)
    if existing is None:
        return client.create_project(title, label_config, options.raters or 1), True
    if options.raters is not None:
        client.set_raters(existing, options.raters)
    return existing, False


def _connect_backend(
    client: LabelStudioClient, project_id: int, url: str | None, auth: tuple[str, str] | None
) -> str:
    if not url:
        return "not connected (no --backend-url)"
    url = url.rstrip("/")
    if any(b.get("url", "").rstrip("/") == url for b in client.ml_backends(project_id)):
        return f"{url} (already connected)"
    client.add_ml_backend(project_id, url, auth)
    return f"{url} (connected)"
