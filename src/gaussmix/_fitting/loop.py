"""The EM loop every fit shares: E-steps (the seam where backends plug in) and an update
(maximum likelihood or variational) until the bound stops changing."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from .._foundations.blas import small_matrix_threads
from .._mathematics.em import Params, expanded_form_pays, expectation


@dataclass
class EMResult:
    """Outcome of one EM run."""

    params: Params
    lower_bound: float
    lower_bounds: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    n_reseeded: int = 0
    n_regularized: int = 0
    max_jitter: float = 0.0
    reseed_iterations: list = field(default_factory=list)
    posterior: object = None



def run_em(source, params, update, *, tol, max_iter, expectation=expectation,
           on_iteration=None, lower_bound=-np.inf, posterior=None):
    """Iterate E-steps and ``update`` until the bound changes by less than ``tol``.

    Parameters
    ----------
    source : iterable of (x, w) chunks
        Re-iterable; each pass yields float64 chunks in working coordinates.
    params : Params
        Initial parameters.
    update : callable (stats, params) -> Step
        What follows each E-step: :class:`MaximumLikelihood` for EM, a variational update
        for a Bayesian mixture (``variational``).
    tol : float
        Convergence threshold on the change of the lower bound.
    max_iter : int
        Iterations at most; 0 returns ``params`` unchanged.
    expectation : callable (source, params) -> Stats
        The map-reduce of E-steps: the seam where backends plug in.
    on_iteration : callable (n_iter, lower_bound, change), optional
        Called after every iteration (verbosity, progress bars).
    lower_bound : float
        The bound the first iteration's change is measured from: a warm start continues
        from the previous fit's, so that repeated short fits detect convergence (as in
        scikit-learn).
    posterior : object, optional
        The update's state for ``params`` (kept when ``max_iter`` is 0).

    Returns
    -------
    EMResult
        ``lower_bound`` as the update defines it (for EM: the weighted mean log-likelihood
        of the parameters before the last M-step, as in scikit-learn).
    """
    result = EMResult(params=params, lower_bound=lower_bound, posterior=posterior)
    with _loop_threads(params):
        _iterate(result, source, update, tol, max_iter, expectation, on_iteration)
    return result


def _loop_threads(params):
    """BLAS on one thread for a whole loop whose E-steps take the difference form on small
    matrices (taken once here, each step's own limit costs nothing; see ``blas``)."""
    k, d = params.means.shape
    if expanded_form_pays(k, d, params.covariance_type):
        return contextlib.nullcontext()
    return small_matrix_threads(d)


def _iterate(result, source, update, tol, max_iter, expectation, on_iteration):
    """:func:`run_em`'s iterations, updating ``result`` in place."""
    for n_iter in range(1, max_iter + 1):
        stats = expectation(source, result.params)
        step = update(stats, result.params)
        del stats  # not held through the next E-step (wide data: K D^2 values)
        change = step.lower_bound - result.lower_bound
        result.params = step.params
        result.posterior = step.posterior
        result.lower_bound = step.lower_bound
        result.lower_bounds.append(step.lower_bound)
        result.n_iter = n_iter
        result.n_reseeded += step.report.n_reseeded
        result.n_regularized += step.report.n_regularized
        result.max_jitter = max(result.max_jitter, step.report.max_jitter)
        if step.report.n_reseeded:
            result.reseed_iterations.append(n_iter)
        if on_iteration is not None:
            on_iteration(n_iter, step.lower_bound, change, step.params)
        if abs(change) < tol:
            result.converged = True
            break
