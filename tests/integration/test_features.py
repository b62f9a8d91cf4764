import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml_backend.config import Config
from ml_backend.errors import ConfigError
from ml_backend.features import extractor as features_module
from ml_backend.features.backbones import get_backbone
from ml_backend.features.cache import FeatureCache, as_stored, content_key
from ml_backend.features.extractor import FeatureExtractor
from ml_backend.features.images import ImageReadError


@pytest.fixture(scope="module")
def backbone():
    return get_backbone("efficientnet_lite0")


@pytest.fixture
def counted(backbone, monkeypatch):
    """Counts images that go through the network."""
    seen: list[int] = []
    forward = backbone.forward

    def counting_forward(x):
        seen.append(x.shape[0])
        return forward(x)

    monkeypatch.setattr(backbone, "forward", counting_forward)
    return seen


def make_folder(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = {}
    sizes = {"a.png": (64, 64), "b.jpg": (64, 64), "c.png": (96, 72), "d.jpg": (64, 64)}
    for name, (width, height) in sizes.items():
        paths[name] = root / name
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(paths[name])
    paths["corrupt.jpg"] = root / "corrupt.jpg"
    paths["corrupt.jpg"].write_bytes(paths["b.jpg"].read_bytes()[:600])
    paths["text.png"] = root / "text.png"
    paths["text.png"].write_text("hello")
    return paths


def test_extract_reports_failures_and_keeps_order(tmp_path, backbone, counted):
    paths = make_folder(tmp_path / "imgs")
    order = ["c.png", "corrupt.jpg", "a.png", "text.png", "b.jpg", "d.jpg"]
    extractor = FeatureExtractor(backbone, cache_dir=tmp_path / "cache", batch_size=2)
    result = extractor.extract([paths[n] for n in order], progress=False)

    assert result.paths == [paths[n] for n in ["c.png", "a.png", "b.jpg", "d.jpg"]]
    assert result.features.shape == (4, extractor.dim) and result.features.dtype == np.float32
    assert np.isfinite(result.features).all()
    assert set(result.failed) == {paths["corrupt.jpg"], paths["text.png"]}
    assert "truncated" in result.failed[paths["corrupt.jpg"]]
    assert sum(counted) == 4 and max(counted) == 2  # same-size images were batched
    for path, row in zip(result.paths, result.features, strict=True):
        np.testing.assert_allclose(extractor.extract_one(path), row, atol=1e-4)


def test_second_run_hits_cache_and_corrupt_entries_are_recomputed(tmp_path, backbone, counted):
    paths = make_folder(tmp_path / "imgs")
    images = [paths[n] for n in ["a.png", "b.jpg", "c.png"]]
    cache_dir = tmp_path / "cache"
    first = FeatureExtractor(backbone, cache_dir=cache_dir).extract(images, progress=False)
    assert sum(counted) == 3

    counted.clear()
    again = FeatureExtractor(backbone, cache_dir=cache_dir).extract(images, progress=False)
    assert counted == []
    np.testing.assert_array_equal(again.features, first.features)
    assert FeatureExtractor(backbone, cache_dir=cache_dir).extract_one(images[1]).shape == (backbone.dim,)
    assert counted == []

    extractor = FeatureExtractor(backbone, cache_dir=cache_dir)
    spoil(extractor.cache, content_key(images[0].read_bytes()))  # bytes gone bad on disk
    healed = extractor.extract(images, progress=False)
    assert counted == [1]
    # Recomputed alone instead of in a batch: float32 noise can flip a float16 rounding step.
    np.testing.assert_allclose(healed.features, first.features, rtol=2e-3, atol=1e-3)
    repaired = extractor.cache.get(content_key(images[0].read_bytes()))
    np.testing.assert_array_equal(repaired, healed.features[0])


def test_max_side_is_part_of_the_cache_namespace(tmp_path, backbone):
    a = FeatureExtractor(backbone, cache_dir=tmp_path, max_side=512)
    b = FeatureExtractor(backbone, cache_dir=tmp_path, max_side=1024)
    assert a.cache.dir != b.cache.dir


def test_extract_one_raises_read_error(tmp_path, backbone):
    paths = make_folder(tmp_path)
    with pytest.raises(ImageReadError, match="text.png"):
        FeatureExtractor(backbone).extract_one(paths["text.png"])


def test_empty_input(backbone):
    result = FeatureExtractor(backbone).extract([], progress=False)
    assert result.paths == [] and result.features.shape == (0, backbone.dim) and result.failed == {}


def spoil(cache: FeatureCache, key: str) -> None:
    """Overwrite the stored bytes of ``key`` with NaNs (float16 0xffff), as a bad disk would."""
    shard, offset, dtype, length = cache.store._find(bytes.fromhex(key))
    with open(cache.dir / cache.store._shards[shard], "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * (length * (2 if dtype == 0 else 4)))


def test_default_backbone_entry_costs_its_float16_bytes_plus_48(tmp_path, backbone):
    """~8 KB per image is what the README's disk figures assume (100,000 images: ~0.8 GB), in a
    few shard files instead of one file per image."""
    cache = FeatureCache(tmp_path, "ns")
    for i in range(50):
        cache.put(content_key(b"image %d" % i), np.ones(backbone.dim))
    files = cache_files(cache.dir)
    assert sum(f.stat().st_size for f in files) == 50 * (2 * backbone.dim + 48)
    assert len([f for f in files if f.suffix in (".vec", ".idx")]) == 2


def test_cache_roundtrip_and_garbage(tmp_path):
    cache = FeatureCache(tmp_path, "efficientnet_lite0-meanstd-v1/file:x")
    key = content_key(b"image bytes")
    assert cache.get(key) is None
    vec = np.arange(5, dtype=np.float64)
    cache.put(key, vec)
    got = cache.get(key)
    assert got.dtype == np.float32 and np.array_equal(got, vec)
    assert cache.dir.parent == tmp_path and "/" not in cache.dir.name
    assert np.array_equal(FeatureCache(tmp_path, "efficientnet_lite0-meanstd-v1/file:x").get(key), vec)  # reopened
    spoil(cache, key)
    assert cache.get(key) is None
    cache.put(key, vec + 1)  # recomputed: the later entry wins
    assert np.array_equal(cache.get(key), vec + 1)
    with pytest.raises(ValueError):
        cache.get("../../etc/passwd")


def test_concurrent_writers_never_expose_partial_entries(tmp_path):
    key = content_key(b"same image")
    vectors = [np.full(20_000, i, dtype=np.float32) for i in range(4)]
    caches = [FeatureCache(tmp_path, "ns"), FeatureCache(tmp_path, "ns")]
    bad: list[object] = []

    def write(i: int) -> None:
        for _ in range(30):
            caches[i % 2].put(key, vectors[i])

    def read() -> None:
        for _ in range(200):
            got = caches[0].get(key)
            if got is not None and not any(np.array_equal(got, v) for v in vectors):
                bad.append(got)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []
    assert any(np.array_equal(caches[1].get(key), v) for v in vectors)
    assert {p.suffix for p in cache_files(tmp_path)} == {".vec", ".idx"}  # two writers, a shard each
    assert len(cache_files(tmp_path)) == 4


def cache_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_cache_stores_float16_unless_values_do_not_fit(tmp_path):
    cache = FeatureCache(tmp_path, "ns")
    small, huge = content_key(b"small"), content_key(b"huge")
    vec = np.array([0.1, -3.14159, 1234.5], dtype=np.float32)
    cache.put(small, vec)
    assert cache.store.get(bytes.fromhex(small)).dtype == np.float16
    np.testing.assert_array_equal(cache.get(small), as_stored(vec))
    np.testing.assert_allclose(cache.get(small), vec, rtol=1e-3)
    assert cache.get(small).dtype == np.float32
    cache.put(huge, np.array([1e6, 1.0]))
    assert cache.store.get(bytes.fromhex(huge)).dtype == np.float32
    np.testing.assert_array_equal(cache.get(huge), [1e6, 1.0])
    assert cache.dir.name.endswith("-store-v1")  # older layouts live elsewhere


def test_a_one_file_per_image_cache_moves_into_the_store(tmp_path):
    """The layout before the store (``<namespace>-f16-v2/ab/<key>.npy``) is read once, moved in
    and removed; a corrupt old entry is dropped, not moved."""
    legacy = tmp_path / "ns-f16-v2"
    vectors = {content_key(b"%d" % i): np.full(7, i, dtype=np.float16) for i in range(30)}
    for key, vec in vectors.items():
        (legacy / key[:2]).mkdir(parents=True, exist_ok=True)
        np.save(legacy / key[:2] / f"{key}.npy", vec)
    bad = content_key(b"bad")
    (legacy / bad[:2]).mkdir(exist_ok=True)
    (legacy / bad[:2] / f"{bad}.npy").write_bytes(b"\x93NUMPY garbage")
    cache = FeatureCache(tmp_path, "ns")
    assert not legacy.exists()
    for key, vec in vectors.items():
        np.testing.assert_array_equal(cache.get(key), vec.astype(np.float32))
    assert cache.get(bad) is None and len(FeatureCache(tmp_path, "ns").store) == 30


def test_extract_one_remembers_files_and_sees_changes(tmp_path, backbone, counted, monkeypatch):
    paths = make_folder(tmp_path / "imgs")
    reads: list[Path] = []
    read = features_module.read_image_bytes
    monkeypatch.setattr(features_module, "read_image_bytes", lambda p, *limit: reads.append(p) or read(p, *limit))
    extractor = FeatureExtractor(backbone, cache_dir=tmp_path / "cache")
    first = extractor.extract_one(paths["a.png"])
    again = extractor.extract_one(paths["a.png"])
    np.testing.assert_array_equal(first, again)
    assert len(reads) == 1 and counted == [1]  # the second call neither read nor computed

    again[:] = 0  # callers get their own copy
    np.testing.assert_array_equal(extractor.extract_one(paths["a.png"]), first)

    paths["b.jpg"].replace(paths["a.png"])  # same path, different content
    changed = extractor.extract_one(paths["a.png"])
    assert len(reads) == 2 and not np.allclose(changed, first)
    fresh = FeatureExtractor(backbone, cache_dir=tmp_path / "cache").extract_one(paths["a.png"])
    np.testing.assert_array_equal(changed, fresh)  # cached == freshly computed, exactly


def test_concurrent_requests_for_a_new_image_compute_it_once(tmp_path, backbone, counted):
    paths = make_folder(tmp_path / "imgs")
    extractor = FeatureExtractor(backbone, cache_dir=tmp_path / "cache")
    results: list[np.ndarray] = []
    start = threading.Barrier(6)

    def request() -> None:
        start.wait()
        results.append(extractor.extract_one(paths["c.png"]))

    threads = [threading.Thread(target=request) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counted == [1]
    assert len(results) == 6 and all(np.array_equal(r, results[0]) for r in results)
    assert extractor._key_locks == {}


def test_store_keys_ending_in_zero_bytes_are_found(tmp_path):
    """One sha256 in 256 ends with a zero byte (numpy's fixed-width bytes would drop it)."""
    from ml_backend.features.store import FeatureStore

    keys = [bytes(31) + b"\x00", b"\x01" + bytes(31), b"\x01" + bytes(30) + b"\x02", bytes(32)[:-1] + b"\x07"]
    store = FeatureStore(tmp_path / "s")
    for i, key in enumerate(keys):
        store.put(key, np.full(3, i, dtype=np.float16))
    for reader in (store, FeatureStore(tmp_path / "s")):
        assert [int(reader.get(key)[0]) for key in keys] == [0, 1, 2, 3]
        assert reader.get(b"\x05" * 32) is None


def test_onnx_runtime_takes_over_a_shape_with_enough_images_and_keeps_its_graph(tmp_path, monkeypatch) -> None:
    """MOS_RUNTIME=onnxruntime: the first images of a shape go through PyTorch; from MIN_IMAGES on
    that shape's exported graph runs them, with PyTorch's features (to float16's own rounding);
    the graph is kept beside the cache, so the next extractor exports nothing."""
    import torch

    from ml_backend.features import onnx_graphs

    monkeypatch.setattr(onnx_graphs, "MIN_IMAGES", 6)
    rng = np.random.default_rng(5)
    paths = []
    for i in range(12):
        paths.append(tmp_path / "img" / f"{i}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(paths[-1])
    reference = FeatureExtractor(cache_dir=tmp_path / "torch", runtime="pytorch", batch_size=4).extract(paths, False)
    onnx = FeatureExtractor(cache_dir=tmp_path / "onnx", runtime="onnxruntime", batch_size=4)
    through_pytorch: list[int] = []
    forward = onnx.backbone.forward
    monkeypatch.setattr(onnx.backbone, "forward", lambda x: through_pytorch.append(len(x)) or forward(x))
    features = onnx.extract(paths, progress=False)
    assert through_pytorch == [4, 4]  # the first batch, then the export's trace; batches 2 and 3: the graph
    (graph,) = (tmp_path / "onnx" / "onnx").glob("*-3x48x64.onnx")
    np.testing.assert_allclose(features.features, reference.features, rtol=2e-3, atol=2e-3)
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: pytest.fail("exported again"))
    again = FeatureExtractor(cache_dir=tmp_path / "onnx", runtime="onnxruntime", batch_size=4)
    rows = again.graphs.run(torch.stack([again.backbone.preprocess(Image.open(p)) for p in paths[:2]]), 1)
    np.testing.assert_allclose(rows, features.features[:2], rtol=2e-3, atol=2e-3)


def test_a_failing_export_falls_back_to_pytorch_once_and_says_why(tmp_path, monkeypatch, caplog) -> None:
    import torch

    from ml_backend.features import onnx_graphs

    monkeypatch.setattr(onnx_graphs, "MIN_IMAGES", 1)
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no tracer today")))
    paths = make_folder(tmp_path / "img")
    extractor = FeatureExtractor(cache_dir=tmp_path / "cache", runtime="onnxruntime")
    features = extractor.extract([paths["a.png"], paths["b.jpg"], paths["d.jpg"]], progress=False)
    reference = FeatureExtractor(runtime="pytorch").extract([paths["a.png"], paths["b.jpg"], paths["d.jpg"]], False)
    np.testing.assert_array_equal(features.features, reference.features)
    assert caplog.text.count("no tracer today") == 1


def test_mos_device_is_checked_as_it_is_read() -> None:
    assert Config.from_env({"MOS_DEVICE": "cuda:1"}).device == "cuda:1"
    with pytest.raises(ConfigError, match="MOS_DEVICE must be cpu, cuda or cuda:N, got 'gpu'"):
        Config.from_env({"MOS_DEVICE": "gpu"})


def test_a_gpu_that_is_not_there_is_a_one_line_error(backbone, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"MOS_DEVICE=cuda: no CUDA device here"):
        FeatureExtractor(backbone, device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="MOS_DEVICE=cuda:3: this machine has 1 CUDA devices"):
        FeatureExtractor(backbone, device="cuda:3")
    assert next(backbone.parameters()).device.type == "cpu"  # nothing was moved
