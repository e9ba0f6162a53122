"""Every bad input is a ValueError with one clear sentence saying what to do."""

import numpy as np
import pytest
import scipy.sparse

import gaussmix
from gaussmix import GaussianMixture

X = np.random.RandomState(0).randn(20, 2)


def one_sentence(message):
    """The message is a single sentence (or a scikit-learn style listing) ending in a period."""
    return message.strip().endswith(".") and message.count(". ") <= 1


def fitted():
    return GaussianMixture(2, random_state=0).fit(X)


@pytest.mark.parametrize(
    "data, pattern",
    [
        (np.full((20, 2), np.nan), "Feature 0 has no observed entry"),
        (np.where(np.arange(40).reshape(20, 2) == 5, np.inf, X), r"infinity \(inf\) in 1 row \(first at row 2\)"),
        (np.arange(20.0), r"1-D array .*Reshape your data with X.reshape\(-1, 1\)"),
        (np.zeros((2, 3, 4)), r"3-D array .*Pass a 2-D array"),
        (np.array([["a", "b"], ["c", "d"]]), r"non-numeric values .*convert or drop"),
        (X + 1j, r"Complex data not supported"),
        (scipy.sparse.csr_array(X), r"[Ss]parse input is not supported.*toarray"),
        (np.empty((0, 3)), r"0 sample\(s\)"),
        (np.empty((5, 0)), r"0 feature\(s\)"),
    ],
    ids=["all-missing", "inf", "1d", "3d", "strings", "complex", "sparse", "no-rows", "no-columns"],
)
def test_bad_data_at_fit(data, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        GaussianMixture(1).fit(data)
    assert one_sentence(str(info.value))


def test_non_numeric_objects_are_also_a_type_error():
    data = X.astype(object)
    data[0, 0] = {"a": 1}
    with pytest.raises(TypeError, match="argument must be a string or a"):
        GaussianMixture(1).fit(data)


def test_too_many_components():
    with pytest.raises(ValueError, match=r"n_components=30 is larger than the number of samples "
                                         r"\(n_samples = 20\); reduce n_components"):
        GaussianMixture(30).fit(X)
    w = np.zeros(20)
    w[:3] = 1
    with pytest.raises(ValueError, match="samples with a positive weight"):
        GaussianMixture(4).fit(X, sample_weight=w)


@pytest.mark.parametrize(
    "weights, pattern",
    [
        (-np.ones(20), r"20 negative values; weights must be non-negative"),
        (np.zeros(20), r"zero for every row"),
        (np.ones(21), r"shape \(21,\) but X has 20 rows"),
        (np.ones((20, 2)), r"shape \(20, 2\) but X has 20 rows"),
        (np.r_[np.nan, np.ones(19)], r"1 NaN or infinite values"),
        (["a"] * 20, r"could not be read as numbers"),
    ],
    ids=["negative", "all-zero", "too-long", "2d", "nan", "strings"],
)
def test_bad_sample_weight(weights, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        GaussianMixture(1).fit(X, sample_weight=weights)
    assert one_sentence(str(info.value))


def test_wrong_feature_count_at_predict_time():
    gm = fitted()
    for method in (gm.predict, gm.predict_proba, gm.score_samples, gm.score):
        with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting "
                                             "2 features as input"):
            method(np.zeros((4, 3)))


def test_nan_at_predict_time_is_a_missing_value_and_inf_is_refused():
    assert fitted().predict(np.array([[0.0, np.nan]])).shape == (1,)
    with pytest.raises(ValueError, match=r"infinity \(inf\) in 1 row"):
        fitted().predict(np.array([[0.0, np.inf]]))


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score"])
def test_use_before_fit_is_not_fitted_error(method):
    with pytest.raises(gaussmix.NotFittedError, match="not fitted yet. Call 'fit'"):
        getattr(GaussianMixture(), method)(X)


def test_not_fitted_error_is_also_scikit_learns_when_it_is_imported():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        GaussianMixture().sample(3)


@pytest.mark.parametrize(
    "params, pattern",
    [
        ({"n_components": 0}, "n_components must be an integer >= 1"),
        ({"n_components": 2.5}, "n_components must be an integer >= 1"),
        ({"covariance_type": "round"}, "covariance_type must be one of 'full', 'tied'"),
        ({"tol": -1}, "tol must be a real number >= 0"),
        ({"reg_covar": -1e-3}, "reg_covar must be a real number >= 0"),
        ({"max_iter": -1}, "max_iter must be an integer >= 0"),
        ({"n_init": 0}, "n_init must be an integer >= 1"),
        ({"init_params": "best"}, "init_params must be one of 'kmeans'"),
        ({"chunk_size": 0}, "chunk_size must be an integer >= 1"),
        ({"random_state": "seed"}, "random_state must be None, an int or a numpy RandomState"),
        ({"weights_init": [0.5, 0.6]}, "weights_init must sum to 1"),
        ({"weights_init": [1.5, -0.5]}, r"weights_init must lie in \[0, 1\]"),
        ({"means_init": np.zeros((3, 2))}, r"'means_init' should have the shape of \(2, 2\)"),
        ({"precisions_init": -np.ones((2, 2, 2))}, "must be symmetric positive definite"),
        ({"precisions_init": np.ones((2, 2)), "covariance_type": "diag"}, None),
        ({"precisions_init": -np.ones(2), "covariance_type": "spherical"}, "must be positive"),
    ],
)
def test_bad_parameters(params, pattern):
    gm = GaussianMixture(**{"n_components": 2, **params})
    if pattern is None:
        gm.fit(X)
        return
    with pytest.raises(ValueError, match=pattern):
        gm.fit(X)


def test_set_params_rejects_unknown_names():
    with pytest.raises(ValueError, match="Invalid parameter 'n_clusters'"):
        GaussianMixture().set_params(n_clusters=3)


def test_feature_names_must_match(recwarn):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["a", "b"])
    gm = GaussianMixture(2, random_state=0).fit(df)
    np.testing.assert_array_equal(gm.feature_names_in_, ["a", "b"])
    with pytest.raises(ValueError, match="Feature names unseen at fit time:\n- c\n"):
        gm.predict(pd.DataFrame(X, columns=["a", "c"]))
    with pytest.raises(ValueError, match="same order"):
        gm.predict(df[["b", "a"]])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        gm.predict(X)
    mixed = pd.DataFrame(X, columns=["a", 1])
    with pytest.raises(TypeError, match="all input features have string names"):
        GaussianMixture(1).fit(mixed)


def test_infinity_is_counted_over_every_chunk():
    from gaussmix._foundations.validation import has_missing

    X = np.zeros((10, 2))
    X[[1, 7], 0] = np.inf
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"infinity \(inf\) in 2 rows \(first at row 1\)"):
        has_missing(X, chunk_size=4)
    X[[1, 7], 0] = 0.0
    assert has_missing(X, chunk_size=4) and not has_missing(np.zeros((3, 2)))


def test_duplicate_column_names_are_refused():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(np.random.RandomState(0).randn(50, 3), columns=["a", "a", "b"])
    with pytest.raises(ValueError, match="duplicate column names \\('a' 2 times\\)"):
        GaussianMixture(2).fit(frame)


def test_pandas_nullable_columns_take_pd_na_as_missing():
    pd = pytest.importorskip("pandas")
    import warnings

    from gaussmix import GaussianMixture, GaussianMixtureImputer

    rng = np.random.RandomState(0)
    plain = pd.DataFrame(rng.randn(120, 3), columns=["a", "b", "c"])
    plain.iloc[3, 1] = plain.iloc[7, 0] = np.nan
    nullable = plain.astype("Float64")  # NaN becomes pd.NA
    nullable["n"] = plain["n"] = rng.randint(0, 5, 120).astype(float)
    nullable["n"] = nullable["n"].astype("Int64")
    nullable.iloc[5, 3], plain.iloc[5, 3] = pd.NA, np.nan
    assert nullable.isna().to_numpy().sum() == 3 and nullable.dtypes.iloc[0] == "Float64"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for make in (lambda: GaussianMixture(2, random_state=0),
                     lambda: GaussianMixtureImputer(2, random_state=0)):
            ours, theirs = make().fit(nullable), make().fit(plain)
            got = ours.means_ if hasattr(ours, "means_") else ours.transform(nullable)
            want = theirs.means_ if hasattr(theirs, "means_") else theirs.transform(plain)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="non-numeric values"):
        GaussianMixture(2).fit(pd.DataFrame({"a": ["x"] * 5 + [pd.NA] * 5, "b": range(10)}))
