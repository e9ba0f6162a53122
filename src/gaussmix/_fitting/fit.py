"""A fit, planned once and run on the one loop that every kind of input shares.

An input adapter (``inputs``) turns the user's data into prepared training data: in memory
(:class:`~gaussmix._data.chunks.FitData`), streamed
(:class:`~gaussmix._data.streams.StreamData`), a Dask array or a torch tensor on a device.
:func:`plan_fit` then resolves, once, everything the fit needs from it: the backend, the source
the E-steps walk, the expectation function (the seam), the shift and variance of the working
coordinates, the jitter floor, the chunk size and the dtype. Initialisation (``init``), the EM
loop (``loop.run_em``), the M-step and the best-of-``n_init`` choice below are the same for all
of them; a backend supplies only the expectation.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .._data import backends
from .._data.chunks import FitData
from .._data.streams import StreamData, sample_size
from .._mathematics.em import MaximumLikelihood, Params, m_step, params_from_precision_cholesky
from .loop import run_em
from .init import initial_params, kmeans, stats_of_labels
from .._foundations.validation import check_scale
from .._kernels import compile as stamp


@dataclass(frozen=True)
class FitPlan:
    """What every E-step, initialisation and restart of one fit shares, resolved once.

    Attributes
    ----------
    data : FitData, StreamData, DaskData or TorchData
        The prepared training data (sizes, shift, variance, dtype).
    backend : {'numpy', 'numba', 'torch'}
    source : iterable of (x, w) chunks
        What the expectation and the initialisation walk, in working coordinates.
    expectation : callable (source, params) -> Stats
        The seam: the map-reduce of E-steps over ``source``.
    chunk_size : int
        Rows per E-step chunk.
    reg_covar : float
        Added to every covariance's diagonal.
    jitter_floor : float
        Least extra diagonal for a covariance that fails its factorisation.
    compile_after : bool
        Whether the fit ends by starting the numba kernels' background compilation (it ran
        on numpy because they were not compiled yet; ``_fitting.warmup``).
    """

    data: object
    backend: str
    source: object
    expectation: Callable
    chunk_size: int
    reg_covar: float
    jitter_floor: float
    compile_after: bool = False

    @property
    def shift(self):
        """Origin of the working coordinates (a robust centre of the data, see
        ``chunks.robust_centre``), shape (D,)."""
        return self.data.shift

    @property
    def variance(self):
        return self.data.variance

    @property
    def dtype(self):
        """The numpy dtype of the fitted parameters (the data's float dtype)."""
        return self.data.dtype

    @property
    def n_features(self):
        return self.data.n_features

    def maximum_likelihood(self):
        """EM's update (the M-step) with the plan's regularisation."""
        return MaximumLikelihood(self.reg_covar, self.jitter_floor)

    def threads(self):
        """Context for the fit: BLAS on one thread while numba's kernels use the cores (but
        for data wider than ``blas.LATENCY_BOUND_ROWS``, whose E-steps take BLAS's large
        products, see ``numba_backend.fused_expectation``)."""
        if self.backend == "numba":
            return backends.kernel_threads_for(self.n_features)
        return contextlib.nullcontext()

    def initialisation_rows(self, n_components, random_state):
        """The rows an initialisation clusters: all of them when they are in memory, else a
        fresh sample moved to the host (streams, Dask, devices)."""
        if self.data.held_in_memory:
            return self.source
        return self.data.sample(sample_size(n_components), random_state)


def plan_fit(data, n_components, *, backend=None, chunk_size=None, reg_covar=0.0):
    """Resolve, once, how a fit with ``n_components`` runs on prepared ``data``.

    Parameters
    ----------
    data : FitData, StreamData, DaskData or TorchData
    n_components : int
    backend : {None, 'auto', 'numpy', 'numba', 'torch'}
        The estimator's ``backend``; the data decide what it means for them
        (``backend_for``): data on a device always take 'torch', and a Dask array runs the
        backend it was prepared with in each block.
    chunk_size : int or None
        Rows per chunk; None lets the data choose (``chunk_rows``).
    reg_covar : float

    Returns
    -------
    FitPlan
    """
    check_scale(data.variance, data.dtype)
    chosen = data.backend_for(backend, n_components)
    chunk = int(data.chunk_rows(n_components) if chunk_size is None else chunk_size)
    expectation = data.expectation_for(chosen)
    n_pairs = data.e_step_pairs(n_components)
    compile_after = chosen == "numpy" and backends.kernels_pending(backend, n_pairs,
                                                                   bool(data.n_missing))
    if compile_after and n_pairs >= backends.HANDOVER_PAIRS and \
            isinstance(data, (FitData, StreamData)):
        start_compiling()
        expectation = Handover(data, chunk, expectation)
        compile_after = False
    return FitPlan(
        data=data,
        backend=chosen,
        source=data.fit_source(chosen, chunk),
        expectation=expectation,
        chunk_size=chunk,
        reg_covar=float(reg_covar),
        jitter_floor=data.jitter_floor(reg_covar),
        compile_after=compile_after,
    )


def start_compiling():
    """Start the background compilation unless it is done or under way; returns whether one
    is running (False where the cache folder cannot be written: kernels then compile on
    first use, as before)."""
    claim = stamp.claim_compilation()
    if claim != "claimed":
        return claim == "elsewhere"
    subprocess.Popen([sys.executable, "-m", "gaussmix._fitting.warmup", "--background"],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    return True


class Handover:
    """An expectation that runs numpy's E-step until the numba kernels have compiled in the
    background (``_fitting.warmup``), then theirs: a first fit never waits for the compiler.
    A numpy pass that the kernels' arrival interrupts between two chunks is run again by
    the kernels (a numpy E-step on a large picture takes tens of seconds on 2 cores).

    Parameters
    ----------
    data : FitData or StreamData
    chunk_size : int
    numpy_expectation : callable (source, params) -> Stats
    """

    def __init__(self, data, chunk_size, numpy_expectation):
        self.data = data
        self.chunk_size = chunk_size
        self.numpy_expectation = numpy_expectation
        self.fast = None  # (source, expectation) of the kernels, once compiled
        self.handed_over_at = None  # how many E-steps ran before the kernels took over
        self.n_calls = 0

    def kernels_ready(self):
        return stamp.kernels_ready(bool(self.data.n_missing))

    def __call__(self, source, params):
        if self.fast is None and self.kernels_ready():
            self._hand_over()
        if self.fast is None:
            try:
                stats = self.numpy_expectation(_Watched(source, self.kernels_ready), params)
                self.n_calls += 1
                return stats
            except _KernelsReady:
                self._hand_over()
        self.n_calls += 1
        fast_source, fast_expectation = self.fast
        with backends.kernel_threads():
            return fast_expectation(fast_source, params)

    def _hand_over(self):
        self.fast = (self.data.fit_source("numba", self.chunk_size),
                     self.data.expectation_for("numba"))
        self.handed_over_at = self.n_calls


class _KernelsReady(Exception):
    """The kernels arrived during a numpy pass."""


class _Watched:
    """A source whose passes stop (``_KernelsReady``) between two chunks once ``ready()``;
    its other attributes are the source's."""

    def __init__(self, source, ready):
        self.source = source
        self.ready = ready

    def __iter__(self):
        for chunk in self.source:
            if self.ready():
                raise _KernelsReady
            yield chunk

    def __getattr__(self, name):
        return getattr(self.source, name)


@dataclass(frozen=True)
class InitSpec:
    """How initial parameters are chosen.

    Attributes
    ----------
    n_components : int
    covariance_type : str
    method : {'kmeans', 'k-means++', 'random', 'random_from_data'}
    weights, means, precisions_cholesky : ndarray or None
        The user's initial values (means in data coordinates), validated.
    """

    n_components: int
    covariance_type: str
    method: str
    weights: np.ndarray | None = None
    means: np.ndarray | None = None
    precisions_cholesky: np.ndarray | None = None

    @property
    def all_given(self):
        return (self.weights is not None and self.means is not None
                and self.precisions_cholesky is not None)

    def with_user_values(self, params, shift):
        """``params`` (working coordinates) with the user's initial values put in."""
        weights = params.weights if self.weights is None else self.weights
        means = params.means if self.means is None else self.means - shift
        if self.precisions_cholesky is None:
            return Params(weights, means, params.precisions_cholesky, params.covariances,
                          self.covariance_type)
        return params_from_precision_cholesky(weights, means, self.precisions_cholesky,
                                              self.covariance_type)


def initial_starts(plan, spec, random_state, n_init):
    """One zero-argument function per initialisation, each returning starting
    :class:`~gaussmix._mathematics.em.Params` in working coordinates.

    Every start draws from the one ``random_state`` in turn, so that restarts differ and a
    seed reproduces them all.
    """
    if spec.all_given:
        start = params_from_precision_cholesky(spec.weights, spec.means - plan.shift,
                                               spec.precisions_cholesky, spec.covariance_type)
        return [lambda: start] * n_init

    def start():
        rows = plan.initialisation_rows(spec.n_components, random_state)
        params = initial_params(rows, spec.n_components, spec.covariance_type, spec.method,
                                random_state, reg_covar=plan.reg_covar,
                                jitter_floor=plan.jitter_floor, variance=plan.variance)
        return spec.with_user_values(params, plan.shift)

    return [start] * n_init


def warm_start(plan, params):
    """The single start of a warm fit: ``params`` (data coordinates) in working ones."""
    return [lambda: params.shifted(-plan.shift)]


def kmeans_clusterings(plan, n_components, random_state, n_init):
    """The ``n_init`` k-means clusterings a 'kmeans' initialisation would compute, to share
    between fits that differ only in their covariance type (model selection)."""
    return [kmeans(plan.source, n_components, random_state, variance=plan.variance)
            for _ in range(n_init)]


def starts_from_clusterings(plan, clusterings, spec):
    """Starts from precomputed k-means ``(labels, centres)``, as :func:`initial_starts`
    derives them."""
    def make(labels, centres):
        def start():
            stats = stats_of_labels(plan.source, labels, centres, spec.covariance_type)
            return m_step(stats, plan.reg_covar, plan.jitter_floor, reseed=False)[0]

        return start

    return [make(labels, centres) for labels, centres in clusterings]


class Reporter:
    """Verbosity (as scikit-learn prints it) and the user's per-iteration callback."""

    def __init__(self, verbose=0, verbose_interval=10, callback=None, max_iter=0,
                 progress=tuple):
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.callback = callback
        self.max_iter = max_iter
        # What the callback receives, made from (init, iteration, max_iter, lower_bound,
        # change, params): the estimators' FitProgress.
        self.progress = progress
        self._init_start = self._iter_start = 0.0

    def begin(self, init):
        if self.verbose:
            print(f"Initialization {init}")
            self._init_start = self._iter_start = time.perf_counter()

    def for_init(self, init, shift):
        """What ``run_em`` calls after each iteration of initialisation ``init`` (or None);
        ``shift``: the origin of the working coordinates."""
        if not self.verbose and self.callback is None:
            return None

        def report(n_iter, lower_bound, change, params):
            if self.verbose:
                self._iteration(n_iter, change)
            if self.callback is not None:
                self.callback(self.progress((init, n_iter, self.max_iter, lower_bound,
                                             change, params.shifted(shift))))

        return report

    def _iteration(self, n_iter, change):
        if n_iter % self.verbose_interval:
            return
        if self.verbose == 1:
            print(f"  Iteration {n_iter}")
        else:
            now = time.perf_counter()
            print(f"  Iteration {n_iter}\t time lapse {now - self._iter_start:.5f}s\t "
                  f"ll change {change:.5f}")
            self._iter_start = now

    def end(self, result):
        if not self.verbose:
            return
        status = "converged" if result.converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {status}.")
        else:
            elapsed = time.perf_counter() - self._init_start
            print(f"Initialization {status}. time lapse {elapsed:.5f}s\t lower bound "
                  f"{result.lower_bound:.5f}.")


def fit_best(plan, starts, *, tol, max_iter, reporter=None, lower_bound=-np.inf, update=None):
    """EM from each start on the plan's data; the run with the highest lower bound.

    ``starts`` return :class:`~gaussmix._mathematics.em.Params` or ``(params, posterior)`` pairs;
    ``update`` is what follows each E-step (default: the plan's maximum-likelihood M-step);
    ``lower_bound``: where each run's first change is measured from (a warm start's
    previous bound; see ``loop.run_em``).

    Returns
    -------
    EMResult
        With ``params`` mapped back to data coordinates.
    """
    reporter = reporter or Reporter()
    best = None
    with plan.threads():
        for init, make_start in enumerate(starts):
            reporter.begin(init)
            start = make_start()
            params, posterior = start if isinstance(start, tuple) else (start, None)
            result = run_em(plan.source, params, update or plan.maximum_likelihood(),
                            tol=tol, max_iter=max_iter, expectation=plan.expectation,
                            on_iteration=reporter.for_init(init, plan.shift),
                            lower_bound=lower_bound, posterior=posterior)
            reporter.end(result)
            if best is None or result.lower_bound > best.lower_bound:
                best = result
    best.params = best.params.shifted(plan.shift)
    if plan.compile_after:
        start_compiling()
    return best


def plan_statistics(plan, params):
    """Statistics of all the plan's rows under ``params`` (data coordinates), with their
    centres and worst rows in data coordinates: what :meth:`partial_fit` blends in."""
    with plan.threads():
        stats = plan.expectation(plan.source, params.shifted(-plan.shift))
    return stats.translated(plan.shift)
