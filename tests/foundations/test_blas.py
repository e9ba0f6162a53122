"""BLAS's one-thread limit (``_blas``): nested and concurrent users share it, inside it BLAS
runs one thread, and the last to leave gives BLAS back its own setting."""

import threading

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from gaussmix._foundations import blas as _blas


def blas_threads():
    """The thread counts of the BLAS libraries gaussmix limits."""
    return [lib["num_threads"] for lib in _blas._controller().select(user_api="blas").info()]


@pytest.fixture
def two_threads():
    """BLAS on two threads for the test (whatever the machine), restored after."""
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        assert before and all(n == 2 for n in before)
        yield before


def test_nested_and_concurrent_limits_share_one_and_restore_blas(two_threads):
    """Threads that fit at once under a fit of the main thread's (threadpoolctl lets one
    thread at a time set OpenBLAS's process-wide count: here the main thread): none lifts the
    limit while another holds it, and the last to leave restores BLAS's own count."""
    inside, barrier = [], threading.Barrier(4)

    def user():
        with _blas.one_blas_thread():
            with _blas.small_matrix_threads(10):
                barrier.wait(timeout=30)  # all four hold the limit at once
                inside.append(blas_threads())
                barrier.wait(timeout=30)  # then leave in any order
            inside.append(blas_threads())

    with _blas.one_blas_thread():
        assert all(n == 1 for n in blas_threads())
        threads = [threading.Thread(target=user) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(inside) == 8 and all(n == 1 for counts in inside for n in counts)
        assert all(n == 1 for n in blas_threads())  # the threads' exits kept the main's limit
    assert blas_threads() == two_threads


def test_large_matrices_keep_blas_threads(two_threads):
    with _blas.small_matrix_threads(_blas.LATENCY_BOUND_ROWS + 1):
        assert blas_threads() == two_threads


def test_a_wide_fit_leaves_blas_as_it_found_it(two_threads):
    from gaussmix import GaussianMixture

    x = np.random.RandomState(0).randn(300, 200)
    GaussianMixture(2, covariance_type="full", max_iter=3, random_state=0).fit(x)
    assert blas_threads() == two_threads
