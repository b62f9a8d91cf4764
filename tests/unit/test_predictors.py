import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor, NearestNeighbors
from sklearn.preprocessing import StandardScaler

from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.knn import KNNPredictor
from ml_backend.prediction.ridge import RidgePredictor
from ml_backend.prediction.ridge_dual import DualSystem
from ml_backend.prediction.ridge_solvers import NormalMatrix


def smooth_data(n: int, seed: int = 0):
    """Like CNN features: many correlated columns driven by a 2-D latent that sets the MOS."""
    rng = np.random.default_rng(seed)
    latent = rng.uniform(-1, 1, (n, 2))
    X = latent @ rng.normal(size=(2, 10)) + rng.normal(0, 0.05, (n, 10))
    y = 50 + 30 * np.sin(2 * latent[:, 0]) + 15 * latent[:, 1]
    return X, y


def test_knn_beats_the_mean_predictor_on_a_smooth_function() -> None:
    X, y = smooth_data(400)
    model = KNNPredictor().fit(X[:100], y[:100])
    knn_rmse = np.sqrt(np.mean((model.predict(X[100:]) - y[100:]) ** 2))
    mean_rmse = np.sqrt(np.mean((y[:100].mean() - y[100:]) ** 2))
    assert knn_rmse < 0.5 * mean_rmse
    assert model.n_features_in_ == 10 and model.n_labels_ == 100


def test_uniform_and_distance_weights_give_different_predictions() -> None:
    X, y = smooth_data(60)
    uniform = KNNPredictor(weights="uniform").fit(X[:30], y[:30]).predict(X[30:])
    distance = KNNPredictor(weights="distance").fit(X[:30], y[:30]).predict(X[30:])
    assert not np.allclose(uniform, distance)
    # distance weighting reproduces a labelled image's own score
    np.testing.assert_allclose(KNNPredictor().fit(X[:30], y[:30]).predict(X[:5]), y[:5])


def test_more_neighbours_than_labels_and_a_single_label_work() -> None:
    X, y = smooth_data(20)
    model = KNNPredictor(n_neighbors=50, weights="uniform").fit(X[:3], y[:3])
    np.testing.assert_allclose(model.predict(X[3:]), y[:3].mean())
    single = KNNPredictor().fit(X[:1], y[:1])
    predictions, confidence = single.predict_with_confidence(X)
    np.testing.assert_allclose(predictions, y[0])
    assert np.all((confidence >= 0) & (confidence <= 1))


def test_confidence_is_higher_near_labels_than_far_away() -> None:
    X, y = smooth_data(200)
    model = KNNPredictor().fit(X[:50], y[:50])
    near = X[:50] + 0.01
    far = X[:50] + 5.0
    _, c_near = model.predict_with_confidence(near)
    _, c_far = model.predict_with_confidence(far)
    assert np.all((c_near >= 0) & (c_near <= 1)) and np.all((c_far >= 0) & (c_far <= 1))
    assert np.all(c_near > c_far)
    assert c_far.max() < 0.2


def test_confidence_is_lower_where_neighbour_labels_disagree() -> None:
    rng = np.random.default_rng(4)
    # two equally dense groups of labelled images; labels agree in one, alternate in the other
    calm = rng.normal(0, 0.1, (10, 4)) + [5, 0, 0, 0]
    noisy = rng.normal(0, 0.1, (10, 4)) - [5, 0, 0, 0]
    X = np.vstack([calm, noisy])
    y = np.concatenate([np.full(10, 50.0), np.tile([10.0, 90.0], 5)])
    model = KNNPredictor(n_neighbors=4).fit(X, y)
    _, confidence = model.predict_with_confidence(np.array([[5.0, 0, 0, 0], [-5.0, 0, 0, 0]]))
    assert confidence[0] > 2 * confidence[1]


def test_predicting_before_fit_raises_not_fitted() -> None:
    with pytest.raises(NotFittedError):
        KNNPredictor().predict(np.zeros((1, 3)))
    with pytest.raises(NotFittedError):
        KNNPredictor().predict_with_confidence(np.zeros((1, 3)))


def test_wrong_feature_count_is_rejected() -> None:
    X, y = smooth_data(10)
    with pytest.raises(ValueError, match="features"):
        KNNPredictor().fit(X, y).predict(np.zeros((1, 4)))


@pytest.mark.parametrize(
    ("params", "message"),
    [({"weights": "gaussian"}, "weights must be one of uniform, distance"),
     ({"n_neighbors": 0}, "n_neighbors must be a positive integer")],
)
def test_bad_values_fail_at_fit_with_a_clear_message(params: dict, message: str) -> None:
    X, y = smooth_data(10)
    with pytest.raises(ValueError, match=message):
        KNNPredictor(**params).fit(X, y)


def test_create_predictor_converts_string_params() -> None:
    model = PREDICTORS.create("knn", {"n_neighbors": "7", "weights": " uniform"})
    assert isinstance(model, KNNPredictor)
    assert (model.n_neighbors, model.weights) == (7, "uniform")
    assert PREDICTORS.create("knn", {"n_neighbors": 3.0}).n_neighbors == 3
    assert PREDICTORS.create("knn").get_params() == {"n_neighbors": 5, "weights": "distance"}


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [("knn", {"k": 3}, r"unknown parameter 'k' for predictor 'knn'; allowed: n_neighbors, weights"),
     ("knn", {"n_neighbors": "seven"}, r"knn.n_neighbors='seven' is not a valid int"),
     ("knn", {"n_neighbors": 2.5}, r"knn.n_neighbors=2.5 is not a valid int"),
     ("knn", {"n_neighbors": True}, r"knn.n_neighbors=True is not a valid int"),
     ("knn", {"weights": 3}, r"knn.weights=3 is not a valid str"),
     ("svm", {}, r"unknown predictor 'svm'; choose from: .*knn")],
)
def test_create_predictor_rejects_bad_params_clearly(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PREDICTORS.create(name, params)


def test_registry_lists_knn() -> None:
    assert "knn" in PREDICTORS.names()


def linear_data(n: int, d: int = 60, seed: int = 0, noise: float = 4.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = X[:, :5] @ np.array([8.0, -6.0, 5.0, 4.0, -3.0]) + rng.normal(0, noise, n) + 50
    return X, y


def sklearn_ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> Ridge:
    return Ridge(alpha=alpha).fit(StandardScaler().fit_transform(X.astype(float)), y)


def test_ridge_penalty_is_the_brute_force_leave_one_out_best() -> None:
    X, y = linear_data(25)
    alphas = (0.1, 3.0, 30.0, 300.0, 3000.0)
    model = RidgePredictor(alphas=alphas).fit(X, y)

    Xs = StandardScaler().fit_transform(X)  # the standardisation the model uses, fixed

    def loo_error(alpha: float) -> float:  # refit without each image: what the closed form replaces
        errors = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            errors.append(Ridge(alpha=alpha).fit(Xs[keep], y[keep]).predict(Xs[i:i + 1])[0] - y[i])
        return float(np.mean(np.square(errors)))

    assert model.alpha_ == min(alphas, key=loo_error)
    reference = sklearn_ridge(X, y, model.alpha_)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(model.predict(X), reference.predict(Xs), rtol=1e-6)


def test_ridge_beyond_max_exact_solves_all_labels_with_a_sampled_penalty() -> None:
    X, y = linear_data(300, d=40)  # more labels than dimensions: the primal solve
    model = RidgePredictor(max_exact=50).fit(X, y)
    np.testing.assert_allclose(model.coef_, sklearn_ridge(X, y, model.alpha_).coef_, rtol=1e-4, atol=1e-6)
    X, y = linear_data(80, d=200)  # fewer labels than dimensions: the dual system
    model = RidgePredictor(max_exact=40).fit(X, y)
    assert isinstance(model.warm_state_.system, DualSystem)
    np.testing.assert_allclose(model.coef_, sklearn_ridge(X, y, model.alpha_).coef_, rtol=1e-4, atol=1e-6)
    exact = RidgePredictor().fit(X, y)
    test_X, test_y = linear_data(200, d=200, seed=1)
    sampled_error = np.sqrt(np.mean((model.predict(test_X) - test_y) ** 2))
    exact_error = np.sqrt(np.mean((exact.predict(test_X) - test_y) ** 2))
    assert sampled_error < 1.2 * exact_error


def test_ridge_confidence_is_in_unit_range_and_bad_params_are_refused() -> None:
    X, y = linear_data(40)
    _, confidence = RidgePredictor().fit(X, y).predict_with_confidence(linear_data(30, seed=2)[0])
    assert np.all((confidence >= 0) & (confidence <= 1)) and confidence.std() > 0
    with pytest.raises(ValueError, match="max_exact must be an integer >= 3"):
        RidgePredictor(max_exact=2).fit(X, y)
    with pytest.raises(ValueError, match="alphas must be positive"):
        RidgePredictor(alphas=(0.0, 1.0)).fit(X, y)


def test_knn_label_spacing_from_a_sample_matches_all_labels() -> None:
    X, y = smooth_data(1000)
    sampled = KNNPredictor().fit(X, y).neighbor_scale_
    Xs = StandardScaler().fit_transform(X)
    distances, _ = NearestNeighbors(n_neighbors=5).fit(Xs).kneighbors()  # every label, itself excluded
    assert sampled == pytest.approx(np.median(distances.mean(axis=1)), rel=0.1)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_knn_matches_scikit_learns_neighbours_regressor(weights: str) -> None:
    X, y = smooth_data(300)
    model = KNNPredictor(n_neighbors=4, weights=weights).fit(X[:200], y[:200])
    scaler = StandardScaler().fit(X[:200])
    reference = KNeighborsRegressor(4, weights=weights).fit(scaler.transform(X[:200]), y[:200])
    queries = np.vstack([X[200:], X[:3]])  # the last three are labelled images: exact matches
    np.testing.assert_allclose(model.predict(queries), reference.predict(scaler.transform(queries)), rtol=1e-5)
    if weights == "distance":
        np.testing.assert_allclose(model.predict(X[:3]), y[:3])


def test_a_full_refit_updates_the_previous_fits_normal_matrix_exactly(monkeypatch) -> None:
    """A full refit (here every one: no change is few enough for a warm fit) takes over the
    previous fit's d x d normal matrix and updates it with the rows that changed; the result must
    equal a fit from scratch."""
    monkeypatch.setattr("ml_backend.prediction.ridge.REFRESH_FRACTION", 0.0)
    X, y = linear_data(300, d=40)
    ids = [f"task-{i}" for i in range(300)]
    previous = RidgePredictor(max_exact=50).fit(X[:-1], y[:-1], row_ids=ids[:-1])
    lent = previous.warm_state_.system
    before = previous.predict(X[:20])
    # One new row, one row gone, one id whose features changed, labels changed, rows reordered.
    X2 = np.concatenate([X[1:], X[:1]])
    ids2 = ids[1:] + ["task-0"]
    X2[5] += 0.5
    y2 = np.concatenate([y[1:], y[:1]]) + 1.0
    model = RidgePredictor(max_exact=50).fit(X2, y2, row_ids=ids2, warm_state=previous.warm_state_)
    scratch = RidgePredictor(max_exact=50).fit(X2, y2)
    assert model.warm_state_.system is lent  # taken over and updated in place, not copied
    np.testing.assert_array_equal(previous.predict(X[:20]), before)  # the old model still serves
    # float32 Cholesky on both sides: equal to ~1e-5; a row missed or counted twice moves them ~1e-2.
    np.testing.assert_allclose(model.coef_, scratch.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.predict(X), scratch.predict(X), atol=1e-4)
    np.testing.assert_allclose(model.coef_, sklearn_ridge(X2, y2, model.alpha_).coef_, rtol=1e-4, atol=1e-6)


def frozen_ridge(full: RidgePredictor, X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> Ridge:
    """scikit-learn's ridge in ``full``'s standardisation and penalty: what a warm fit must equal."""
    return Ridge(alpha=full.alpha_).fit(full.scaler_.transform(X).astype(float), y, sample_weight=w)


def count_factorizations(monkeypatch) -> list[int]:
    """A list that grows by one with every Cholesky factorization from now on (a warm fit makes none)."""
    from scipy import linalg
    from scipy.linalg import lapack

    factorizations: list[int] = []

    def counted(factor):
        def call(*a, **k):
            factorizations.append(1)
            return factor(*a, **k)
        return call

    for module, name in ((linalg, "cho_factor"), (lapack, "spotrf"), (lapack, "dpotrf")):
        monkeypatch.setattr(module, name, counted(getattr(module, name)))
    return factorizations


def test_a_warm_fit_is_the_exact_ridge_in_the_last_full_fits_standardisation_and_penalty(monkeypatch) -> None:
    """One label at a time, changed features and labels, a label removed: each warm fit equals
    scikit-learn's ridge for the kept standardisation and penalty, and so does its confidence
    index, without factorizing again; past REFRESH_FRACTION of changed rows a full fit chooses
    both again."""
    from ml_backend.prediction.ridge import REFRESH_FRACTION

    X, y = linear_data(700, d=40, seed=5)
    ids = list(range(700))
    n0 = 600
    full = RidgePredictor(max_exact=50).fit(X[:n0], y[:n0], row_ids=ids[:n0])
    factorizations = count_factorizations(monkeypatch)
    model = full
    for n in range(n0 + 1, n0 + 20):
        Xn, yn = X[:n].copy(), y[:n].copy()
        if n % 5 == 0:
            Xn[3] += 0.25  # an image replaced
            yn[7] += 10.0  # a label corrected
        keep = [i for i in range(n) if i != 11] if n > n0 + 10 else list(range(n))
        model = RidgePredictor(max_exact=50).fit(Xn[keep], yn[keep], row_ids=[ids[i] for i in keep],
                                                 warm_state=model.warm_state_)
        assert model.scaler_ is full.scaler_ and model.alpha_ == full.alpha_
        reference = frozen_ridge(full, Xn[keep], yn[keep])
        np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(model.predict(X), reference.predict(full.scaler_.transform(X)), atol=1e-3)
        np.testing.assert_allclose(model.neighbours_.Xs_, full.scaler_.transform(Xn[keep]), atol=1e-5)
    assert model.warm_state_.changed < REFRESH_FRACTION * 620 and factorizations == []
    more = RidgePredictor(max_exact=50).fit(X, y, row_ids=ids, warm_state=model.warm_state_)  # 81 new rows
    assert more.scaler_ is not full.scaler_ and more.warm_state_.changed == 0
    np.testing.assert_allclose(more.coef_, sklearn_ridge(X, y, more.alpha_).coef_, rtol=1e-4, atol=1e-6)


def test_warm_fits_keep_the_dual_system_below_as_many_labels_as_dimensions(monkeypatch) -> None:
    """Beyond ``max_exact`` a fit keeps the n x n dual system below ``PRIMAL_FROM`` times as many
    labels as dimensions (here 300 of 300) and the d x d normal matrix from there on; either way the
    next fits after one more label are warm: the exact ridge in the kept standardisation and
    penalty, with no factorization."""
    from ml_backend.prediction.ridge import PRIMAL_FROM

    X, y = linear_data(310, d=300, seed=6, noise=20.0)  # noisy: a penalty like real features'
    assert 300 >= PRIMAL_FROM * 300 > 299
    assert RidgePredictor(max_exact=50).fit(X[:50], y[:50]).warm_state_ is None  # the exact path
    for n0, kind in ((290, DualSystem), (300, NormalMatrix)):
        full = RidgePredictor(max_exact=50).fit(X[:n0], y[:n0], row_ids=list(range(n0)))
        assert isinstance(full.warm_state_.system, kind)
        reference = sklearn_ridge(X[:n0], y[:n0], full.alpha_)
        np.testing.assert_allclose(full.coef_, reference.coef_, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(full.predict(X), reference.predict(full.scaler_.transform(X)), atol=1e-3)
        factorizations = count_factorizations(monkeypatch)
        model = full
        for n in range(n0 + 1, n0 + 6):  # the dual system up to 295 labels
            model = RidgePredictor(max_exact=50).fit(X[:n], y[:n], row_ids=list(range(n)),
                                                     warm_state=model.warm_state_)
            assert model.scaler_ is full.scaler_ and model.alpha_ == full.alpha_
            reference = frozen_ridge(full, X[:n], y[:n])
            np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(model.predict(X), reference.predict(full.scaler_.transform(X)), atol=1e-3)
        assert factorizations == [] and model is not full
        monkeypatch.undo()


def test_a_warm_dual_fit_follows_changed_rows_weights_and_labels(monkeypatch) -> None:
    """The dual system retires a row whose features or weight changed, or that went away, and
    takes a changed one back as a new slot: each warm fit equals scikit-learn's weighted ridge in
    the kept standardisation and penalty, with no factorization, and the old model still serves."""
    monkeypatch.setattr("ml_backend.prediction.ridge.REFRESH_FRACTION", 0.2)  # all warm
    X, y = linear_data(240, d=600, seed=8, noise=20.0)
    ids = [f"task-{i}" for i in range(240)]
    w = np.random.default_rng(1).integers(1, 4, 240).astype(float)
    n0 = 200
    full = RidgePredictor(max_exact=50).fit(X[:n0], y[:n0], row_ids=ids[:n0], sample_weight=w[:n0])
    assert isinstance(full.warm_state_.system, DualSystem)
    factorizations = count_factorizations(monkeypatch)
    model, Xn, yn, wn = full, X.copy(), y.copy(), w.copy()
    for n in range(n0 + 1, n0 + 9):
        before = model.predict(X[:20])
        if n % 2:
            Xn[3 + n % 7] += 0.25  # an image replaced
            wn[5 + n % 5] += 1.0  # one more rating of a rated image
            yn[11] += 3.0  # a label corrected
        keep = [i for i in range(n) if i not in (13, 17) or n < n0 + 5]  # two labels deleted
        previous = model
        model = RidgePredictor(max_exact=50).fit(Xn[keep], yn[keep], row_ids=[ids[i] for i in keep],
                                                 sample_weight=wn[keep], warm_state=model.warm_state_)
        np.testing.assert_array_equal(previous.predict(X[:20]), before)
        assert model.scaler_ is full.scaler_ and model.warm_state_.system is full.warm_state_.system
        reference = frozen_ridge(full, Xn[keep], yn[keep], wn[keep])
        np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(model.predict(X), reference.predict(full.scaler_.transform(X)), atol=1e-3)
        np.testing.assert_allclose(model.neighbours_.Xs_, full.scaler_.transform(Xn[keep]), atol=1e-5)
    assert factorizations == [] and full.warm_state_.system.retired


def test_ridge_rebuilds_the_warm_state_when_most_rows_changed() -> None:
    X, y = linear_data(300, d=40)
    previous = RidgePredictor(max_exact=50).fit(X, y)
    X2, y2 = linear_data(300, d=40, seed=3)  # same ids (positions), new content
    model = RidgePredictor(max_exact=50).fit(X2, y2, warm_state=previous.warm_state_)
    assert model.warm_state_ is not None
    np.testing.assert_allclose(model.coef_, sklearn_ridge(X2, y2, model.alpha_).coef_, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="300 feature rows but 2 row_ids"):
        RidgePredictor().fit(X2, y2, row_ids=["a", "b"])


def test_a_prior_from_another_dataset_helps_with_few_labels_on_another_scale(tmp_path) -> None:
    from ml_backend.prediction.prior import fit_prior, load_prior

    X_other, y_other = linear_data(400, d=60, seed=5)  # the same quality signal, rated 0-100
    path = tmp_path / "prior.npz"
    fit_prior(X_other, y_other, "test features", "linear_data seed 5").save(path)
    prior = load_prior(str(path))
    assert prior.trained_on == "linear_data seed 5" and prior.coef.shape == (60,)
    X, y = linear_data(300, d=60, seed=6)
    y = 1 + 4 * (y - y.min()) / np.ptp(y)  # a 1-5 star scale
    errors = {}
    for name, params in {"none": {"prior": "none"}, "mean": {"prior": str(path), "prior_mode": "mean"},
                         "feature": {"prior": str(path)}}.items():
        model = PREDICTORS.create("ridge", params).fit(X[:8], y[:8])
        predictions, confidence = model.predict_with_confidence(X[8:])
        assert np.all((confidence >= 0) & (confidence <= 1))
        errors[name] = np.sqrt(np.mean((predictions - y[8:]) ** 2))
    assert errors["mean"] < 0.5 * errors["none"] and errors["feature"] < errors["none"]


def test_bad_prior_settings_are_refused(tmp_path) -> None:
    from ml_backend.prediction.prior import fit_prior

    with pytest.raises(ValueError, match="quality prior file not found"):
        PREDICTORS.create("ridge", {"prior": str(tmp_path / "missing.npz")})
    with pytest.raises(ValueError, match="prior_mode must be one of mean, feature"):
        PREDICTORS.create("ridge", {"prior_mode": "both"})
    (tmp_path / "garbage.npz").write_bytes(b"not a prior")
    with pytest.raises(ValueError, match="cannot be used"):
        PREDICTORS.create("ridge", {"prior": str(tmp_path / "garbage.npz")})
    X, y = linear_data(50, d=20)
    fit_prior(X, y, "20 features", "test").save(tmp_path / "narrow.npz")
    with pytest.raises(ValueError, match="expects 20 features"):
        PREDICTORS.create("ridge", {"prior": str(tmp_path / "narrow.npz")}).fit(*linear_data(30, d=60))


@pytest.mark.parametrize("n_labels", [40, 200])  # the exact path, and the normal-matrix path (n > d)
def test_the_prior_column_weighs_as_121_copies_of_it(tmp_path, n_labels: int) -> None:
    """One standardised column of weight 11 is the same regression, penalty and neighbours as
    121 identical columns (the layout it replaced), without their memory and time."""
    from ml_backend.prediction.prior import fit_prior, load_prior

    X_other, y_other = linear_data(300, d=30, seed=7)
    path = tmp_path / "prior.npz"
    fit_prior(X_other, y_other, "test", "test").save(path)
    X, y = linear_data(n_labels + 50, d=30, seed=8)
    weighted = RidgePredictor(prior=str(path), max_exact=100).fit(X[:n_labels], y[:n_labels])
    copies = np.hstack([X, np.repeat(load_prior(str(path)).predict(X)[:, None], 121, axis=1)])
    plain = RidgePredictor(prior="none", max_exact=100).fit(copies[:n_labels], y[:n_labels])
    assert weighted.alpha_ == plain.alpha_
    for ours, theirs in zip(weighted.predict_with_confidence(X[n_labels:]),
                            plain.predict_with_confidence(copies[n_labels:]), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def kinds_of(n: int) -> list[str | None]:
    """Rows in three kinds, the last row of each ten in none."""
    return [None if i % 10 == 9 else "abc"[i % 3] for i in range(n)]


def test_kind_priors_are_ridge_fits_on_each_kind_and_survive_a_round_trip(tmp_path) -> None:
    from ml_backend.prediction.prior import fit_prior, load_prior

    X, y = linear_data(300, d=30, seed=9)
    kinds = kinds_of(300)
    prior = fit_prior(X, y, "test", "test", kinds)
    assert prior.kinds == ("a", "b", "c") and prior.kind_weights.shape == (30, 3)
    columns = prior.columns(X)
    np.testing.assert_allclose(columns[:, 0], fit_prior(X, y, "test", "test").predict(X), rtol=1e-5)
    for i, name in enumerate(prior.kinds):
        rows = np.array([kind == name for kind in kinds])
        alone = RidgePredictor(prior="none").fit(X[rows], y[rows])
        np.testing.assert_allclose(columns[:, 1 + i], alone.predict(X), rtol=1e-5)
    prior.save(tmp_path / "kinds.npz")
    loaded = load_prior(str(tmp_path / "kinds.npz"))
    assert loaded.kinds == prior.kinds
    np.testing.assert_allclose(loaded.columns(X), columns, atol=1e-3)  # float32 storage


def test_bad_kinds_are_refused(tmp_path) -> None:
    from ml_backend.prediction.prior import fit_prior

    X, y = linear_data(60, d=10)
    with pytest.raises(ValueError, match="at least 2 kinds of photo, got 1"):
        fit_prior(X, y, "test", "test", ["a"] * 60)
    with pytest.raises(ValueError, match="kind 'b' has 5 images: a kind prior needs at least 10"):
        fit_prior(X, y, "test", "test", ["a"] * 55 + ["b"] * 5)
    with pytest.raises(ValueError, match="60 labels but 3 kinds"):
        fit_prior(X, y, "test", "test", ["a", "b", "c"])
    prior = fit_prior(X, y, "test", "test", ["a", "b"] * 30)
    np.savez(tmp_path / "torn.npz", mean=prior.mean, scale=prior.scale, coef=prior.coef, intercept=prior.intercept,
             features="test", trained_on="test", kinds=np.array(prior.kinds), kind_weights=prior.kind_weights[:5],
             kind_offsets=prior.kind_offsets)
    with pytest.raises(ValueError, match="torn.npz cannot be used: its kind priors do not match its 10 features"):
        PREDICTORS.create("ridge", {"prior": str(tmp_path / "torn.npz")})
    np.savez(tmp_path / "none.npz", mean=prior.mean, scale=prior.scale, coef=prior.coef, intercept=prior.intercept,
             features="test", trained_on="test", copies=0, kind_copies=40)
    with pytest.raises(ValueError, match=r"none.npz cannot be used: its copies must be at least 1, got \(0, 40\)"):
        PREDICTORS.create("ridge", {"prior": str(tmp_path / "none.npz")})
    np.savez(tmp_path / "many.npz", mean=prior.mean, scale=prior.scale, coef=prior.coef, intercept=prior.intercept,
             features="test", trained_on="test", copies=[121, 5], kind_copies=40)
    with pytest.raises(ValueError, match=r"many.npz cannot be used: .*array") as info:
        PREDICTORS.create("ridge", {"prior": str(tmp_path / "many.npz")})
    assert "\n" not in str(info.value)


def test_the_copies_scale_with_the_feature_columns() -> None:
    """Lite0's layout keeps round 22's copies; the three backbones' get round 25's."""
    from ml_backend.prediction.prior import copies_for

    assert copies_for(4025) == (121, 40) and copies_for(13609) == (409, 135) and copies_for(30) == (1, 1)


@pytest.mark.parametrize("n_labels", [40, 200])
@pytest.mark.parametrize("layout", [(121, 40), (409, 135)])
def test_kind_prior_columns_weigh_as_the_copies_the_prior_names(tmp_path, n_labels: int,
                                                               layout: tuple[int, int]) -> None:
    """The layouts rounds 22 and 25 measured (docs/experiments.md): the prior's column as 121 copies
    and each kind prior's as 40 beside Lite0's features; 409 and 135 beside the three backbones'."""
    from ml_backend.prediction.prior import fit_prior, load_prior

    X_other, y_other = linear_data(300, d=30, seed=7)
    fit_prior(X_other, y_other, "test", "test", kinds_of(300), layout).save(tmp_path / "kinds.npz")
    prior = load_prior(str(tmp_path / "kinds.npz"))
    assert (prior.copies, prior.kind_copies) == layout
    X, y = linear_data(n_labels + 50, d=30, seed=8)
    weighted = RidgePredictor(prior=str(tmp_path / "kinds.npz"), max_exact=100).fit(X[:n_labels], y[:n_labels])
    columns = prior.columns(X).astype(np.float32)
    copies = np.hstack([X, np.repeat(columns[:, :1], layout[0], axis=1), np.repeat(columns[:, 1:], layout[1], axis=1)])
    plain = RidgePredictor(prior="none", max_exact=100).fit(copies[:n_labels], y[:n_labels])
    assert weighted.alpha_ == plain.alpha_
    for ours, theirs in zip(weighted.predict_with_confidence(X[n_labels:]),
                            plain.predict_with_confidence(copies[n_labels:]), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_ridge_leave_one_out_residuals_are_the_refits_without_each_label() -> None:
    """What the backend reports as "each rating predicted without it" is exactly that (with the
    standardisation of all labels, which the closed form keeps)."""
    X, y = linear_data(30, d=12, seed=9)
    model = RidgePredictor(prior="none").fit(X, y)
    Xs = model.scaler_.transform(X)
    for i in (0, 7, 29):
        keep = np.arange(30) != i
        without = Ridge(alpha=model.alpha_).fit(Xs[keep], y[keep]).predict(Xs[i : i + 1])[0]
        assert model.loo_residuals_[i] == pytest.approx(y[i] - without, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("n, d, max_exact, noise, primal", [
    (25, 12, 1000, 4.0, False),  # exact
    (80, 200, 40, 4.0, False),  # dual system: fewer labels than PRIMAL_FROM x the dimensions
    (150, 200, 40, 4.0, False),  # dual system in float64: a tiny penalty
    (250, 200, 40, 4.0, True),  # normal matrix in float64: a tiny penalty
    (250, 200, 100, 20.0, True),  # normal matrix
    (300, 40, 50, 4.0, True),  # normal matrix, many more labels than dimensions
])
def test_weighted_ridge_is_scikit_learns_weighted_ridge(n: int, d: int, max_exact: int, noise: float,
                                                        primal: bool) -> None:
    """Every solve path minimises the weighted squared error; equal weights are the plain fit."""
    X, y = linear_data(n, d=d, noise=noise)
    w = np.random.default_rng(4).integers(1, 6, n).astype(float)
    model = RidgePredictor(prior="none", max_exact=max_exact).fit(X, y, sample_weight=w)
    assert isinstance(model.warm_state_.system, NormalMatrix) if primal else \
        (model.warm_state_ is None) == (n <= max_exact)
    Xs = StandardScaler().fit_transform(X.astype(float))
    reference = Ridge(alpha=model.alpha_).fit(Xs, y, sample_weight=w)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.predict(X), reference.predict(Xs), atol=1e-3)
    plain = RidgePredictor(prior="none", max_exact=max_exact).fit(X, y)
    same = RidgePredictor(prior="none", max_exact=max_exact).fit(X, y, sample_weight=np.full(n, 3.0))
    np.testing.assert_array_equal(same.coef_, plain.coef_)


@pytest.mark.parametrize("n, primal", [(120, False), (240, False), (480, True)])  # d = 400
def test_a_tiny_penalty_is_solved_in_float64_on_every_path(monkeypatch, n: int, primal: bool) -> None:
    """Below ``FLOAT32_MIN_PENALTY`` per label the system is nearly singular but for the penalty:
    the dual system, the normal matrix and their warm refits after one more label all match
    scikit-learn's float64 ridge to the rounding of the float32 features themselves (summed in
    float32 they missed by 0.07-0.1 MOS points here)."""
    from ml_backend.prediction.ridge import FLOAT32_MIN_PENALTY

    rng = np.random.default_rng(7)
    d = 400
    X = rng.normal(size=(n + 101, 50)) @ rng.normal(size=(50, d)) + rng.normal(0, 0.05, (n + 101, d))
    X = (X * rng.uniform(0.5, 3, d) + rng.uniform(-5, 5, d)).astype(np.float32)  # few directions, like a CNN's
    y = 50 + 0.3 * X.astype(float) @ rng.normal(size=d) + rng.normal(size=n + 101)
    test = X[n + 1 :]
    params = {"prior": "none", "max_exact": 50, "alphas": (1e-4 * FLOAT32_MIN_PENALTY * n,)}
    full = RidgePredictor(**params).fit(X[:n], y[:n], row_ids=list(range(n)))
    assert isinstance(full.warm_state_.system, NormalMatrix if primal else DualSystem)
    reference = frozen_ridge(full, X[:n], y[:n])
    np.testing.assert_allclose(full.predict(test), reference.predict(full.scaler_.transform(test)), atol=1e-3)
    assert full.warm_state_.system.precise
    factorizations = count_factorizations(monkeypatch)
    warm = RidgePredictor(**params).fit(X[: n + 1], y[: n + 1], row_ids=list(range(n + 1)),
                                        warm_state=full.warm_state_)
    assert warm.scaler_ is full.scaler_ and factorizations == []
    reference = frozen_ridge(full, X[: n + 1], y[: n + 1])
    np.testing.assert_allclose(warm.predict(test), reference.predict(full.scaler_.transform(test)), atol=1e-3)


def test_weighted_leave_one_out_residuals_are_weighted_refits_without_each_label() -> None:
    X, y = linear_data(30, d=12, seed=9)
    w = np.random.default_rng(2).uniform(0.5, 3.0, 30)
    model = RidgePredictor(prior="none").fit(X, y, sample_weight=w)
    Xs = model.scaler_.transform(X)
    for i in (0, 7, 29):
        keep = np.arange(30) != i
        without = Ridge(alpha=model.alpha_).fit(Xs[keep], y[keep], sample_weight=w[keep])
        assert model.loo_residuals_[i] == pytest.approx(y[i] - without.predict(Xs[i : i + 1])[0], rel=1e-5)
    with pytest.raises(ValueError, match="sample_weight must be 30 positive numbers"):
        RidgePredictor(prior="none").fit(X, y, sample_weight=np.zeros(30))


def test_a_changed_weight_updates_the_normal_matrix_like_a_changed_row() -> None:
    X, y = linear_data(300, d=40)
    w = np.ones(300)
    w[[5, 9]] = 2.0
    previous = RidgePredictor(prior="none", max_exact=50).fit(X, y, sample_weight=w)
    w2 = w.copy()
    w2[[3, 17]] = 2.5  # two images got more raters
    model = RidgePredictor(prior="none", max_exact=50).fit(X, y, sample_weight=w2,
                                                           warm_state=previous.warm_state_)
    assert model.warm_state_.system is previous.warm_state_.system and model.warm_state_.changed == 2
    reference = frozen_ridge(previous, X, y, w2)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.predict(X), reference.predict(previous.scaler_.transform(X)), atol=1e-3)


@pytest.mark.parametrize("d", [40, 800])  # the normal matrix; the dual system
@pytest.mark.parametrize("lost", ["warm", "full"])
def test_a_warm_state_whose_system_moved_on_gives_a_full_fit_not_a_wrong_one(d: int, lost: str) -> None:
    """A retrain that failed after updating the system (a warm fit) or taking its memory (a full
    fit) leaves the serving model's warm state behind it; the next fit from that state must notice
    and fit from scratch."""
    X, y = linear_data(320, d=d, seed=4)
    ids = list(range(320))
    served = RidgePredictor(max_exact=50).fit(X[:300], y[:300], row_ids=ids[:300])
    moved = X[:301] if lost == "warm" else linear_data(301, d=d, seed=5)[0]  # every row changed: a full fit
    RidgePredictor(max_exact=50).fit(moved, y[:301], row_ids=ids[:301], warm_state=served.warm_state_)  # lost
    again = RidgePredictor(max_exact=50).fit(X[:302], y[:302], row_ids=ids[:302], warm_state=served.warm_state_)
    if lost == "warm" or d == 800:  # (a full fit takes no rows into a normal matrix when all changed)
        assert again.scaler_ is not served.scaler_  # a full fit
    # warm or full: the ridge in its standardisation and penalty (a changed system would miss it)
    np.testing.assert_allclose(again.coef_, frozen_ridge(again, X[:302], y[:302]).coef_, rtol=1e-4, atol=1e-5)