"""The exactness oracle: every fast path against the plain float64 reference.

Hypothesis draws what the fast paths' guards must survive (heavy tails, per-feature scales
from 1e-6 to 1e9 in one data set, a few far rows among ordinary ones, float32, holes, every
covariance type, 1 to 30 components here and a few hundred in the slow test, weights from
denormal to 1e19) and drives it through every entry point: fits on arrays, chunk functions,
Dask arrays and tensors on the numpy, numba and torch paths, and scoring (``score_samples``,
``score``, ``predict``, ``predict_proba``, ``bic``, ``aic``, ``conditional_mean``) on the
numpy path, the pruned kernel and the torch path, with far rows in the scoring batches.
Everything is compared with ``tests/exactness.py`` (difference form, scipy's Cholesky,
nothing shared between rows):

- float64: scores, bounds and BIC within ``RTOL = 1e-9`` of the size of each row's terms
  (``1 + sum_k r_k (|log w_k - log det L_k - D log(2 pi)/2| + q_k / 2)``, what any float64
  evaluation is exact to relatively), parameters after an EM step within 1e-8 in the
  reference's own units (Mahalanobis lengths, whitened covariances), labels equal where the
  best two components are further apart than the tolerance;
- float32 data: the host runs them in float64, so the same, but for the rounding of what
  comes back in float32 (``RTOL32 = 1e-7``: scores; parameters: their own rounding); on a
  device their logits are float32: ``RTOL32_DEVICE = 1e-4`` for scores and parameters.

The examples are the same on every run; ``HYPOTHESIS_EXPLORE=1`` searches afresh (with
``HYPOTHESIS_MAX_EXAMPLES``); the slow sizes are marked ``slow``.
"""

import contextlib
import os
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gaussmix import BayesianGaussianMixture, GaussianMixture, select
from gaussmix._fitting import inference as _inference
from gaussmix._fitting.inference import conditional_mean
from gaussmix._mathematics.em import EXPANSION_LIMIT as _LIMITS
from gaussmix.exceptions import ConvergenceWarning, RegularizationWarning

from .exactness import (
    dense_covariances,
    entrywise_sensitivity,
    mean_error,
    n_parameters,
    reference_bic,
    reference_em_step,
    reference_of,
    reference_of_params,
    reference_scores,
    rounding_reach,
    whitened_error,
)
from .test_hostile import one_sentence

RTOL = 1e-9
EPS64 = np.finfo(np.float64).eps
# Epsilons per squared step of a component's mean (in its new standard deviations) that its
# covariance may lose to the moments being summed about where it was (see check_two_steps).
MOVED_EPSILONS = 64
EXPANSION_LIMIT = _LIMITS[np.dtype(np.float64)]
# A covariance that its dtype's rounding alone moves further than this (whitened) is not
# compared: float32 cannot hold it (entries of 3e10 around a spread of 50, say).
STORED_RESOLUTION = 1e-4
RTOL32 = 1e-7
RTOL32_DEVICE = 1e-4
PARAM_RTOL = 1e-8
PARAM_RTOL32_DEVICE = 1e-4
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

def examples(default):
    """A test's examples: its default (derandomized, the same on every run), or
    ``HYPOTHESIS_MAX_EXAMPLES`` when searching wider (with ``HYPOTHESIS_EXPLORE=1``)."""
    return int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", default))


try:
    import torch
except ImportError:  # the torch extra is optional
    torch = None


# ---------------------------------------------------------------------------------------------
# What the guards must survive


@st.composite
def hostile_data(draw, max_rows=240, max_features=4, holes=False, min_features=1):
    """Rows with a heavy or light tail, mixed per-feature scales and offsets, and a few far
    rows; float32 or float64; NaN in about a tenth of the entries when ``holes``."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(30, max_rows))
    d = draw(st.integers(min_features, max_features))
    shape = draw(st.sampled_from(["clusters", "lognormal", "pareto", "cauchy"]))
    if shape == "clusters":
        centres = rng.normal(0, 6, (4, d))
        x = centres[rng.integers(0, 4, n)] + rng.normal(0, 1, (n, d))
    elif shape == "lognormal":
        x = rng.lognormal(0, 2, (n, d))
    elif shape == "pareto":
        x = rng.pareto(1.2, (n, d))
    else:
        x = rng.standard_cauchy((n, d))
    scales = 10.0 ** np.array(draw(st.lists(st.floats(-6, 9), min_size=d, max_size=d)))
    offsets = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, -1e4, 1e8]), min_size=d,
                                     max_size=d)))
    x = x * scales + offsets * scales
    for _ in range(draw(st.integers(0, 3))):
        row = rng.integers(0, n)
        x[row] = offsets * scales + scales * rng.choice([-1, 1], d) * 10.0 ** draw(
            st.floats(2, 10))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    x = x.astype(dtype)
    if holes:
        x[rng.uniform(size=x.shape) < 0.1] = np.nan
        x[np.isnan(x).all(axis=1), 0] = x[0, 0] if not np.isnan(x[0, 0]) else 1.0
    return x


@st.composite
def sample_weights(draw, n):
    """None, or weights spread over a factor four at a scale from denormal to 1e19, some 0."""
    kind = draw(st.sampled_from(["none", "scaled", "zeros"]))
    if kind == "none":
        return None
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([5e-324, 1e-300, 1e-20, 1.0, 1e19]))
    w = rng.uniform(1.0, 4.0, n) * scale
    if kind == "zeros":
        w[rng.uniform(size=n) < 0.2] = 0.0
        w[0] = scale
    return w


def initial_parameters(x, k, covariance_type, spread, seed):
    """Means at random rows (their holes at the column medians), equal weights and diagonal
    covariances of ``spread`` times each feature's variance (as the reference takes them,
    and as the estimator's ``*_init``)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64)
    filled = np.where(np.isnan(x), np.nanmedian(x, axis=0), x)
    n, d = x.shape
    means = filled[rng.choice(n, k, replace=k > n)]
    variance = np.maximum(np.nanvar(x, axis=0), 1e-300) * spread
    if covariance_type == "spherical":
        variance = np.full(d, variance.mean())
    precision = 1.0 / variance
    init = {"full": np.tile(np.diag(precision), (k, 1, 1)), "tied": np.diag(precision),
            "diag": np.tile(precision, (k, 1)), "spherical": np.full(k, precision[0])}
    weights = np.full(k, 1.0 / k)
    covariances = dense_covariances(
        {"full": np.tile(np.diag(1.0 / precision), (k, 1, 1)), "tied": np.diag(1.0 / precision),
         "diag": np.tile(1.0 / precision, (k, 1)), "spherical": np.full(k, 1.0 / precision[0])}[
            covariance_type], covariance_type, k, d)
    return weights, means, np.array(covariances), dict(
        weights_init=weights, means_init=means, precisions_init=init[covariance_type])


def tolerances(x, path="numpy"):
    """(score rtol, parameter rtol) for data of ``x``'s dtype on ``path``: float32 data run
    the host's float64 arithmetic (their scores come back rounded to float32), and float32
    logits only on a device (the torch path)."""
    if x.dtype != np.float32:
        return RTOL, PARAM_RTOL
    return (RTOL32_DEVICE, PARAM_RTOL32_DEVICE) if path == "torch" else (RTOL32, PARAM_RTOL)


@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, RegularizationWarning))
        yield


def fit_or_refuse(model, data, sample_weight=None):
    """``model.fit``; None when the data are refused with one sentence (what `fit` may do
    with data spread beyond what the dtype's sums hold)."""
    try:
        with quiet():
            return model.fit(data, sample_weight=sample_weight)
    except ValueError as exc:
        assert one_sentence(str(exc)), str(exc)
        return None


def weighted_scale(ref, w):
    w = np.ones(len(ref["scale"])) if w is None else np.asarray(w, dtype=np.float64)
    positive = w > 0
    return float(w[positive] @ ref["scale"][positive] / w[positive].sum())


# ---------------------------------------------------------------------------------------------
# Fits: two EM steps from given parameters, through every kind of input


def as_input(kind, x, w):
    """``(data, sample_weight, backend)`` for input ``kind``."""
    if kind in ("array-numpy", "array-numba"):
        return x, w, kind.split("-")[1]
    if kind in ("chunks-numpy", "chunks-numba"):
        def chunks():
            for s in range(0, len(x), 70):
                yield x[s:s + 70] if w is None else (x[s:s + 70], w[s:s + 70])
        return chunks, None, kind.split("-")[1]
    if kind == "dask":
        import dask.array as da

        weights = None if w is None else da.from_array(w, chunks=90)
        return da.from_array(x, chunks=(90, x.shape[1])), weights, "numba"
    if kind == "tensor-torch":
        return torch.as_tensor(x), None if w is None else torch.as_tensor(w), "torch"
    raise AssertionError(kind)


INPUT_KINDS = ["array-numpy", "array-numba", "chunks-numpy", "chunks-numba", "dask"] + (
    ["tensor-torch"] if torch is not None else [])


def leverage(ref, x, w, mean, j):
    """The squared distance (under the start) of the rows that make component j's new
    covariance, weighted by their share of it: any float64 E-step has their logits to a
    few epsilons of that distance, and so their responsibilities, relatively (a row far
    from every component, whose responsibility is a small difference of large logits,
    moves the covariance it dominates by that much)."""
    filled = np.where(np.isnan(x), mean, np.asarray(x, dtype=np.float64))
    share = ref["resp"][:, j] * w * ((filled - mean) ** 2).sum(axis=1)
    share = np.where(np.isfinite(share), share, 0.0)
    total = share.sum()
    return float(share @ np.where(np.isfinite(ref["maha"][:, j]), ref["maha"][:, j], 0.0)
                 / total) if total > 0 else 0.0


def check_step(model, x, w, start, covariance_type, reg_covar, shift, path, factors=None):
    """``model`` ran one EM step more than ``start`` (weights, means, dense covariances):
    its bound equals the reference's log-likelihood under ``start``, and its parameters the
    reference's step from ``start``.

    Parameters are compared in the reference's own units (Mahalanobis lengths, whitened
    covariances), within PARAM_RTOL plus what nothing can avoid or this design allows:
    the rounding of the stored parameters to their dtype; what the reference itself cannot
    resolve of an ill-conditioned covariance (16 epsilons of its entries); and the M-step's
    cancellation: moments are summed about the previous means (or the data's centre, on the
    numpy path) under the previous covariances' guards, so a component whose mean moves m of
    its new standard deviations, or whose variance shrinks by a factor s^2, in one step has
    its new covariance to about ``m^2 + EXPANSION_LIMIT s^2`` epsilons (the next step, about
    the new means under the new guards, carries no such error; a settled fit has m and s
    near one). Returns False where the step made a repair the reference does not make, or
    the reference cannot resolve a covariance (the next step is then not checked).
    """
    k, d = start[1].shape
    rtol, param_rtol = tolerances(x, path)
    unit = np.ones(len(x)) if w is None else w
    ll, ref_w, ref_means, ref_cov = reference_em_step(x, unit, *start, covariance_type,
                                                      reg_covar, factors)
    ref = reference_scores(*start, x, factors)
    assert abs(model.lower_bound_ - ll) <= rtol * weighted_scale(ref, w), \
        (model.lower_bound_, ll)
    if model.n_reseeded_ or model.n_regularized_:
        return False  # a repair the reference does not make
    eps = np.finfo(model.means_.dtype).eps
    np.testing.assert_allclose(model.weights_, ref_w, rtol=param_rtol + 2 * eps,
                               atol=param_rtol / k)
    fitted_cov = dense_covariances(model.covariances_, covariance_type, k, d)
    resolved = True
    for j in range(k):
        if ref_w[j] < 1e-12:
            continue  # a component that kept no weight: its moments are noise
        conditioned = 16 * EPS64 * entrywise_sensitivity(ref_cov[j])
        if not conditioned <= param_rtol:
            resolved = False  # so ill-conditioned that the reference cannot resolve it
            continue
        rounding = rounding_reach(np.abs(ref_means[j]) * eps, ref_cov[j])
        stored = whitened_error(ref_cov[j].astype(model.means_.dtype).astype(float), ref_cov[j])
        if stored > STORED_RESOLUTION:
            resolved = False  # its dtype cannot hold this covariance (it is kept positive
            continue          # definite there by a repair of the storage's own)
        moved = max(mean_error(ref_means[j], start[1][j], ref_cov[j]),
                    mean_error(ref_means[j], shift, ref_cov[j]))
        shrunk = max(1.0, whitened_error(start[2][j], ref_cov[j]) + 1.0)
        levered = MOVED_EPSILONS * EPS64 * leverage(ref, x, unit, ref_means[j], j)
        cancelled = MOVED_EPSILONS * EPS64 * ((1 + moved) ** 2 + EXPANSION_LIMIT * shrunk) \
            + levered
        assert mean_error(model.means_[j].astype(float), ref_means[j], ref_cov[j]) <= \
            param_rtol + 4 * rounding + levered + 16 * EPS64 * (1 + moved)
        assert whitened_error(fitted_cov[j], ref_cov[j]) <= \
            param_rtol + cancelled + 2 * stored + conditioned + 8 * rounding * (1 + moved)
    return resolved


def check_two_steps(x, w, k, covariance_type, spread, seed, kind, reg_covar=1e-6):
    """Fit one EM step from a start through ``kind``, then one more from the parameters it
    returned (as ``*_init``): each step's bound and parameters equal the reference's step
    from the same parameters. (Two steps of one fit would start the second from the
    parameters the fit holds about its own origin, which the stored ones round apart.)"""
    weights, means, covariances, init = initial_parameters(x, k, covariance_type, spread, seed)
    if kind.startswith("tensor") and np.isnan(x).any():
        return  # tensors with holes are fitted on the CPU as arrays (tested there)
    data, sample_weight, backend = as_input(kind, x, w)
    settings_ = dict(n_components=k, covariance_type=covariance_type, tol=0.0, max_iter=1,
                     reg_covar=reg_covar, backend=backend)
    one = fit_or_refuse(GaussianMixture(**settings_, **init), data, sample_weight)
    if one is None:
        return
    shift = np.nanmedian(np.asarray(x, dtype=np.float64), axis=0)
    if not check_step(one, x, w, (weights, means, covariances), covariance_type, reg_covar,
                      shift, backend) or x.dtype == np.float32:
        return  # float32 parameters are rounded: the second step starts from others
    # Given as precisions, as the estimator takes them: complete rows are scored by their
    # Cholesky factors (a covariance, their inverse, would differ by its condition number
    # times the rounding), rows with holes by the covariances' blocks.
    precisions = np.asarray(one.precisions_, dtype=np.float64)
    dense = dense_covariances(precisions, covariance_type, k, x.shape[1])
    after_one = (np.asarray(one.weights_, dtype=np.float64),
                 np.asarray(one.means_, dtype=np.float64), np.linalg.inv(dense))
    two = fit_or_refuse(GaussianMixture(**settings_, weights_init=after_one[0],
                                        means_init=after_one[1], precisions_init=precisions),
                        data, sample_weight)
    if two is not None:
        check_step(two, x, w, after_one, covariance_type, reg_covar, shift, backend,
                   np.linalg.cholesky(dense))


@pytest.mark.parametrize("kind", INPUT_KINDS)
@settings(max_examples=examples(12))
@given(x=hostile_data(), k=st.sampled_from([1, 2, 3, 5, 30]),
       covariance_type=st.sampled_from(COVARIANCE_TYPES),
       spread=st.sampled_from([1e-4, 1e-2, 1.0]), seed=st.integers(0, 99), data=st.data())
def test_em_steps_equal_the_reference_on_hostile_data(kind, x, k, covariance_type, spread,
                                                      seed, data):
    w = data.draw(sample_weights(len(x)))
    check_two_steps(x, w, k, covariance_type, spread, seed, kind)


@pytest.mark.parametrize("kind", ["array-numpy", "array-numba", "chunks-numba"])
@settings(max_examples=examples(4), deadline=None)
@given(x=hostile_data(max_rows=400, min_features=153, max_features=170),
       k=st.sampled_from([1, 2, 3]), spread=st.sampled_from([1e-2, 1.0]),
       seed=st.integers(0, 99), data=st.data())
def test_wide_data_steps_equal_the_reference_on_hostile_data(kind, x, k, spread, seed, data):
    """More than 152 features, full covariances: the difference form one component at a time
    (BLAS's triangular product and rank-k update, on the numba backend too) on heavy tails,
    mixed scales and far rows."""
    w = data.draw(sample_weights(len(x)))
    check_two_steps(x, w, k, "full", spread, seed, kind)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@settings(max_examples=examples(12))
@given(x=hostile_data(max_rows=160, holes=True), k=st.sampled_from([1, 2, 3, 30]),
       covariance_type=st.sampled_from(COVARIANCE_TYPES),
       spread=st.sampled_from([1e-2, 1.0]), seed=st.integers(0, 99), data=st.data())
def test_em_steps_with_holes_equal_the_reference(backend, x, k, covariance_type, spread, seed,
                                                 data):
    w = data.draw(sample_weights(len(x)))
    check_two_steps(x, w, k, covariance_type, spread, seed, f"array-{backend}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["array-numba", "chunks-numba"])
@settings(max_examples=examples(6))
@given(x=hostile_data(max_rows=3000, max_features=5), k=st.sampled_from([100, 300]),
       covariance_type=st.sampled_from(COVARIANCE_TYPES),
       spread=st.sampled_from([1e-4, 1e-2]), seed=st.integers(0, 99))
def test_em_steps_with_hundreds_of_components_equal_the_reference(kind, x, k,
                                                                  covariance_type, spread,
                                                                  seed):
    check_two_steps(x, None, k, covariance_type, spread, seed, kind)


# ---------------------------------------------------------------------------------------------
# Scoring: far rows in the batch, every path


def scoring_batch(x, rng, far_exponents):
    """The rows of ``x`` with some replaced by rows far beyond them (10**e times their
    spread, e from ``far_exponents``, up to 1e155 whose squares overflow)."""
    batch = np.array(x, dtype=np.float64)
    spread = np.nanmax(np.abs(batch - np.nanmedian(batch, axis=0)), axis=0) + 1.0
    for e in far_exponents:
        row = rng.integers(0, len(batch))
        batch[row] = np.where(np.isnan(batch[row]), np.nan,
                              rng.choice([-1, 1], batch.shape[1]) * spread * 10.0 ** e)
    with np.errstate(over="ignore"):
        return batch.astype(x.dtype)


@contextlib.contextmanager
def scoring_path(model, path):
    """Score on ``path``: 'numpy', 'kernel' (the pruned kernel, whatever the size) or
    'torch' (tensors in, on their device)."""
    backend = {"numpy": "numpy", "kernel": "numba", "torch": "torch"}[path]
    previous = model.backend
    model.backend = backend
    patch = (mock.patch.object(_inference, "FUSED_INFERENCE_PAIRS", 0) if path == "kernel"
             else contextlib.nullcontext())
    try:
        with patch:
            yield (lambda rows: torch.as_tensor(rows)) if path == "torch" else (lambda r: r)
    finally:
        model.backend = previous


def reference_for(model, rows):
    """The reference's scores of ``rows`` under a fitted model: by the Cholesky factors of its
    ``covariances_``; for a float32 model, or one with a covariance whose condition number
    exceeds ``1e6``, by its ``precisions_cholesky_`` (what it scores with): the two are each
    other's inverse only to the rounding times the condition number, more than RTOL allows
    beyond that (the consistency of the two is a test of its own)."""
    k, d = model.means_.shape
    covariances = dense_covariances(model.covariances_, model.covariance_type, k, d)
    if model.means_.dtype == np.float32 or np.linalg.cond(covariances).max() > 1e6:
        return reference_of_params(model._params(), rows)
    return reference_of(model, rows)


def as_numpy(values):
    return values.cpu().numpy() if hasattr(values, "cpu") else np.asarray(values)


def check_scores(model, batch, ref, path, rtol):
    """Every scoring method of ``model`` on ``batch`` by ``path`` against ``ref``."""
    # What the scores' dtype holds (a float32 model's score below -3.4e38 rounds to -inf).
    finite = np.abs(ref["log_prob"]) <= np.finfo(model.means_.dtype).max
    tol = rtol * ref["scale"][finite]
    with scoring_path(model, path) as convert:
        rows = convert(batch)
        scores = as_numpy(model.score_samples(rows)).astype(np.float64)
        labels = as_numpy(model.predict(rows))
        proba = as_numpy(model.predict_proba(rows)).astype(np.float64)
        bic = model.bic(rows)
        aic = model.aic(rows)
    assert not np.isnan(scores).any()
    error = np.abs(scores[finite] - ref["log_prob"][finite])
    assert (error <= tol).all(), (np.max(error / ref["scale"][finite]), path)
    assert np.all(np.isneginf(scores[~finite]))  # -inf where every distance overflows
    clear = finite & (ref["margin"] > 4 * rtol * ref["scale"])
    np.testing.assert_array_equal(labels[clear], ref["labels"][clear])
    np.testing.assert_array_equal(proba[clear].argmax(axis=1), labels[clear])
    resp_error = np.abs(proba[finite] - ref["resp"][finite]).max(axis=1)
    assert (resp_error <= 4 * tol + 1e-6 * (batch.dtype == np.float32)).all()
    if np.isfinite(ref["log_prob"]).all() and np.isfinite(scores).all():
        total = ref["log_prob"].sum()
        allowance = 2 * rtol * ref["scale"].sum()
        n_parameters = model._n_parameters()
        assert abs(bic - (-2 * total + n_parameters * np.log(len(batch)))) <= allowance
        assert abs(aic - (-2 * total + 2 * n_parameters)) <= allowance
    else:
        assert bic == np.inf and aic == np.inf


SCORING_PATHS = ["numpy", "kernel"] + (["torch"] if torch is not None else [])


@pytest.mark.parametrize("path", SCORING_PATHS)
@settings(max_examples=examples(15))
@given(x=hostile_data(), k=st.sampled_from([1, 3, 30, 150]),
       covariance_type=st.sampled_from(COVARIANCE_TYPES), seed=st.integers(0, 2**32 - 1),
       far=st.lists(st.sampled_from([1.0, 3.0, 10.0, 60.0, 155.0]), max_size=3))
def test_scores_equal_the_reference_with_far_rows_in_the_batch(path, x, k, covariance_type,
                                                              seed, far):
    k = min(k, len(x) // 2)
    model = fit_or_refuse(GaussianMixture(k, covariance_type=covariance_type, max_iter=5,
                                          random_state=seed % 1000, reg_covar=1e-6), x)
    if model is None:
        return
    rng = np.random.default_rng(seed)
    batch = scoring_batch(x, rng, far if x.dtype == np.float64 else [e for e in far if e < 30])
    ref = reference_for(model, batch)
    check_scores(model, batch, ref, path, tolerances(x, path)[0])


@pytest.mark.parametrize("path", ["numpy", "kernel"])
@settings(max_examples=examples(10))
@given(x=hostile_data(holes=True), k=st.sampled_from([1, 3, 30]),
       covariance_type=st.sampled_from(COVARIANCE_TYPES), seed=st.integers(0, 2**32 - 1),
       far=st.lists(st.sampled_from([3.0, 10.0, 60.0]), max_size=2))
def test_scores_of_rows_with_holes_equal_the_marginal_reference(path, x, k, covariance_type,
                                                                seed, far):
    k = min(k, len(x) // 2)
    model = fit_or_refuse(GaussianMixture(k, covariance_type=covariance_type, max_iter=5,
                                          random_state=seed % 1000), x)
    if model is None:
        return
    batch = scoring_batch(x, np.random.default_rng(seed),
                          far if x.dtype == np.float64 else [e for e in far if e < 30])
    check_scores(model, batch, reference_for(model, batch), path, tolerances(x, path)[0])


@pytest.mark.parametrize("path", ["numpy", "kernel"])
@settings(max_examples=examples(10))
@given(x=hostile_data(), covariance_type=st.sampled_from(COVARIANCE_TYPES),
       seed=st.integers(0, 2**32 - 1))
def test_bayesian_scores_equal_the_reference_of_their_variational_parameters(
        path, x, covariance_type, seed):
    model = fit_or_refuse(BayesianGaussianMixture(n_components=min(6, len(x) // 2),
                                                  covariance_type=covariance_type, max_iter=5,
                                                  random_state=seed % 1000), x)
    if model is None:
        return
    batch = scoring_batch(x, np.random.default_rng(seed), [10.0])
    ref = reference_of_params(model._scoring_params(), batch)
    finite = np.isfinite(ref["log_prob"])
    with scoring_path(model, path):
        scores = model.score_samples(batch).astype(np.float64)
    error = np.abs(scores[finite] - ref["log_prob"][finite])
    assert (error <= tolerances(x, path)[0] * ref["scale"][finite]).all()


@pytest.mark.parametrize("path", SCORING_PATHS)
@settings(max_examples=examples(10))
@given(x=hostile_data(max_features=4), covariance_type=st.sampled_from(COVARIANCE_TYPES),
       seed=st.integers(0, 2**32 - 1))
def test_conditional_means_equal_the_reference(path, x, covariance_type, seed):
    """``conditional_mean`` (and so the E[r, g, b | x, y] render, which takes the kernel's
    responsibility-weighted sums) against the reference's responsibilities of the given
    features' marginal times each component's regression."""
    if x.shape[1] < 2 or x.dtype != np.float64:
        return
    model = fit_or_refuse(GaussianMixture(5, covariance_type=covariance_type, max_iter=5,
                                          random_state=seed % 1000), x)
    if model is None:
        return
    weights, means, _ = (np.asarray(a, dtype=np.float64) for a in
                         (model.weights_, model.means_, model.covariances_))
    covariances = dense_covariances(model.covariances_, covariance_type, *means.shape)
    given_ = np.array([0])
    rest = np.arange(1, x.shape[1])
    values = scoring_batch(x, np.random.default_rng(seed), [3.0])[:, given_]
    ref = reference_scores(weights, means[:, given_], covariances[:, given_][:, :, given_],
                           values)
    expected = np.zeros((len(values), len(rest)))
    for j in range(len(weights)):
        slope = covariances[j][np.ix_(rest, given_)] @ np.linalg.inv(
            covariances[j][np.ix_(given_, given_)])
        component = means[j, rest] + (values - means[j, given_]) @ slope.T
        expected += ref["resp"][:, j, None] * component
    if path == "torch":
        got = model.conditional_mean(given_, torch.as_tensor(values)).numpy()
    else:
        with scoring_path(model, path):
            got = conditional_mean(model._params(), given_, values, backend=model.backend)
    # In units of the spread of the rest's features: what a conditional mean is about.
    unit = np.sqrt(np.diagonal(covariances, axis1=1, axis2=2)[:, rest].max(axis=0))
    spread = np.abs(expected) / unit + 1.0
    assert (np.abs(got - expected) / unit <= 1e-8 * spread * ref["scale"][:, None]).all()


@settings(max_examples=examples(10))
@given(x=hostile_data(), covariance_type=st.sampled_from(COVARIANCE_TYPES),
       seed=st.integers(0, 2**32 - 1))
def test_covariances_and_precisions_are_each_others_inverse(x, covariance_type, seed):
    """What a fitted model reports as ``covariances_`` is the inverse of what it scores with
    (``precisions_cholesky_``) to the rounding times the condition number."""
    model = fit_or_refuse(GaussianMixture(5, covariance_type=covariance_type, max_iter=5,
                                          random_state=seed % 1000), x)
    if model is None:
        return
    k, d = model.means_.shape
    covariances = dense_covariances(model.covariances_, covariance_type, k, d)
    precisions = dense_covariances(model.precisions_, covariance_type, k, d)
    eps = np.finfo(model.means_.dtype).eps
    for c, p in zip(covariances, precisions):
        # Whitened, in the covariance's units: |L^-1 (C - P^-1) L^-T|.
        error = whitened_error(np.linalg.inv(p), c)
        assert error <= 64 * eps * entrywise_sensitivity(c) * np.linalg.cond(c) ** 0.5 + \
            64 * eps * np.linalg.cond(c)


@settings(max_examples=examples(6))
@given(x=hostile_data(max_rows=160))
def test_select_ranks_by_the_reference_criterion(x):
    """``select``'s table holds each fit's BIC, equal to the reference's BIC of that fit
    (with an integer ``random_state`` each entry is the corresponding single fit)."""
    if x.dtype != np.float64:
        return
    try:
        with quiet():
            best, table = select(x, n_components=[1, 2, 3], random_state=0, max_iter=5)
    except ValueError as exc:
        assert one_sentence(str(exc)), str(exc)
        return
    for record in table:
        model = fit_or_refuse(GaussianMixture(record["n_components"],
                                              covariance_type=record["covariance_type"],
                                              random_state=0, max_iter=5), x)
        ref = reference_for(model, x)
        if not np.isfinite(ref["log_prob"]).all():
            continue
        bic = -2 * ref["log_prob"].sum() + n_parameters(
            model.covariance_type, *model.means_.shape) * np.log(len(x))
        assert abs(record["score"] - bic) <= 2 * RTOL * ref["scale"].sum()
    assert table.best["score"] == min(r["score"] for r in table)


def test_the_issue_cases_are_exact():
    """The cases that found the defect (issue: heavy tails, a far row in a fit, a far row in
    a scoring batch), each at a tenth of its size."""
    rng = np.random.default_rng(0)
    n = 10_000
    income = np.column_stack([rng.lognormal(10, 2, n), rng.normal(40, 12, n)])
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [20, 20]], dtype=float)
    clusters = np.concatenate([rng.normal(c, 1.0, (n // 5, 2)) for c in centres])
    far = np.concatenate([clusters, [[1e10, 1e10]]])
    for x in (income, far):
        model = GaussianMixture(30, random_state=0, backend="numba").fit(x)
        ref = reference_of(model, x)
        assert abs(model.score(x) - ref["log_prob"].mean()) <= RTOL * ref["scale"].mean()
        assert abs(model.bic(x) - reference_bic(model, x)) <= 2 * RTOL * ref["scale"].sum()
        check_scores(model, x, ref, "kernel", RTOL)
    clean = GaussianMixture(30, random_state=0, backend="numba").fit(clusters)
    batch = clusters.copy()
    batch[n // 2] = 1e155
    check_scores(clean, batch, reference_of(clean, batch), "kernel", RTOL)


def reduced_covariances(covariances, covariance_type):
    """Dense (K, D, D) covariances as ``covariance_type`` holds them."""
    return {"full": covariances, "tied": covariances[0],
            "diag": np.stack([np.diag(c) for c in covariances]),
            "spherical": np.array([c[0, 0] for c in covariances])}[covariance_type]


def mixture_from_start(x, k, covariance_type, spread, seed, backend):
    """A fitted mixture with :func:`initial_parameters` of ``x`` (and those parameters,
    covariances dense)."""
    weights, means, covariances, _ = initial_parameters(x, k, covariance_type, spread, seed)
    model = GaussianMixture.from_params(weights, means,
                                        reduced_covariances(covariances, covariance_type),
                                        covariance_type=covariance_type, backend=backend)
    return model, weights, means, covariances


# 'numpy': the pass through a fit's plan (few pairs take it by default); 'numba': the kernel
# straight over the rows in their own coordinates (``_fitting.one_pass``).
@settings(max_examples=examples(25), deadline=None)
@given(x=hostile_data(), k=st.sampled_from([1, 2, 3]),
       covariance_type=st.sampled_from(COVARIANCE_TYPES),
       spread=st.sampled_from([1e-2, 1.0]), seed=st.integers(0, 99))
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_adaptation_with_no_relevance_equals_the_reference_em_step(backend, x, k,
                                                                   covariance_type, spread,
                                                                   seed):
    """``adapt(relevance_factor=0)`` is one EM step from the prior mixture: on heavy tails,
    mixed scales and far rows its parameters equal the reference's step."""
    x = np.asarray(x, dtype=np.float64)
    prior, weights, means, covariances = mixture_from_start(x, k, covariance_type, spread,
                                                            seed, backend)
    try:
        adapted = prior.adapt(x, relevance_factor=0.0, parameters="wmv")
    except ValueError as error:  # data beyond what a fit holds: refused as a fit refuses them
        assert one_sentence(str(error))
        return
    unit = np.ones(len(x))
    _, ref_w, ref_means, ref_cov = reference_em_step(x, unit, weights, means, covariances,
                                                     covariance_type, 1e-6)
    np.testing.assert_allclose(adapted.weights_, ref_w, rtol=1e-8, atol=1e-8 / k)
    fitted = dense_covariances(adapted.covariances_, covariance_type, k, x.shape[1])
    ref = reference_scores(weights, means, covariances, x)
    resolved = [j for j in range(k) if ref_w[j] >= 1e-9
                and 16 * EPS64 * entrywise_sensitivity(ref_cov[j]) <= 1e-7]
    moves = {j: mean_error(ref_means[j], means[j], ref_cov[j]) for j in resolved}
    for j in resolved:  # not the others: no weight, or beyond what the reference resolves
        # The moments are summed about the prior means and moved to the new ones, which
        # costs epsilons of the move squared; a tied covariance pools every component's
        # moments, and so their largest move. Unlike a fit's step (see check_step), nothing
        # is lost to a variance that shrinks: an adaptation's moments are exact relative to
        # the spread they measure (``KernelPass.exact_statistics``).
        moved = max(moves.values()) if covariance_type == "tied" else moves[j]
        levered = MOVED_EPSILONS * EPS64 * leverage(ref, x, unit, ref_means[j], j)
        assert mean_error(adapted.means_[j], ref_means[j], ref_cov[j]) <= 1e-7 * (1 + moved)
        assert whitened_error(fitted[j], ref_cov[j]) <= 1e-7 * (1 + moved) ** 2 + levered


@settings(max_examples=examples(25), deadline=None)
@given(x=hostile_data(), k=st.sampled_from([1, 2, 3]),
       covariance_type=st.sampled_from(COVARIANCE_TYPES),
       spread=st.sampled_from([1e-2, 1.0]), seed=st.integers(0, 99))
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_fisher_vectors_equal_the_reference_on_hostile_data(backend, x, k, covariance_type,
                                                           spread, seed):
    """Fisher vectors from the reference's responsibilities and moments about each mean, in
    each component's whitened coordinates (diagonal types: per feature), on heavy tails,
    mixed scales and far rows; data beyond float64's sums are refused in one sentence."""
    from gaussmix.features import fisher_vector

    x = np.asarray(x, dtype=np.float64)
    model = mixture_from_start(x, k, covariance_type, spread, seed, backend)[0]
    try:
        found = fisher_vector(model, x)
    except ValueError as error:
        assert one_sentence(str(error))
        return
    ref = reference_of(model, x)
    n, d = x.shape
    factors = dense_covariances(model.precisions_cholesky_, covariance_type, k, d)
    w = model.weights_
    parts, tolerances = [[(ref["resp"].mean(axis=0) - w) / np.sqrt(w)], [], []], []
    for j in range(k):
        g = ref["resp"][:, j]
        z = (x - model.means_[j]) @ factors[j]  # whitened about the mean: no cancellation
        with np.errstate(over="ignore", invalid="ignore"):
            z2 = np.where(g[:, None] > 0, z**2, 0.0)  # rows without responsibility add 0
        if covariance_type == "spherical":
            parts[2].append([-(g @ (z2.sum(axis=1) - d)) / (n * np.sqrt(2 * d * w[j]))])
        else:
            parts[2].append(-(g @ (z2 - 1)) / (n * np.sqrt(2 * w[j])))
        parts[1].append(g @ np.where(g[:, None] > 0, z, 0.0) / (n * np.sqrt(w[j])))
        # Each entry is a responsibility-weighted mean of terms as large as the rows'
        # squared whitened distances: exact to a few epsilons of that size.
        tolerances.append(1e-9 * (1 + g @ (ref["maha"][:, j] + 1) / n) / np.sqrt(w[j]))
    expected = np.concatenate([np.concatenate(p).ravel() for p in parts])
    per_component = np.array(tolerances)
    width = 1 if covariance_type == "spherical" else d
    atol = np.concatenate([per_component, np.repeat(per_component, d),
                           np.repeat(per_component, width)])
    assert np.all(np.abs(found - expected) <= atol + 1e-12)
