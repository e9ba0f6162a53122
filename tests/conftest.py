import os
import warnings

# Kernels compile in this process on first use, so that every test run takes the same path
# (a fit would otherwise run numpy while they compile in the background; tests/backends/
# test_warmup.py tests that).
os.environ.setdefault("GAUSSMIX_COMPILE", "foreground")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# The same examples on every run (a test run is reproducible and cannot flake); set
# HYPOTHESIS_EXPLORE=1 (and HYPOTHESIS_MAX_EXAMPLES) to search afresh.
settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=not os.environ.get("HYPOTHESIS_EXPLORE"),
)
settings.load_profile("ci")

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

# The torch device of the tensor tests: ``python -m pytest --device cuda`` on a GPU machine.
TORCH_DEVICE = ["cpu"]


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu",
                     help="torch device for the tensor tests (cpu, cuda, cuda:1, ...)")


def pytest_configure(config):
    TORCH_DEVICE[0] = config.getoption("--device")


def make_blobs(n_per=100, centers=((0, 0, 0), (6, 0, 0), (0, 6, 3)), scale=(1.0, 0.5, 2.0), seed=0):
    """Well-separated Gaussian blobs with anisotropic spread."""
    rng = np.random.RandomState(seed)
    parts = [rng.randn(n_per, len(c)) * s * np.array([1.0, 0.6, 1.4])[: len(c)] + c
             for c, s in zip(centers, scale)]
    return np.concatenate(parts)


FITTED_PARAMS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def identity_start(X, k, covariance_type, seed=0):
    """Initial parameters for ``k`` components: random rows as means, equal weights, identity
    precisions (in the shape of ``covariance_type``)."""
    rng = np.random.RandomState(seed)
    d = X.shape[1]
    prec = {"full": np.tile(np.eye(d), (k, 1, 1)), "tied": np.eye(d), "diag": np.ones((k, d)),
            "spherical": np.ones(k)}[covariance_type]
    means = X[rng.choice(len(X), k, replace=False)]
    return dict(weights_init=np.full(k, 1.0 / k), means_init=means, precisions_init=prec)


def assert_same_fit(a, b, rtol=1e-10):
    """The fitted parameters of ``a`` equal those of ``b`` to ``rtol`` (relative norms)."""
    for name in FITTED_PARAMS:
        x, y = getattr(a, name), getattr(b, name)
        assert np.linalg.norm(x - y) <= rtol * np.linalg.norm(y), name


def fit_quietly(model, X, **kw):
    """``model.fit(X, **kw)`` without ConvergenceWarnings (fits with tol=0 never converge)."""
    from gaussmix.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, **kw)


@pytest.fixture
def blobs():
    return make_blobs()


@pytest.fixture(params=COVARIANCE_TYPES)
def covariance_type(request):
    return request.param
