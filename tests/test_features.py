"""MAP adaptation and features from mixtures against closed forms, references written here and
scikit-image's Fisher vectors."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gaussmix import BayesianGaussianMixture, GaussianMixture
from gaussmix.features import fisher_vector, supervector

TYPES = ("full", "tied", "diag", "spherical")


def two_clouds(rng, n=600, d=3, shift=0.0):
    return np.concatenate([rng.normal(-3 + shift, 1.0, (n, d)),
                           rng.normal(3 + shift, 0.7, (n, d))])


@pytest.fixture(scope="module", params=TYPES)
def ubm(request):
    rng = np.random.default_rng(0)
    return GaussianMixture(4, covariance_type=request.param, random_state=0).fit(two_clouds(rng))


def full_covariances(model):
    k, d = model.means_.shape
    c = model.covariances_
    return {"full": lambda: c, "tied": lambda: np.broadcast_to(c, (k, d, d)),
            "diag": lambda: np.stack([np.diag(v) for v in c]),
            "spherical": lambda: c[:, None, None] * np.eye(d)}[model.covariance_type]()


def reference_adaptation(ubm, X, r, parameters, reg_covar):
    """Reynolds, Quatieri and Dunn (2000), equations (11)-(14), as written there, with the
    responsibilities from scikit-learn's formula (a plain float64 computation)."""
    from scipy.stats import multivariate_normal

    k, d = ubm.means_.shape
    covs = full_covariances(ubm)
    log_dens = np.stack([multivariate_normal(ubm.means_[j], covs[j]).logpdf(X)
                         for j in range(k)], axis=1) + np.log(ubm.weights_)
    resp = np.exp(log_dens - np.logaddexp.reduce(log_dens, axis=1, keepdims=True))
    n = resp.sum(axis=0)
    ex = resp.T @ X / n[:, None]
    exx = np.einsum("nk,nd,ne->kde", resp, X, X) / n[:, None, None]
    a = n / (n + r)
    w = a * n / len(X) + (1 - a) * ubm.weights_
    w = w / w.sum() if "w" in parameters else ubm.weights_
    mu = a[:, None] * ex + (1 - a[:, None]) * ubm.means_ if "m" in parameters else ubm.means_
    second = (a[:, None, None] * (exx + reg_covar * np.eye(d))
              + (1 - a[:, None, None]) * (covs + np.einsum("kd,ke->kde", ubm.means_,
                                                             ubm.means_))
              - np.einsum("kd,ke->kde", mu, mu))
    if "v" not in parameters:
        second = covs
    elif ubm.covariance_type == "tied":  # one covariance, the coefficient of all the data
        shared = len(X) / (len(X) + r)
        scatter = sum(np.einsum("n,nd,ne->de", resp[:, j], X - mu[j], X - mu[j])
                      for j in range(k))
        shift = ubm.means_ - mu
        second = (shared * (scatter / len(X) + reg_covar * np.eye(d))
                  + (1 - shared) * (covs[0] + np.einsum("k,kd,ke->de", ubm.weights_, shift,
                                                        shift)))
        second = np.broadcast_to(second, (k, d, d))
    return w, mu, second


@pytest.mark.parametrize("parameters", ["m", "wmv", "w", "mv"])
def test_adaptation_equals_the_reference_equations(ubm, parameters):
    rng = np.random.default_rng(1)
    X = two_clouds(rng, n=150, shift=0.4)
    adapted = ubm.adapt(X, relevance_factor=8.0, parameters=parameters)
    w, mu, covs = reference_adaptation(ubm, X, 8.0, parameters, ubm.reg_covar)
    np.testing.assert_allclose(adapted.weights_, w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(adapted.means_, mu, rtol=1e-10, atol=1e-10)
    got = full_covariances(adapted)
    if ubm.covariance_type == "diag":
        covs = np.stack([np.diag(np.diag(c)) for c in covs])
    elif ubm.covariance_type == "spherical":
        covs = np.stack([np.trace(c) / c.shape[0] * np.eye(c.shape[0]) for c in covs])
    np.testing.assert_allclose(got, covs, rtol=1e-10, atol=1e-10)


def test_relevance_zero_is_one_m_step_from_the_background_responsibilities(ubm):
    rng = np.random.default_rng(2)
    X = two_clouds(rng, n=300, shift=0.3)
    adapted = ubm.adapt(X, relevance_factor=0, parameters="wmv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one_step = GaussianMixture(4, covariance_type=ubm.covariance_type, max_iter=1,
                                   weights_init=ubm.weights_, means_init=ubm.means_,
                                   precisions_init=ubm.precisions_).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(adapted, name), getattr(one_step, name),
                                   rtol=1e-10, atol=1e-12)


def test_an_infinite_relevance_leaves_the_background_unchanged(ubm):
    X = two_clouds(np.random.default_rng(3), n=100, shift=1.0)
    same = ubm.adapt(X, relevance_factor=np.inf, parameters="wmv")
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(same, name), getattr(ubm, name), rtol=1e-12)
    huge = ubm.adapt(X, relevance_factor=1e12, parameters="wmv")
    np.testing.assert_allclose(huge.means_, ubm.means_, atol=1e-8)


def test_adaptation_moves_only_what_the_data_reach_and_leaves_the_model_alone():
    rng = np.random.default_rng(4)
    ubm = GaussianMixture(2, random_state=0).fit(two_clouds(rng, d=2))
    before = ubm.means_.copy()
    right = np.argmax(ubm.means_[:, 0])
    adapted = ubm.adapt(rng.normal(3.5, 0.7, (400, 2)))
    np.testing.assert_array_equal(ubm.means_, before)
    assert np.abs(adapted.means_[1 - right] - before[1 - right]).max() < 1e-6
    assert np.all(adapted.means_[right] > before[right] + 0.3)
    assert adapted.score(rng.normal(3.5, 0.7, (400, 2))) > ubm.score(
        rng.normal(3.5, 0.7, (400, 2)))


def test_iterated_adaptation_raises_the_likelihood_and_sample_weights_repeat_rows():
    rng = np.random.default_rng(5)
    ubm = GaussianMixture(3, random_state=0).fit(two_clouds(rng, d=2))
    X = two_clouds(rng, n=100, d=2, shift=0.8)
    scores = [ubm.adapt(X, 4.0, "wmv", n_iter=i).score(X) for i in (1, 2, 5)]
    assert scores[0] < scores[1] < scores[2]
    counts = rng.integers(0, 3, len(X))
    weighted = ubm.adapt(X, 4.0, "wmv", sample_weight=counts)
    repeated = ubm.adapt(np.repeat(X, counts, axis=0), 4.0, "wmv")
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-10)
    np.testing.assert_allclose(weighted.covariances_, repeated.covariances_, rtol=1e-10)


def test_a_bayesian_mixture_adapts_through_its_posterior_means():
    rng = np.random.default_rng(8)
    X = two_clouds(rng, d=2)
    bayesian = BayesianGaussianMixture(n_components=3, random_state=0).fit(X)
    Y = two_clouds(rng, n=100, d=2, shift=0.5)
    adapted = bayesian.adapt(Y, parameters="wmv")
    plug_in = GaussianMixture.from_params(bayesian.weights_, bayesian.means_,
                                          bayesian.covariances_)
    expected = plug_in.adapt(Y, parameters="wmv")
    assert isinstance(adapted, GaussianMixture)
    np.testing.assert_allclose(adapted.means_, expected.means_, rtol=1e-10)
    np.testing.assert_allclose(adapted.covariances_, expected.covariances_, rtol=1e-10)


def test_adaptation_takes_every_input_kind_fit_takes(tmp_path):
    rng = np.random.default_rng(6)
    ubm = GaussianMixture(3, random_state=0).fit(two_clouds(rng, d=2))
    X = two_clouds(rng, n=200, d=2, shift=0.5)
    plain = ubm.adapt(X, parameters="wmv")
    np.save(tmp_path / "x.npy", X)

    def chunks():
        for start in range(0, len(X), 64):
            yield X[start:start + 64]

    for other in (str(tmp_path / "x.npy"), chunks):
        np.testing.assert_allclose(ubm.adapt(other, parameters="wmv").means_, plain.means_,
                                   rtol=1e-10)
    holes = X.copy()
    holes[::7, 1] = np.nan
    assert np.isfinite(ubm.adapt(holes, parameters="wmv").means_).all()


@pytest.mark.parametrize("bad, words", [(dict(relevance_factor=-1), "relevance_factor"),
                                        (dict(parameters="mx"), "parameters"),
                                        (dict(parameters=""), "parameters"),
                                        (dict(parameters="mm"), "parameters"),
                                        (dict(n_iter=0), "n_iter")])
def test_bad_adaptation_settings_are_one_sentence(bad, words):
    ubm = GaussianMixture(1).fit(np.random.default_rng(0).normal(size=(50, 2)))
    with pytest.raises(ValueError, match=words):
        ubm.adapt(np.zeros((5, 2)), **bad)
    with pytest.raises(ValueError, match="features"):
        ubm.adapt(np.zeros((5, 3)))


@pytest.fixture(scope="module")
def descriptors():
    rng = np.random.default_rng(7)
    centres = rng.normal(0, 3, (6, 5))
    return centres[rng.integers(0, 6, 3000)] + rng.normal(0, 1, (3000, 5))


def test_fisher_vectors_equal_scikit_images(descriptors):
    skimage_feature = pytest.importorskip("skimage.feature")
    from sklearn.mixture import GaussianMixture as Theirs

    theirs = Theirs(6, covariance_type="diag", random_state=0).fit(descriptors)
    ours = GaussianMixture.from_params(theirs.weights_, theirs.means_, theirs.covariances_,
                                       covariance_type="diag")
    for rows in (descriptors[:500], descriptors[1000:1017]):
        for improved in (False, True):
            expected = skimage_feature.fisher_vector(rows, theirs, improved=improved)
            np.testing.assert_allclose(fisher_vector(ours, rows, improved=improved), expected,
                                       rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_fisher_vectors_of_the_models_own_samples_are_near_zero(covariance_type, descriptors):
    model = GaussianMixture(6, covariance_type=covariance_type, random_state=0).fit(descriptors)
    samples, _ = model.sample(200_000)
    vector = fisher_vector(model, samples)
    d = model.n_features_in_
    size = {"spherical": 6 + 6 * d + 6}.get(covariance_type, 6 + 2 * 6 * d)
    assert vector.shape == (size,)
    assert np.abs(vector).max() < 0.02  # standard errors of about 1/sqrt(200,000) * a few
    other = fisher_vector(model, samples[:, ::-1] + 1.0)
    assert np.abs(other).max() > 0.2


@pytest.mark.parametrize("covariance_type", ["full", "tied", "spherical"])
def test_fisher_vectors_of_other_types_follow_their_definitions(covariance_type, descriptors):
    """Against the definitions in whitened coordinates, written out with per-row loops."""
    model = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(descriptors)
    rows = descriptors[:40]
    resp = model.predict_proba(rows)
    n, d = rows.shape
    w = model.weights_
    covs = full_covariances(model)
    d_w = (resp.mean(axis=0) - w) / np.sqrt(w)
    d_mu, d_var = [], []
    for k in range(3):
        if covariance_type == "spherical":
            var = covs[k, 0, 0]
            diff = rows - model.means_[k]
            d_mu.append((resp[:, k, None] * diff).sum(0) / (n * np.sqrt(w[k] * var)))
            d_var.append(-(resp[:, k] * ((diff**2).sum(1) / var - d)).sum()
                         / (n * np.sqrt(2 * d * w[k])))
        else:
            # scikit-learn's factor: upper triangular, precision = u @ u.T
            u = model.precisions_cholesky_
            u = u if covariance_type == "tied" else u[k]
            np.testing.assert_allclose(u @ u.T, np.linalg.inv(covs[k]), rtol=1e-8)
            z = (rows - model.means_[k]) @ u
            d_mu.append((resp[:, k, None] * z).sum(0) / (n * np.sqrt(w[k])))
            d_var.append(-(resp[:, k, None] * (z**2 - 1)).sum(0) / (n * np.sqrt(2 * w[k])))
    expected = np.concatenate([d_w, np.ravel(d_mu), np.ravel(d_var)])
    np.testing.assert_allclose(fisher_vector(model, rows), expected, rtol=1e-8, atol=1e-10)


def test_many_sets_give_one_vector_each(descriptors):
    model = GaussianMixture(4, covariance_type="diag", random_state=0).fit(descriptors)
    sets = [descriptors[:10], descriptors[10:400], descriptors[400:401]]
    stacked = fisher_vector(model, sets, improved=True)
    assert stacked.shape == (3, 4 + 2 * 4 * 5)
    for vector, rows in zip(stacked, sets):
        np.testing.assert_allclose(vector, fisher_vector(model, rows, improved=True),
                                   rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(stacked, axis=1), 1.0)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_sets_in_one_kernel_pass_equal_each_set_alone(covariance_type, descriptors,
                                                      monkeypatch):
    """Many sets go through the kernel in batches (each set its own accumulators): their
    vectors equal each set's own, over batch boundaries, with one-row and float32 sets; a
    set with a hole (NaN) sends the list set by set."""
    from gaussmix._fitting import one_pass as passes

    model = GaussianMixture(4, covariance_type=covariance_type, random_state=0,
                            backend="numba").fit(descriptors)
    rng = np.random.default_rng(5)
    sizes = [1, 7, 300, 2, 190, 193, 1, 50]
    sets = [descriptors[rng.integers(0, len(descriptors), n)] for n in sizes]
    sets[3] = sets[3].astype(np.float32)
    monkeypatch.setattr(passes, "KERNEL_PASS_ROWS", 400)  # several batches
    together = fisher_vector(model, sets)
    for vector, rows in zip(together, sets):
        alone = fisher_vector(model, rows)
        np.testing.assert_allclose(vector, alone, rtol=1e-10, atol=1e-12)
    holed = [s.astype(np.float64) for s in sets]
    holed[2][5, 1] = np.nan
    mixed = fisher_vector(model, holed)
    np.testing.assert_allclose(mixed[[0, 1, 3, 4]], together[[0, 1, 3, 4]], rtol=1e-10,
                               atol=1e-12)


def test_a_set_beyond_every_component_is_refused_among_many(descriptors):
    model = GaussianMixture(4, random_state=0, backend="numba").fit(descriptors)
    far = descriptors[:20] + 1e160
    with pytest.raises(ValueError, match="so far from every component"):
        fisher_vector(model, [descriptors[:20], far])


@settings(max_examples=25, deadline=None)
@given(n_rows=st.integers(1, 40), k=st.integers(1, 4), d=st.integers(1, 4),
       covariance_type=st.sampled_from(TYPES), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([1e-3, 1.0, 1e4]))
def test_fisher_vectors_are_finite_for_any_shape_and_scale(n_rows, k, d, covariance_type, seed,
                                                           scale):
    rng = np.random.default_rng(seed)
    train = rng.normal(0, scale, (max(3 * k, 12), d))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianMixture(k, covariance_type=covariance_type, random_state=0,
                                reg_covar=1e-6 * scale**2).fit(train)
    vector = fisher_vector(model, rng.normal(0, scale, (n_rows, d)), improved=True)
    assert np.isfinite(vector).all()
    assert np.isfinite(supervector(model)).all()


def test_supervectors_bound_the_divergence_of_adapted_models(descriptors):
    ubm = GaussianMixture(4, covariance_type="diag", random_state=0).fit(descriptors)
    a = ubm.adapt(descriptors[:300] + 0.3)
    b = ubm.adapt(descriptors[300:600] - 0.2)
    va, vb = supervector(a), supervector(b)
    assert va.shape == (4 * 5,)
    # the upper bound of KL(a || b) for mean-adapted mixtures: half the squared distance
    kl_bound = 0.5 * ((va - vb) ** 2).sum()
    closed = 0.5 * sum(w * ((ma - mb) ** 2 / v).sum() for w, ma, mb, v in zip(
        ubm.weights_, a.means_, b.means_, ubm.covariances_))
    np.testing.assert_allclose(kl_bound, closed, rtol=1e-10)
    np.testing.assert_array_equal(supervector(a, normalized=False), a.means_.ravel())


def test_bad_feature_inputs_are_one_sentence(descriptors):
    model = GaussianMixture(2, covariance_type="diag").fit(descriptors)
    with pytest.raises(ValueError, match="fitted gaussmix"):
        fisher_vector(object(), descriptors)
    with pytest.raises(ValueError, match="empty"):
        fisher_vector(model, [])
    with pytest.raises(ValueError, match="alpha"):
        fisher_vector(model, descriptors, improved=True, alpha=2.0)
    with pytest.raises(ValueError, match="features"):
        fisher_vector(model, descriptors[:, :2])
    bayesian = BayesianGaussianMixture(n_components=2, random_state=0).fit(descriptors)
    assert np.isfinite(fisher_vector(bayesian, descriptors[:20])).all()
