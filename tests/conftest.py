import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def make_blobs(n_per=100, centers=((0, 0, 0), (6, 0, 0), (0, 6, 3)), scale=(1.0, 0.5, 2.0), seed=0):
    """Well-separated Gaussian blobs with anisotropic spread."""
    rng = np.random.RandomState(seed)
    parts = [rng.randn(n_per, len(c)) * s * np.array([1.0, 0.6, 1.4])[: len(c)] + c
             for c, s in zip(centers, scale)]
    return np.concatenate(parts)


@pytest.fixture
def blobs():
    return make_blobs()


@pytest.fixture(params=COVARIANCE_TYPES)
def covariance_type(request):
    return request.param
