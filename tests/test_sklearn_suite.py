"""scikit-learn's own mixture tests, run against gaussmix's classes.

``sklearn.mixture.GaussianMixture`` is replaced by ``gaussmix.GaussianMixture`` while
scikit-learn's test module is imported (and restored at once), so its tests call gaussmix
wherever they name the estimator. Left out: the tests of scikit-learn's private helpers
(they never touch the estimator), the array-API tests (gaussmix takes numpy, Dask and torch
inputs through its own doors), and the deliberate differences the README states.
"""

import importlib

import numpy as np
import pytest
import sklearn.mixture

import gaussmix

PRIVATE_HELPERS = {
    "test_check_weights", "test_check_means", "test_check_precisions",
    "test_suffstat_sk_full", "test_suffstat_sk_tied", "test_suffstat_sk_diag",
    "test_gaussian_suffstat_sk_spherical", "test_compute_log_det_cholesky",
    "test_gaussian_mixture_log_probabilities", "test_gaussian_mixture_estimate_log_prob_resp",
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters",
    # These call the estimators' private _set_parameters, _check_parameters and _initialize.
    "test_gaussian_mixture_precisions_init", "test_compare_covar_type",
    "test_log_dirichlet_norm", "test_log_wishart_norm",
}
ARRAY_API = {"test_gaussian_mixture_array_api_compliance",
             "test_gaussian_mixture_raises_where_array_api_not_implemented"}
# The README's deliberate differences:
# - reg_covar=0 on collapsed data is repaired (with a RegularizationWarning), not refused;
# - k-means++ draws its seeds over the rows in lexicographic order (so that an integer weight
#   acts exactly like a repeated row, in any row order), so its clusters come in another order
#   than scikit-learn's KMeans, and precisions computed by hand from KMeans's labels pair with
#   other means (tests/test_mixture.py checks the same with gaussmix's own k-means).
DIFFERENCES = {"test_regularisation", "test_gaussian_mixture_precisions_init_diag"}
# - a float32 model's score is the float64 mean of its rows' log-densities, not their float32
#   mean: the two differ in the seventh digit.
FLOAT32_DIFFERENCES = {"test_score"}
LEFT_OUT = PRIVATE_HELPERS | ARRAY_API | DIFFERENCES


def _import_against_gaussmix(module_name, replacements):
    """Import a scikit-learn test module with ``replacements`` in ``sklearn.mixture``."""
    originals = {name: getattr(sklearn.mixture, name) for name in replacements}
    try:
        for name, cls in replacements.items():
            setattr(sklearn.mixture, name, cls)
        return importlib.import_module(module_name)
    finally:
        for name, cls in originals.items():
            setattr(sklearn.mixture, name, cls)


_gaussian = _import_against_gaussmix("sklearn.mixture.tests.test_gaussian_mixture",
                                     {"GaussianMixture": gaussmix.GaussianMixture})
assert _gaussian.GaussianMixture is gaussmix.GaussianMixture

_bayesian = _import_against_gaussmix(
    "sklearn.mixture.tests.test_bayesian_mixture",
    {"GaussianMixture": gaussmix.GaussianMixture,
     "BayesianGaussianMixture": gaussmix.BayesianGaussianMixture})
assert _bayesian.BayesianGaussianMixture is gaussmix.BayesianGaussianMixture

for _module, _prefix in ((_gaussian, ""), (_bayesian, "bayesian_")):
    for _name, _test in vars(_module).items():
        if _name.startswith("test_") and callable(_test) and _name not in LEFT_OUT:
            globals()[_name if not _prefix or _name.startswith("test_bayesian")
                      else "test_" + _prefix + _name[5:]] = _test


@pytest.fixture(params=[np.float32, np.float64])
def global_dtype(request):
    if request.param == np.float32 and request.node.originalname in FLOAT32_DIFFERENCES:
        pytest.skip("a deliberate difference in float32 (see FLOAT32_DIFFERENCES)")
    return request.param


@pytest.fixture(params=[0, 42])
def global_random_seed(request):
    return request.param
