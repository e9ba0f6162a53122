import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gaussmix import (
    BayesianGaussianMixture,
    GaussianMixture,
    GaussianMixtureImputer,
    RegularizationWarning,
)
from gaussmix._data import missing as _missing
from gaussmix._foundations.covariance import as_full
from gaussmix._fitting.loop import run_em
from gaussmix._fitting.fit import plan_fit
from gaussmix.exceptions import ConvergenceWarning

from .conftest import COVARIANCE_TYPES, make_blobs


def with_holes(X, share=0.2, seed=0):
    rng = np.random.RandomState(seed)
    out = np.array(X, dtype=np.float64)
    out[rng.uniform(size=X.shape) < share] = np.nan
    return out


def reference_em(X, weights, means, covariances, covariance_type, n_iter, reg_covar):
    """Obviously-correct EM with missing values: a loop over rows and components."""
    n, d = X.shape
    k = len(weights)
    for _ in range(n_iter):
        resp = np.zeros((n, k))
        filled = np.zeros((n, k, d))
        extra = np.zeros((n, k, d, d))
        for i in range(n):
            o = ~np.isnan(X[i])
            m = ~o
            logp = np.empty(k)
            for j in range(k):
                s = covariances[j]
                logp[j] = np.log(weights[j]) + multivariate_normal(
                    means[j][o], s[np.ix_(o, o)]).logpdf(X[i][o])
                b = s[np.ix_(m, o)] @ np.linalg.inv(s[np.ix_(o, o)])
                filled[i, j][o] = X[i][o]
                filled[i, j][m] = means[j][m] + b @ (X[i][o] - means[j][o])
                extra[i, j][np.ix_(m, m)] = s[np.ix_(m, m)] - b @ s[np.ix_(o, m)]
            resp[i] = np.exp(logp - logsumexp(logp))
        nk = resp.sum(axis=0)
        weights = nk / n
        means = np.einsum("nk,nkd->kd", resp, filled) / nk[:, None]
        full = np.empty((k, d, d))
        for j in range(k):
            diff = filled[:, j] - means[j]
            full[j] = (np.einsum("n,ni,nj->ij", resp[:, j], diff, diff)
                       + np.einsum("n,nij->ij", resp[:, j], extra[:, j])) / nk[j]
        if covariance_type == "full":
            covariances = full + reg_covar * np.eye(d)
        elif covariance_type == "tied":
            covariances = np.tile(np.einsum("k,kij->ij", nk, full) / n + reg_covar * np.eye(d),
                                  (k, 1, 1))
        elif covariance_type == "diag":
            covariances = np.array([np.diag(np.diag(c)) for c in full]) + reg_covar * np.eye(d)
        else:
            covariances = np.array([np.trace(c) / d * np.eye(d) for c in full]) \
                + reg_covar * np.eye(d)
    return weights, means, covariances


def gaussmix_em(X, params, n_iter, backend, reg_covar):
    data = _missing.prepare(X, np.ones(len(X)), 4096)
    plan = plan_fit(data, params.n_components, backend=backend, reg_covar=reg_covar)
    result = run_em(plan.source, params.shifted(-plan.shift), plan.maximum_likelihood(),
                    tol=0.0, max_iter=n_iter, expectation=plan.expectation)
    return result.params.shifted(plan.shift)


@pytest.mark.parametrize("path", ["direct", "marginal E-step"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("n_iter", [1, 10])
def test_iterations_equal_a_plain_reference_em(covariance_type, n_iter, backend, path,
                                                monkeypatch):
    if path != "direct":  # every pattern through the marginal mixture's E-step
        monkeypatch.setattr(_missing, "DIRECT_PAIRS", 0)
    X = with_holes(make_blobs(n_per=40), 0.25)
    X[3] = np.nan  # a row with nothing observed: left out
    X[5, :2] = np.nan
    start = GaussianMixture(3, covariance_type=covariance_type, max_iter=0,
                            random_state=0).fit(np.nan_to_num(X, nan=0.5))._params()
    d = X.shape[1]
    dense = as_full(start.covariances, covariance_type, 3, d)
    rows = ~np.isnan(X).all(axis=1)
    ref = reference_em(X[rows], start.weights, start.means, dense, covariance_type, n_iter,
                       1e-6)
    ours = gaussmix_em(X, start, n_iter, backend, 1e-6)
    np.testing.assert_allclose(ours.weights, ref[0], rtol=1e-6)
    np.testing.assert_allclose(ours.means, ref[1], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(as_full(ours.covariances, covariance_type, 3, d), ref[2],
                               rtol=1e-6, atol=1e-9)


def test_scores_of_rows_with_holes_are_the_marginal_densities(covariance_type):
    X = make_blobs()
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    rows = np.array([[np.nan, 1.0, 0.5], [2.0, np.nan, np.nan], [0.1, 5.0, 3.0],
                     [np.nan, np.nan, np.nan]])
    dense = as_full(gm.covariances_, covariance_type, 3, 3)
    expected = []
    for row in rows:
        o = ~np.isnan(row)
        if not o.any():
            expected.append(0.0)
            continue
        expected.append(logsumexp([np.log(w) + multivariate_normal(m[o], c[np.ix_(o, o)])
                                   .logpdf(row[o])
                                   for w, m, c in zip(gm.weights_, gm.means_, dense)]))
    np.testing.assert_allclose(gm.score_samples(rows), expected, rtol=1e-10)
    resp = gm.predict_proba(rows)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0)
    np.testing.assert_array_equal(gm.predict(rows), resp.argmax(axis=1))
    np.testing.assert_allclose(resp[3], gm.weights_)
    assert np.isfinite(gm.score(rows)) and np.isfinite(gm.bic(rows))


def test_mean_imputation_is_the_conditional_mean():
    rng = np.random.RandomState(0)
    cov = np.array([[2.0, 0.8, 0.3], [0.8, 1.0, 0.2], [0.3, 0.2, 0.5]])
    gm = GaussianMixture.from_params([1.0], [[1.0, -1.0, 2.0]], [cov])
    x = np.array([[np.nan, 0.0, 2.5], [0.5, np.nan, np.nan], [1.0, 2.0, 3.0]])
    filled = gm.impute(x)
    b = cov[0, 1:] @ np.linalg.inv(cov[1:, 1:])
    assert filled[0, 0] == pytest.approx(1.0 + b @ (x[0, 1:] - [-1.0, 2.0]))
    b2 = cov[1:, :1] / cov[0, 0]
    np.testing.assert_allclose(filled[1, 1:], [-1.0, 2.0] + (b2 * (0.5 - 1.0)).ravel())
    np.testing.assert_array_equal(filled[2], x[2])
    draws = np.array([gm.impute(x[:1], method="sample", random_state=s)[0, 0]
                      for s in range(400)])
    conditional_var = cov[0, 0] - b @ cov[1:, 0]
    assert abs(draws.mean() - filled[0, 0]) < 4 * np.sqrt(conditional_var / 400)
    assert np.all(gm.impute(x, method="sample", random_state=rng)[:, 1:][0] == x[0, 1:])
    with pytest.raises(ValueError, match="method must be 'mean' or 'sample'"):
        gm.impute(x, method="median")
    nothing = np.full((2, 3), np.nan)  # nothing observed: the mixture's mean, or a draw
    np.testing.assert_allclose(gm.impute(nothing), np.tile(gm.mean(), (2, 1)))
    assert np.isfinite(gm.impute(nothing, method="sample", random_state=0)).all()


def test_fits_with_holes_report_them_and_impute_better_than_column_means():
    X = np.concatenate([make_blobs(seed=s) + 7 * s for s in range(2)])
    holes = with_holes(X, 0.2, seed=1)
    gm = GaussianMixture(6, random_state=0).fit(holes)
    assert gm.n_missing_ == int(np.isnan(holes).sum())
    assert GaussianMixture(6, random_state=0).fit(X).n_missing_ == 0
    mask = np.isnan(holes)
    rmse = np.sqrt(np.mean((gm.impute(holes)[mask] - X[mask]) ** 2))
    column_means = np.where(mask, np.nanmean(holes, axis=0), holes)
    assert rmse < 0.75 * np.sqrt(np.mean((column_means[mask] - X[mask]) ** 2))


def test_infinity_is_still_refused_and_an_empty_column_too():
    X = make_blobs()
    X[4, 1] = np.inf
    with pytest.raises(ValueError, match=r"infinity \(inf\) in 1 row \(first at row 4\); NaN "
                                         "marks a missing value"):
        GaussianMixture(2).fit(X)
    Y = make_blobs()
    Y[:, 2] = np.nan
    with pytest.raises(ValueError, match="Feature 2 has no observed entry"):
        GaussianMixture(2).fit(Y)
    with pytest.raises(ValueError, match="BayesianGaussianMixture does not take missing"):
        BayesianGaussianMixture(n_components=2).fit(with_holes(make_blobs()))


def test_every_row_with_a_hole_still_fits():
    X = make_blobs()
    holes = X.copy()
    holes[np.arange(len(X)), np.arange(len(X)) % 3] = np.nan
    gm = GaussianMixture(3, random_state=0).fit(holes)
    assert np.isfinite(gm.means_).all() and gm.n_missing_ == len(X)


@given(share=st.sampled_from([0.05, 0.3, 0.6]), seed=st.integers(0, 10**6),
       covariance_type=st.sampled_from(COVARIANCE_TYPES),
       column=st.sampled_from([None, 0, 2]))
def test_random_holes_never_give_nan_and_the_bound_does_not_decrease(share, seed,
                                                                      covariance_type, column):
    X = with_holes(make_blobs(n_per=30), share, seed)
    if column is not None:  # a column almost all missing
        keep = np.random.RandomState(seed).randint(len(X))
        X[np.arange(len(X)) != keep, column] = np.nan
    if column is not None and np.isnan(X[:, column]).all():
        X[0, column] = 0.0
    # reg_covar=0: EM with a regularised M-step need not increase the likelihood itself (a
    # column with one observed value is all regularisation); repairs are reported.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, RegularizationWarning))
        gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0, tol=0,
                             max_iter=15, reg_covar=0.0).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.isfinite(getattr(gm, name)).all(), name
    bounds = np.array(gm.lower_bounds_)
    assert np.isfinite(bounds).all()
    if not gm.n_reseeded_ and not gm.n_regularized_:
        assert np.all(np.diff(bounds) >= -1e-9 * np.maximum(np.abs(bounds[1:]), 1.0))


def test_the_imputer_is_a_scikit_learn_transformer():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(GaussianMixtureImputer(n_components=2, max_iter=20))
    X = np.concatenate([make_blobs(seed=s) + 7 * s for s in range(2)])
    holes = with_holes(X, 0.2, seed=2)
    imputer = GaussianMixtureImputer(random_state=0).fit(holes)
    assert imputer.n_components_ == min(imputer.bic_, key=imputer.bic_.get)
    assert 3 <= imputer.n_components_ <= 10
    filled = imputer.transform(holes)
    assert not np.isnan(filled).any()
    np.testing.assert_array_equal(filled[~np.isnan(holes)], holes[~np.isnan(holes)])
    pipeline = make_pipeline(GaussianMixtureImputer(n_components=[6], random_state=0),
                             StandardScaler()).fit(holes)
    assert np.isfinite(pipeline.transform(holes)).all()
    with pytest.raises(ValueError, match="method must be one of"):
        GaussianMixtureImputer(method="median").fit(holes)


def test_initialisation_rows_are_the_complete_ones_when_they_are_most():
    X = make_blobs()
    few = with_holes(X, 0.02, seed=3)
    data = _missing.prepare(few, np.ones(len(X)), 4096)
    rows = data.sample(10**6, np.random.RandomState(0))
    assert rows.n_rows == data.complete.n_rows and not np.isnan(rows.x).any()
    many = with_holes(X, 0.5, seed=3)
    data = _missing.prepare(many, np.ones(len(X)), 4096)
    assert data.sample(10**6, np.random.RandomState(0)).n_rows == len(X)


def stream_kinds(X, folder):
    """The same rows as every input kind that reads them chunk by chunk."""
    import dask.array as da

    path = folder / "x.npy"
    np.save(path, X)
    return {
        "npy path": str(path),
        "memory map": np.load(path, mmap_mode="r"),
        "chunk function": lambda: (X[i:i + 250] for i in range(0, len(X), 250)),
        "dask": da.from_array(X, chunks=300),
    }


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("share", [0.1, 0.6])  # init from the complete rows, or from all
def test_streams_and_dask_with_holes_fit_as_arrays_do(backend, share, tmp_path):
    X = with_holes(np.concatenate([make_blobs(seed=s) + 7 * s for s in range(2)]), share, 2)
    X[3] = np.nan
    settings = {"n_components": 4, "random_state": 0, "backend": backend, "max_iter": 15,
                "tol": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GaussianMixture(**settings).fit(X)
        for name, data in stream_kinds(X, tmp_path).items():
            gm = GaussianMixture(**settings).fit(data)
            assert gm.n_missing_ == ref.n_missing_ == int(np.isnan(X).sum()), name
            assert gm.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-9), name
            np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-7, atol=1e-9,
                                       err_msg=name)
            scores = np.asarray(gm.score_samples(data))
            np.testing.assert_allclose(scores, ref.score_samples(X), rtol=1e-7, err_msg=name)
            assert scores[3] == 0.0  # nothing observed: log-density of nothing


def test_streams_refuse_infinity_an_unseen_feature_and_bayesian_holes(tmp_path):
    X = with_holes(make_blobs(), 0.1)
    inf = X.copy()
    inf[5, 0] = np.inf
    for data in stream_kinds(inf, tmp_path).values():
        with pytest.raises(ValueError, match=r"infinity \(inf\) in 1 row .*NaN marks a "
                                             "missing value"):
            GaussianMixture(2).fit(data)
    unseen = X.copy()
    unseen[:, 1] = np.nan
    for data in stream_kinds(unseen, tmp_path).values():
        with pytest.raises(ValueError, match="Feature 1 has no observed entry"):
            GaussianMixture(2).fit(data)
    for data in stream_kinds(X, tmp_path).values():
        with pytest.raises(ValueError, match="BayesianGaussianMixture does not take missing"):
            BayesianGaussianMixture(n_components=2).fit(data)


def test_partial_fit_takes_chunks_with_holes():
    X = with_holes(np.concatenate([make_blobs(seed=s) + 7 * s for s in range(2)]), 0.2, 3)
    X = X[np.random.RandomState(0).permutation(len(X))]  # every chunk from every blob
    gm = GaussianMixture(4, random_state=0, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for part in np.array_split(X, 4):
            gm.partial_fit(part)
    assert np.isfinite(gm.means_).all() and gm.n_missing_ > 0
    whole = GaussianMixture(4, random_state=0).fit(X)
    assert gm.score(X) == pytest.approx(whole.score(X), abs=0.1)


def test_the_imputer_fills_alike_at_any_scale_of_its_columns():
    from gaussmix import GaussianMixtureImputer

    X = np.concatenate([make_blobs(seed=s) + 7 * s for s in range(2)])
    holes = with_holes(X, 0.2, seed=4)
    scales = np.array([1e-4, 1.0, 1e5])  # columns in very different units
    plain = GaussianMixtureImputer(random_state=0).fit_transform(holes)
    scaled = GaussianMixtureImputer(random_state=0).fit_transform(holes * scales)
    np.testing.assert_allclose(scaled / scales, plain, rtol=1e-6, atol=1e-8)


def test_the_imputer_checks_the_columns_it_is_given():
    pd = pytest.importorskip("pandas")
    from gaussmix import GaussianMixtureImputer

    holes = with_holes(make_blobs(), 0.2, seed=5)
    frame = pd.DataFrame(holes, columns=["a", "b", "c"])
    imputer = GaussianMixtureImputer(n_components=[3], random_state=0).fit(frame)
    np.testing.assert_array_equal(imputer.feature_names_in_, ["a", "b", "c"])
    assert not np.isnan(imputer.transform(frame)).any()
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixtureImputer is "
                                         "expecting 3"):
        imputer.transform(holes[:, :2])
    with pytest.raises(ValueError, match="feature names"):
        imputer.transform(frame.rename(columns={"a": "z"}))


def test_the_imputer_names_its_output_columns_as_scikit_learn_does():
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.exceptions import NotFittedError
    from sklearn.preprocessing import StandardScaler

    from gaussmix import GaussianMixtureImputer

    holes = with_holes(make_blobs(), 0.2, seed=5)
    frame = pd.DataFrame(holes, columns=["a", "b", "c"]).assign(d=np.arange(len(holes)))
    with pytest.raises(NotFittedError):
        GaussianMixtureImputer().get_feature_names_out()
    imputer = GaussianMixtureImputer(n_components=[2], random_state=0)
    np.testing.assert_array_equal(imputer.fit(holes).get_feature_names_out(),
                                  ["x0", "x1", "x2"])
    np.testing.assert_array_equal(imputer.fit(frame[["a", "b", "c"]]).get_feature_names_out(),
                                  ["a", "b", "c"])
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        imputer.get_feature_names_out(["a", "b", "z"])
    with pytest.raises(ValueError, match="input_features should have length equal"):
        imputer.get_feature_names_out(["a", "b"])
    columns = ColumnTransformer([("fill", GaussianMixtureImputer(n_components=[2],
                                                                 random_state=0), ["a", "b", "c"]),
                                 ("scale", StandardScaler(), ["d"])]).fit(frame)
    np.testing.assert_array_equal(columns.get_feature_names_out(),
                                  ["fill__a", "fill__b", "fill__c", "scale__d"])


def test_the_imputer_refuses_more_components_than_rows_and_names_those_it_drops():
    X = with_holes(make_blobs(n_per=4), 0.2, seed=1)[:10]
    with pytest.raises(ValueError, match="at least 50 components but X has 10 rows"):
        GaussianMixtureImputer(n_components=50).fit(X)
    with pytest.warns(UserWarning, match="Not fitted: n_components 50, more than the 10 rows"):
        imputer = GaussianMixtureImputer(n_components=[2, 50], random_state=0).fit(X)
    assert imputer.n_components_ == 2
