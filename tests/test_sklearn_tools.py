"""gaussmix driven through scikit-learn's tools as users drive scikit-learn's own estimators:
pipelines, column transformers, searches and cross-validation in worker processes, metadata
routing on and off, pandas output, clone, pickle and joblib, the notebook's HTML repr, and the
array API. Each result is compared with the same computation done by hand."""

import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.base import BaseEstimator, clone, is_outlier_detector
from sklearn.compose import ColumnTransformer
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    KFold,
    cross_validate,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils import estimator_html_repr

from gaussmix import BayesianGaussianMixture, GaussianMixture, GaussianMixtureImputer
from gaussmix.exceptions import ConvergenceWarning

from .conftest import make_blobs

pd = pytest.importorskip("pandas")

ESTIMATORS = (GaussianMixture, BayesianGaussianMixture, GaussianMixtureImputer)


def blobs_frame(seed=0, holes=0.0):
    """Three blobs as a DataFrame with columns a, b, c (a share ``holes`` of NaN)."""
    X = make_blobs(seed=seed)
    if holes:
        X[np.random.RandomState(seed + 1).rand(*X.shape) < holes] = np.nan
    return pd.DataFrame(X, columns=["a", "b", "c"], index=np.arange(100, 100 + len(X)))


def weights_for(n, seed=0):
    return np.random.RandomState(seed).gamma(2.0, size=n)


@pytest.fixture
def routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


# --------------------------------------------------------------------------------------------
# The base class and its tags


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_every_estimator_is_a_base_estimator(cls):
    estimator = cls()
    assert isinstance(estimator, BaseEstimator)
    assert not is_outlier_detector(estimator)
    for method in ("get_metadata_routing", "_repr_html_", "__sklearn_tags__"):
        assert hasattr(estimator, method), method
    is_transformer = cls is GaussianMixtureImputer
    assert hasattr(estimator, "set_output") == is_transformer  # as in scikit-learn
    assert hasattr(estimator, "set_fit_request") == (not is_transformer)  # no sample_weight


def test_tags_say_which_inputs_each_estimator_takes():
    mixture = GaussianMixture().__sklearn_tags__()
    assert mixture.estimator_type == "density_estimator"
    assert mixture.input_tags.allow_nan  # exact EM over the observed entries
    assert not mixture.target_tags.required and not mixture.non_deterministic
    bayesian = BayesianGaussianMixture().__sklearn_tags__()
    assert not bayesian.input_tags.allow_nan
    imputer = GaussianMixtureImputer().__sklearn_tags__()
    assert imputer.input_tags.allow_nan and imputer.estimator_type is None
    assert imputer.transformer_tags.preserves_dtype == ["float64", "float32"]


def test_the_tags_tell_the_truth():
    X = blobs_frame(holes=0.1).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianMixture(2, random_state=0).fit(X)  # allow_nan
        with pytest.raises(ValueError, match="does not take missing values"):
            BayesianGaussianMixture(2, random_state=0).fit(X)
        for dtype in (np.float32, np.float64):
            holes = X.astype(dtype)
            filled = GaussianMixtureImputer(2, random_state=0).fit_transform(holes)
            assert filled.dtype == dtype
            seen = ~np.isnan(holes)
            np.testing.assert_array_equal(filled[seen], holes[seen])
        # non_deterministic=False: the same random_state, the same fit
        fits = [GaussianMixture(3, random_state=5).fit(X) for _ in range(2)]
        np.testing.assert_array_equal(fits[0].means_, fits[1].means_)


def test_parameters_repr_and_errors_are_scikit_learns():
    gm = GaussianMixture(3, covariance_type="diag")
    assert repr(gm) == "GaussianMixture(covariance_type='diag', n_components=3)"
    assert gm.get_params()["n_components"] == 3
    with pytest.raises(ValueError, match="Invalid parameter 'n_clusters' for estimator"):
        gm.set_params(n_clusters=2)
    pipeline = make_pipeline(StandardScaler(), gm)
    pipeline.set_params(gaussianmixture__n_components=4)
    assert gm.n_components == 4


# --------------------------------------------------------------------------------------------
# Clone, pickle, joblib


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_clone_pickle_and_joblib_keep_the_estimator(cls, tmp_path):
    X = blobs_frame(holes=0.1 if cls is GaussianMixtureImputer else 0.0)
    fitted = cls(n_components=3, random_state=0).fit(X)
    fresh = clone(fitted)
    assert fresh.get_params() == fitted.get_params() and not hasattr(fresh, "n_features_in_")
    output = (fitted.transform if cls is GaussianMixtureImputer else fitted.score_samples)(X)
    joblib.dump(fitted, tmp_path / "model.joblib")
    for copy in (pickle.loads(pickle.dumps(fitted)), joblib.load(tmp_path / "model.joblib")):
        again = (copy.transform if cls is GaussianMixtureImputer else copy.score_samples)(X)
        np.testing.assert_array_equal(again, output)
        np.testing.assert_array_equal(copy.feature_names_in_, ["a", "b", "c"])


# --------------------------------------------------------------------------------------------
# pandas out: set_output, ColumnTransformer, feature names


def test_set_output_pandas_through_a_pipeline():
    frame = blobs_frame(holes=0.15)
    pipeline = Pipeline([("impute", GaussianMixtureImputer(3, random_state=0)),
                         ("scale", StandardScaler())]).set_output(transform="pandas")
    out = pipeline.fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["a", "b", "c"] and out.index.equals(frame.index)
    by_hand = StandardScaler().fit_transform(
        GaussianMixtureImputer(3, random_state=0).fit(frame).transform(frame))
    np.testing.assert_allclose(out.to_numpy(), by_hand, rtol=1e-12, atol=1e-12)
    default = clone(pipeline).set_output(transform="default").fit_transform(frame)
    assert isinstance(default, np.ndarray)


def test_global_pandas_output_and_unnamed_columns():
    X = blobs_frame(holes=0.1).to_numpy()
    with sklearn.config_context(transform_output="pandas"):
        out = GaussianMixtureImputer(3, random_state=0).fit_transform(X)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["x0", "x1", "x2"]
    assert not out.isna().to_numpy().any()


def test_nullable_columns_go_through_set_output():
    frame = blobs_frame(holes=0.1).astype("Float64")  # NaN become pd.NA
    frame["n"] = pd.array(np.arange(len(frame)) % 4, dtype="Int64")
    frame.loc[frame.index[::9], "n"] = pd.NA
    imputer = GaussianMixtureImputer(3, random_state=0).set_output(transform="pandas")
    out = imputer.fit_transform(frame)
    assert list(out.columns) == ["a", "b", "c", "n"] and not out.isna().to_numpy().any()
    seen = ~frame.isna().to_numpy()
    np.testing.assert_array_equal(out.to_numpy()[seen], frame.to_numpy(dtype=float,
                                                                       na_value=np.nan)[seen])


def test_column_transformer_names_and_fills_its_columns():
    frame = blobs_frame(holes=0.1)
    frame["kind"] = np.where(frame["a"].fillna(0) > 3, "far", "near")
    columns = ColumnTransformer([
        ("numbers", GaussianMixtureImputer(3, random_state=0), ["a", "b", "c"]),
        ("kinds", OneHotEncoder(sparse_output=False), ["kind"]),
    ]).set_output(transform="pandas")
    out = columns.fit_transform(frame)
    names = ["numbers__a", "numbers__b", "numbers__c", "kinds__kind_far", "kinds__kind_near"]
    assert list(columns.get_feature_names_out()) == names == list(out.columns)
    filled = GaussianMixtureImputer(3, random_state=0).fit_transform(frame[["a", "b", "c"]])
    np.testing.assert_array_equal(out.iloc[:, :3].to_numpy(), filled)


def test_function_transformer_neighbours():
    frame = blobs_frame(holes=0.1) + 10.0
    pipeline = make_pipeline(
        FunctionTransformer(np.log, feature_names_out="one-to-one"),
        GaussianMixtureImputer(2, random_state=0),
        FunctionTransformer(np.exp, feature_names_out="one-to-one"),
    ).set_output(transform="pandas")
    out = pipeline.fit_transform(frame)
    assert list(out.columns) == ["a", "b", "c"]
    seen = ~frame.isna().to_numpy()
    np.testing.assert_allclose(out.to_numpy()[seen], frame.to_numpy()[seen], rtol=1e-14)
    scored = make_pipeline(FunctionTransformer(np.log), GaussianMixture(3, random_state=0))
    clean = blobs_frame() + 10.0
    np.testing.assert_allclose(
        scored.fit(clean).score_samples(clean),
        GaussianMixture(3, random_state=0).fit(np.log(clean)).score_samples(np.log(clean)))


@pytest.mark.parametrize("change", ["reordered", "renamed"])
def test_feature_name_errors_use_scikit_learns_words(change):
    from sklearn.mixture import GaussianMixture as SklearnMixture

    frame = blobs_frame()
    other = frame[["b", "a", "c"]] if change == "reordered" else frame.rename(
        columns={"c": "z"})
    for ours in (GaussianMixture(2, random_state=0).fit(frame),
                 GaussianMixtureImputer(2, random_state=0).fit(frame)):
        theirs = SklearnMixture(2, random_state=0).fit(frame)
        with pytest.raises(ValueError) as expected:
            theirs.predict(other)
        with pytest.raises(ValueError) as got:
            (ours.transform if hasattr(ours, "transform") else ours.predict)(other)
        assert str(got.value).startswith(str(expected.value).rstrip("\n"))


def test_warnings_point_at_the_users_line():
    frame = blobs_frame()
    gm = GaussianMixture(3, random_state=0).fit(frame)
    imputer = GaussianMixtureImputer(2, random_state=0).fit(frame)
    pipeline = make_pipeline(StandardScaler(), GaussianMixture(3, max_iter=1, tol=0.0))
    calls = [lambda: gm.predict(frame.to_numpy()), lambda: imputer.transform(frame.to_numpy()),
             lambda: pipeline.fit(frame)]
    for call in calls:
        with pytest.warns(UserWarning) as caught:
            call()
        assert [w.filename for w in caught] == [__file__] * len(caught)


# --------------------------------------------------------------------------------------------
# Metadata routing


def test_routed_sample_weight_reaches_fit_and_score(routing):
    frame = blobs_frame()
    w = weights_for(len(frame))
    gm = GaussianMixture(3, random_state=0).set_fit_request(sample_weight=True)
    gm.set_score_request(sample_weight=True)
    pipeline = make_pipeline(StandardScaler().set_fit_request(sample_weight=False), gm)
    pipeline.fit(frame, sample_weight=w)
    scaled = StandardScaler().fit_transform(frame)
    by_hand = GaussianMixture(3, random_state=0).fit(scaled, sample_weight=w)
    np.testing.assert_array_equal(pipeline[-1].means_, by_hand.means_)
    assert pipeline.score(frame, sample_weight=w) == by_hand.score(scaled, sample_weight=w)
    unweighted = GaussianMixture(3, random_state=0).fit(scaled)
    assert not np.array_equal(unweighted.means_, by_hand.means_)


def test_routing_refuses_an_unrequested_weight_and_honours_a_refusal(routing):
    frame = blobs_frame()
    w = weights_for(len(frame))
    with pytest.raises(sklearn.exceptions.UnsetMetadataPassedError,
                       match="set_fit_request"):
        make_pipeline(GaussianMixture(3)).fit(frame, sample_weight=w)
    pipeline = make_pipeline(
        StandardScaler().set_fit_request(sample_weight=True),
        GaussianMixture(3, random_state=0).set_fit_request(sample_weight=False),
    ).fit(frame, sample_weight=w)
    scaled = StandardScaler().fit(frame, sample_weight=w).transform(frame)
    np.testing.assert_array_equal(pipeline[-1].means_,
                                  GaussianMixture(3, random_state=0).fit(scaled).means_)


def test_routed_cross_validation_weights_each_fold(routing):
    X = make_blobs(seed=2)
    w = weights_for(len(X), seed=3)
    gm = GaussianMixture(3, random_state=0).set_fit_request(sample_weight=True)
    gm.set_score_request(sample_weight=True)
    folds = KFold(3, shuffle=True, random_state=0)
    result = cross_validate(gm, X, cv=folds, params={"sample_weight": w})
    for score, (train, test) in zip(result["test_score"], folds.split(X)):
        model = GaussianMixture(3, random_state=0).fit(X[train], sample_weight=w[train])
        assert score == pytest.approx(model.score(X[test], sample_weight=w[test]), rel=1e-12)


def test_without_routing_the_old_ways_still_work():
    frame = blobs_frame()
    w = weights_for(len(frame))
    pipeline = make_pipeline(GaussianMixture(3, random_state=0))
    pipeline.fit(frame, gaussianmixture__sample_weight=w)
    np.testing.assert_array_equal(
        pipeline[-1].means_,
        GaussianMixture(3, random_state=0).fit(frame, sample_weight=w).means_)
    with pytest.raises(RuntimeError, match="enable_metadata_routing=True"):
        GaussianMixture().set_fit_request(sample_weight=True)


# --------------------------------------------------------------------------------------------
# Searches in worker processes


def test_grid_search_in_two_processes_equals_one():
    X = make_blobs(seed=4)
    grid = {"n_components": [1, 2, 3, 4], "covariance_type": ["full", "diag"]}
    searches = [GridSearchCV(GaussianMixture(random_state=0), grid, cv=3, n_jobs=n_jobs)
                .fit(X) for n_jobs in (1, 2)]
    np.testing.assert_allclose(searches[0].cv_results_["mean_test_score"],
                               searches[1].cv_results_["mean_test_score"], rtol=1e-12)
    assert searches[1].best_params_["n_components"] >= 3
    assert isinstance(searches[1].best_estimator_, GaussianMixture)


def test_cross_validate_in_two_processes_with_missing_values():
    frame = blobs_frame(holes=0.1)
    pipeline = make_pipeline(GaussianMixtureImputer(3, random_state=0),
                             GaussianMixture(3, random_state=0))
    results = [cross_validate(pipeline, frame, cv=3, n_jobs=n_jobs) for n_jobs in (1, 2)]
    assert np.isfinite(results[1]["test_score"]).all()
    np.testing.assert_allclose(results[0]["test_score"], results[1]["test_score"], rtol=1e-12)


def test_halving_grid_search():
    X = np.concatenate([make_blobs(seed=s, n_per=200) for s in range(2)])
    search = HalvingGridSearchCV(GaussianMixture(random_state=0),
                                 {"n_components": [1, 2, 3, 5], "covariance_type":
                                  ["full", "spherical"]}, cv=3, factor=2, random_state=0,
                                 min_resources=150).fit(X)
    assert search.n_iterations_ >= 2
    assert search.best_params_["n_components"] >= 3


# --------------------------------------------------------------------------------------------
# The notebook's HTML repr


def test_html_repr_of_a_pipeline():
    pipeline = make_pipeline(GaussianMixtureImputer(method="sample"),
                             GaussianMixture(7, covariance_type="diag"))
    html = estimator_html_repr(pipeline)
    for text in ("GaussianMixtureImputer", "GaussianMixture", "sample", "diag", "7"):
        assert text in html
    assert "<style>" in html and "GaussianMixtureImputer" in pipeline._repr_html_()
    fitted = pipeline.fit(blobs_frame(holes=0.1))
    assert "fitted" in estimator_html_repr(fitted).lower()


# --------------------------------------------------------------------------------------------
# The array API


def test_array_api_arrays_in_their_namespace_out():
    xp = pytest.importorskip("array_api_strict")
    X = make_blobs(seed=6)
    w = weights_for(len(X))
    device = xp.Device("device1")
    X_xp, w_xp = xp.asarray(X, device=device), xp.asarray(w, device=device)
    ours = GaussianMixture(3, random_state=0).fit(X_xp, sample_weight=w_xp)
    plain = GaussianMixture(3, random_state=0).fit(X, sample_weight=w)
    np.testing.assert_array_equal(ours.means_, plain.means_)
    assert isinstance(ours.means_, np.ndarray)  # fitted attributes stay numpy
    for method in ("predict", "predict_proba", "score_samples"):
        out = getattr(ours, method)(X_xp)
        assert type(out) is type(X_xp) and out.device == device, method
        np.testing.assert_array_equal(np.from_dlpack(xp.asarray(out, device=xp.Device(
            "CPU_DEVICE"))), getattr(plain, method)(X), err_msg=method)
    assert ours.score(X_xp, sample_weight=w_xp) == plain.score(X, sample_weight=w)
    assert ours.bic(X_xp) == plain.bic(X)


ARRAY_API_SCRIPT = """
import inspect
import numpy as np
import sklearn
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_array_api_input
import gaussmix

rng = np.random.RandomState(0)
X = np.concatenate([rng.randn(150, 3), rng.randn(150, 3) + 6])
namespaces = [("array_api_strict", lambda a: __import__("array_api_strict").asarray(a))]
try:
    import torch
    namespaces.append(("torch", torch.asarray))
except ImportError:
    pass
# scikit-learn 1.8's check of estimators without array-API tags: numpy in, the same results
numpy_check = "expect_only_array_outputs" in inspect.signature(check_array_api_input).parameters
with sklearn.config_context(array_api_dispatch=True):
    for cls in (gaussmix.GaussianMixture, gaussmix.BayesianGaussianMixture,
                gaussmix.GaussianMixtureImputer):
        if numpy_check:
            check_array_api_input(cls.__name__, cls(n_components=2, max_iter=20),
                                  array_namespace="numpy", expect_only_array_outputs=False)
    reference = make_pipeline(StandardScaler(), gaussmix.GaussianMixture(2, random_state=0))
    want = reference.fit(X).score_samples(X)
    for name, convert in namespaces:
        try:
            StandardScaler().fit_transform(convert(X))
        except TypeError:  # scikit-learn before 1.8 with array-api-strict 2.6
            print(name, "refused by scikit-learn's own StandardScaler")
            continue
        pipeline = make_pipeline(StandardScaler(), gaussmix.GaussianMixture(2, random_state=0))
        got = pipeline.fit(convert(X)).score_samples(convert(X))
        assert type(got).__module__.split(".")[0] == name.split(".")[0], type(got)
        np.testing.assert_allclose(np.from_dlpack(got), want, rtol=1e-10)
        print(name, "ok")
"""


def test_scikit_learns_array_api_dispatch():
    pytest.importorskip("array_api_strict")
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(ARRAY_API_SCRIPT)], env=env,
                          capture_output=True, text=True, timeout=300)
    if "array_api_compat is required" in done.stderr:
        pytest.skip(f"scikit-learn {sklearn.__version__} dispatches only with array-api-compat "
                    "installed")
    assert done.returncode == 0, done.stderr[-3000:]
    names = ["array_api_strict"]
    try:
        import torch  # noqa: F401

        names.append("torch")
    except ImportError:
        pass
    for name in names:
        recent = sklearn_version() >= (1, 8)
        assert f"{name} ok" in done.stdout or (
            not recent and f"{name} refused by scikit-learn's own" in done.stdout), done.stdout


def sklearn_version():
    return tuple(int(part) for part in sklearn.__version__.split(".")[:2])
