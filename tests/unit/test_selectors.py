import numpy as np
import pytest

from ml_backend.selection import SELECTORS, dbscan, embedding
from ml_backend.selection.dbscan import DBSCANSelector
from ml_backend.selection.embedding import embed
from ml_backend.selection.faiss_kmeans import FaissKMeansSelector
from ml_backend.selection.faiss_ted import FaissTEDSelector
from ml_backend.selection.kcenter import KCenterSelector
from ml_backend.selection.kmeans import KMeansSelector
from ml_backend.selection.random import RandomSelector
from ml_backend.selection.ted import TEDSelector

N_OUTLIERS = 5


def blobs(seed: int = 0, sizes: tuple[int, ...] = (80, 60, 40, 30), dim: int = 300):
    """Well separated Gaussian blobs of different sizes plus a few far, isolated points (-1)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (len(sizes), dim))
    parts = [c + rng.normal(0, 1, (n, dim)) for c, n in zip(centers, sizes, strict=True)]
    parts.append(rng.normal(0, 30, (N_OUTLIERS, dim)))
    truth = np.concatenate([np.repeat(np.arange(len(sizes)), sizes), np.full(N_OUTLIERS, -1)])
    return np.vstack(parts), truth


def test_embed_is_unit_norm_and_at_most_64_dims() -> None:
    X, _ = blobs()
    Z = embed(X)
    assert Z.shape == (len(X), 64)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0)
    assert embed(X[:10]).shape == (10, 9)  # centred data of 10 rows has rank 9


@pytest.mark.parametrize(
    "selector", [KMeansSelector(), DBSCANSelector(), KCenterSelector(), RandomSelector(), TEDSelector(),
                 FaissKMeansSelector(), FaissTEDSelector()]
)
def test_empty_input_is_a_clear_error(selector) -> None:
    with pytest.raises(ValueError, match="no images to select from"):
        selector.fit(np.empty((0, 16)))


def test_kmeans_returns_n_distinct_representatives_biggest_cluster_first() -> None:
    X, truth = blobs()
    selector = KMeansSelector(n_select=4).fit(X[truth >= 0])
    assert selector.fit(X[truth >= 0]) is selector
    assert selector.n_clusters_ == 4
    # one per blob, in order of blob size (80, 60, 40, 30)
    assert list(truth[selector.selected_]) == [0, 1, 2, 3]
    assert list(np.bincount(selector.labels_)) == [80, 60, 40, 30]
    for cluster, index in enumerate(selector.selected_):
        assert selector.labels_[index] == cluster


@pytest.mark.parametrize("n_select", [1, 7, 20, 200])
def test_kmeans_always_returns_min_n_select_n_samples_distinct_rows(n_select: int) -> None:
    X = np.random.default_rng(1).normal(size=(30, 50))
    selected = KMeansSelector(n_select=n_select).fit(X).selected_
    assert len(selected) == min(n_select, 30)
    assert len(set(selected.tolist())) == len(selected)


def test_kmeans_with_duplicate_rows_still_returns_distinct_rows() -> None:
    rng = np.random.default_rng(2)
    X = np.vstack([np.repeat(rng.normal(size=(1, 40)), 8, axis=0), rng.normal(size=(3, 40))])
    selector = KMeansSelector(n_select=6).fit(X)  # only 4 distinct images
    assert len(set(selector.selected_.tolist())) == 6
    assert selector.n_clusters_ <= 6
    identical = KMeansSelector(n_select=3).fit(np.ones((5, 10)))
    assert sorted(identical.selected_.tolist()) == [0, 1, 2]


def test_kmeans_is_deterministic_for_a_random_state() -> None:
    X = np.random.default_rng(3).normal(size=(120, 80))
    first = KMeansSelector(n_select=10, random_state=7).fit(X).selected_
    again = KMeansSelector(n_select=10, random_state=7).fit(X).selected_
    np.testing.assert_array_equal(first, again)


def test_dbscan_auto_eps_finds_one_representative_per_blob_and_skips_outliers() -> None:
    X, truth = blobs()
    selector = DBSCANSelector().fit(X)
    assert selector.n_clusters_ == 4
    assert list(truth[selector.selected_]) == [0, 1, 2, 3]  # biggest cluster first
    assert selector.n_outliers_ == N_OUTLIERS
    assert set(selector.labels_[truth == -1]) == {-1}
    for blob in range(4):  # each blob is exactly one cluster
        assert len(set(selector.labels_[truth == blob].tolist())) == 1
    assert selector.eps_ > 0


def test_dbscan_include_outliers_appends_them_after_cluster_representatives() -> None:
    X, truth = blobs()
    selector = DBSCANSelector(include_outliers=True).fit(X)
    assert list(truth[selector.selected_]) == [0, 1, 2, 3] + [-1] * N_OUTLIERS
    capped = DBSCANSelector(include_outliers=True, n_select=6).fit(X)
    np.testing.assert_array_equal(capped.selected_, selector.selected_[:6])


def test_dbscan_all_noise_falls_back_to_one_central_image() -> None:
    X, truth = blobs()
    selector = DBSCANSelector(eps=1e-6).fit(X)
    assert selector.n_clusters_ == 0
    assert selector.n_outliers_ == len(X)
    assert len(selector.selected_) == 1
    with_outliers = DBSCANSelector(eps=1e-6, include_outliers=True, n_select=3).fit(X)
    assert len(with_outliers.selected_) == 3


def test_dbscan_handles_tiny_and_duplicate_inputs() -> None:
    assert DBSCANSelector().fit(np.ones((1, 8))).selected_.tolist() == [0]
    selector = DBSCANSelector().fit(np.ones((12, 8)))  # identical images: one cluster
    assert selector.n_clusters_ == 1 and len(selector.selected_) == 1


@pytest.mark.parametrize("params", [{"min_samples": 0}, {"eps": -1.0}, {"n_select": 0}])
def test_dbscan_rejects_bad_parameters(params: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(params))):
        DBSCANSelector(**params).fit(np.eye(10))


def test_random_selector_is_distinct_and_seeded() -> None:
    X = np.zeros((50, 3))
    a = RandomSelector(n_select=10, random_state=1).fit(X).selected_
    assert len(set(a.tolist())) == 10
    np.testing.assert_array_equal(a, RandomSelector(n_select=10, random_state=1).fit(X).selected_)
    assert len(RandomSelector(n_select=99).fit(X).selected_) == 50


def test_registry_creates_selectors_by_name() -> None:
    assert {"kmeans", "dbscan", "kcenter", "random", "ted"} <= set(SELECTORS.names())
    selector = SELECTORS.create("kmeans", {"n_select": 3, "random_state": 0})
    assert isinstance(selector, KMeansSelector) and selector.n_select == 3
    with pytest.raises(ValueError, match="unknown selector 'nope'.*kmeans"):
        SELECTORS.create("nope")


def test_kcenter_returns_n_distinct_rows_covering_every_blob() -> None:
    X, truth = blobs()
    selector = KCenterSelector(n_select=9).fit(X)
    selected = selector.selected_.tolist()
    assert len(selected) == 9 and len(set(selected)) == 9
    assert selector.n_clusters_ == 9
    assert set(truth[selector.selected_]) == {-1, 0, 1, 2, 3}  # every blob, and the outliers
    assert selector.labels_.shape == (len(X),)
    for centre, index in enumerate(selector.selected_):
        assert selector.labels_[index] == centre
    Z = embed(X)
    nearest = np.argmin(np.linalg.norm(Z[:, None, :] - Z[selector.selected_][None], axis=2), axis=1)
    np.testing.assert_array_equal(selector.labels_, nearest)


def test_kcenter_starts_central_and_handles_duplicates_and_small_inputs() -> None:
    X, truth = blobs()
    first = KCenterSelector(n_select=1).fit(X).selected_
    Z = embed(X)
    assert first.tolist() == [int(np.argmin(np.linalg.norm(Z - Z.mean(axis=0), axis=1)))]
    assert sorted(KCenterSelector(n_select=3).fit(np.ones((5, 10))).selected_.tolist()) == [0, 1, 2]
    assert len(KCenterSelector(n_select=50).fit(X[:7]).selected_) == 7
    assert isinstance(SELECTORS.create("kcenter", {"n_select": 2}), KCenterSelector)
    with pytest.raises(ValueError, match="n_select"):
        KCenterSelector(n_select=0).fit(X)


def test_embed_keeps_float32_and_matches_float64() -> None:
    X, _ = blobs()
    Z64 = embed(X)
    Z32 = embed(X.astype(np.float32))
    assert Z32.dtype == np.float32
    # Same subspace: components may flip sign, so compare Gram matrices.
    np.testing.assert_allclose(Z32 @ Z32.T, Z64 @ Z64.T, atol=1e-3)


def test_embed_beyond_the_pca_sample_keeps_the_geometry(monkeypatch) -> None:
    X, truth = blobs(sizes=(300, 200, 150, 100))
    full = embed(X)
    monkeypatch.setattr(embedding, "PCA_SAMPLE", 250)
    sampled = embed(X)
    assert sampled.shape == full.shape
    # Components differ slightly (and may flip sign): compare the similarity structure instead.
    assert np.corrcoef((full @ full.T).ravel(), (sampled @ sampled.T).ravel())[0, 1] > 0.99
    picks = KMeansSelector(n_select=4).fit(X).selected_
    assert sorted(truth[picks].tolist()) == [0, 1, 2, 3]


def test_standardiser_matches_standard_scaler_and_keeps_float32() -> None:
    from sklearn.preprocessing import StandardScaler

    from ml_backend.features.standardise import Standardiser

    rng = np.random.default_rng(0)
    X = (rng.normal(5, 3, (2500, 7))).astype(np.float32)
    X[:, 3] = 2.0  # a constant column is centred, not divided by zero
    Z = Standardiser(chunk=1000).fit(X).transform(X)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z, StandardScaler().fit_transform(X.astype(float)), atol=1e-5)
    np.testing.assert_allclose(Standardiser(chunk=1000).fit_transform(X), Z, atol=1e-6)
    assert Standardiser().fit(X.astype(float)).transform(X.astype(float)).dtype == np.float64


def test_dbscan_eps_from_a_sample_of_k_distances_finds_the_same_groups(monkeypatch) -> None:
    X, truth = blobs()
    exact = DBSCANSelector(include_outliers=True).fit(X)
    queried = []
    real = dbscan._kth_neighbour_distance
    monkeypatch.setattr(dbscan, "KDIST_SAMPLE", len(X) // 3)
    monkeypatch.setattr(dbscan, "_kth_neighbour_distance",
                        lambda Z, k, rows=None: queried.append(len(rows)) or real(Z, k, rows))
    sampled = DBSCANSelector(include_outliers=True).fit(X)
    assert queried == [len(X) // 3, N_OUTLIERS]  # the curve came from the sample
    assert sampled.n_clusters_ == 4 and sampled.n_outliers_ == N_OUTLIERS
    np.testing.assert_array_equal(sampled.selected_, exact.selected_)  # outliers: most isolated first


def ted_by_kernel(Z: np.ndarray, n_select: int, mu: float) -> list[int]:
    """The textbook TED greedy on the explicit N x N residual kernel (Yu et al. 2006)."""
    K = Z @ Z.T
    chosen: list[int] = []
    for _ in range(n_select):
        score = (K**2).sum(axis=0) / (np.diag(K) + mu)
        score[chosen] = -np.inf
        j = int(np.argmax(score))
        chosen.append(j)
        K = K - np.outer(K[:, j], K[j]) / (K[j, j] + mu)
    return chosen


@pytest.mark.parametrize("mu", [0.01, 0.3, 3.0])
def test_ted_matches_the_kernel_form_of_the_greedy(mu: float) -> None:
    X, _ = blobs(seed=3)
    selector = TEDSelector(n_select=25, n_components=40, mu=mu).fit(X)
    assert selector.selected_.tolist() == ted_by_kernel(embed(X, 0, 40), 25, mu)


def test_ted_picks_are_distinct_nested_deterministic_and_labelled_by_nearest_pick() -> None:
    X, truth = blobs()
    selector = TEDSelector(n_select=12).fit(X)
    selected = selector.selected_.tolist()
    assert len(set(selected)) == 12 and selector.n_clusters_ == 12
    assert set(truth[selector.selected_]) >= {0, 1, 2, 3}  # every blob is represented
    assert TEDSelector(n_select=5).fit(X).selected_.tolist() == selected[:5]
    assert TEDSelector(n_select=12).fit(X).selected_.tolist() == selected
    Z = embed(X, 0, 256)
    nearest = np.argmin(np.linalg.norm(Z[:, None, :] - Z[selector.selected_][None], axis=2), axis=1)
    np.testing.assert_array_equal(selector.labels_, nearest)
    assert all(selector.labels_[index] == pick for pick, index in enumerate(selected))


def test_ted_handles_duplicates_tiny_inputs_and_bad_parameters() -> None:
    assert sorted(TEDSelector(n_select=3).fit(np.ones((5, 10))).selected_.tolist()) == [0, 1, 2]
    dup = np.repeat(blobs()[0][:4], 3, axis=0)
    assert len(set(TEDSelector(n_select=10).fit(dup).selected_.tolist())) == 10
    assert TEDSelector(n_select=50).fit(np.eye(7)).selected_.shape == (7,)
    assert TEDSelector(n_select=1).fit(np.ones((1, 4))).selected_.tolist() == [0]
    for params, field in [({"n_select": 0}, "n_select"), ({"n_components": 0}, "n_components"),
                          ({"mu": 0.0}, "mu"), ({"mu": -1.0}, "mu")]:
        with pytest.raises(ValueError, match=field):
            TEDSelector(**params).fit(np.eye(7))


def test_auto_finds_the_blobs_and_picks_one_image_per_blob() -> None:
    from ml_backend.selection.auto import AutoSelector

    X, truth = blobs(sizes=(80, 60, 40, 30))
    selector = AutoSelector(n_select=10).fit(X)
    structure = selector.structure_
    assert structure is not None and structure.n_clusters == 4, selector.candidates_
    assert {c.method for c in selector.candidates_} >= {"kmeans", "gaussian mixture", "agglomerative", "hdbscan"}
    assert structure.silhouette == max(c.silhouette for c in selector.candidates_)
    picked = truth[selector.selected_]
    assert sorted(picked.tolist()) == [0, 1, 2, 3]  # one per blob, largest first
    assert picked[0] == 0


def test_auto_on_tiny_or_structureless_input_still_picks() -> None:
    from ml_backend.selection.auto import AutoSelector

    one = AutoSelector(n_select=5).fit(np.ones((1, 8)))
    assert one.selected_.tolist() == [0] and one.structure_ is None
    with pytest.raises(ValueError, match="no images to select from"):
        AutoSelector().fit(np.empty((0, 16)))
    with pytest.raises(ValueError, match="n_select"):
        SELECTORS.create("auto", {"n_select": 0})


def test_faiss_kmeans_picks_one_image_per_blob_biggest_first_and_distinct_rows() -> None:
    X, truth = blobs()
    selector = FaissKMeansSelector(n_select=4).fit(X[truth >= 0])
    assert list(truth[selector.selected_]) == [0, 1, 2, 3]
    assert list(np.bincount(selector.labels_)) == [80, 60, 40, 30]
    assert all(selector.labels_[index] == cluster for cluster, index in enumerate(selector.selected_))
    duplicated = np.vstack([X[:5]] * 8)  # 5 distinct images, 40 rows
    picks = FaissKMeansSelector(n_select=12).fit(duplicated).selected_
    assert len(picks) == 12 and len(set(picks.tolist())) == 12
    with pytest.raises(ValueError, match="n_iter"):
        FaissKMeansSelector(n_iter=0).fit(X)


def test_faiss_kmeans_reads_a_float16_memory_map_in_blocks_like_the_array(tmp_path, monkeypatch) -> None:
    """The path for more images than memory holds: features as a float16 file, memory-mapped,
    the PCA fitted on a sample and every row projected block by block; the same blobs come out."""
    X, truth = blobs(sizes=(300, 200, 150, 100))
    keep = truth >= 0
    np.save(tmp_path / "rows.npy", X[keep].astype(np.float16))
    monkeypatch.setattr(embedding, "PCA_SAMPLE", 250)
    mapped = np.load(tmp_path / "rows.npy", mmap_mode="r")
    picks = FaissKMeansSelector(n_select=4).fit(mapped).selected_
    assert list(truth[keep][picks]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="NaN or infinite"):
        bad = X[keep].astype(np.float16)
        bad[-1, 3] = np.inf
        FaissKMeansSelector(n_select=4).fit(bad)


def test_faiss_ted_is_ted_up_to_its_coreset_size_and_covers_the_blobs_beyond() -> None:
    """Up to ``coreset`` rows the design runs on every row: ``ted``'s picks in the same
    64-dimensional embedding. Beyond, on cluster members weighted by cluster size, it still
    picks one image per blob, and every row is labelled with its nearest pick."""
    X, truth = blobs(sizes=(300, 200, 150, 100))
    small = FaissTEDSelector(n_select=8).fit(X[:150])
    assert list(small.selected_) == list(TEDSelector(n_select=8, n_components=64).fit(X[:150]).selected_)
    keep = truth >= 0
    selector = FaissTEDSelector(n_select=4, coreset=40).fit(X[keep])
    assert sorted(truth[keep][selector.selected_]) == [0, 1, 2, 3]
    assert all(selector.labels_[index] == cluster for cluster, index in enumerate(selector.selected_))
    np.testing.assert_array_equal(truth[keep][selector.selected_][selector.labels_], truth[keep])
    with pytest.raises(ValueError, match="coreset must be at least n_select"):
        FaissTEDSelector(n_select=50, coreset=40).fit(X)


def test_faiss_ted_reads_a_float16_memory_map(tmp_path, monkeypatch) -> None:
    X, truth = blobs(sizes=(300, 200, 150, 100))
    keep = truth >= 0
    np.save(tmp_path / "rows.npy", X[keep].astype(np.float16))
    monkeypatch.setattr(embedding, "PCA_SAMPLE", 250)
    picks = FaissTEDSelector(n_select=4, coreset=40).fit(np.load(tmp_path / "rows.npy", mmap_mode="r")).selected_
    assert sorted(truth[keep][picks]) == [0, 1, 2, 3]
