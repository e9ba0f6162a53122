"""Model selection over numbers of components and covariance types by BIC or AIC."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ._foundations import covariance as cov
from ._fitting.fit import kmeans_clusterings, plan_fit
from ._data.inputs import input_for
from ._foundations.validation import check_choice, check_random_state
from .mixture import GaussianMixture

CRITERIA = ("bic", "aic")


@dataclass(frozen=True)
class SelectionTable:
    """One record per (n_components, covariance_type) fitted by :func:`select`.

    Attributes
    ----------
    criterion : {'bic', 'aic'}
        Lower is better (scikit-learn's sign convention; mclust reports the negative).
    records : tuple of dict
        Keys: ``n_components``, ``covariance_type``, ``score`` (the criterion),
        ``log_likelihood`` (weighted total), ``n_parameters``, ``converged``, ``n_iter``.
    """

    criterion: str
    records: tuple

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, index):
        return self.records[index]

    @property
    def best(self):
        """The record with the lowest score."""
        return min(self.records, key=lambda r: r["score"])

    def grid(self):
        """Scores as a 2-D array: rows are numbers of components, columns covariance types.

        Returns
        -------
        n_components : list of int
        covariance_types : list of str
        scores : ndarray of shape (len(n_components), len(covariance_types))
        """
        ks = sorted({r["n_components"] for r in self.records})
        types = [t for t in cov.COVARIANCE_TYPES if any(r["covariance_type"] == t for r in self)]
        scores = np.full((len(ks), len(types)), np.nan)
        for r in self.records:
            scores[ks.index(r["n_components"]), types.index(r["covariance_type"])] = r["score"]
        return ks, types, scores

    def __str__(self):
        ks, types, scores = self.grid()
        best = self.best
        lines = [f"{self.criterion.upper()} (lower is better)",
                 "   K " + "".join(f"{t:>14s}" for t in types)]
        for i, k in enumerate(ks):
            cells = []
            for j, t in enumerate(types):
                mark = "*" if (k, t) == (best["n_components"], best["covariance_type"]) else " "
                cells.append(f"{scores[i, j]:13.2f}{mark}")
            lines.append(f"{k:4d} " + "".join(cells))
        return "\n".join(lines)

    def to_pandas(self):
        """The records as a pandas DataFrame (pandas must be installed)."""
        import pandas as pd

        return pd.DataFrame.from_records(list(self.records))


def select(X, n_components=range(1, 11), covariance_types=cov.COVARIANCE_TYPES, criterion="bic",
           sample_weight=None, **fit_kwargs):
    """Fit a grid of mixtures and return the best by BIC or AIC, with the whole table.

    The data (any input :meth:`GaussianMixture.fit` takes) are validated and centred once,
    and for data held in memory with ``init_params='kmeans'`` (the default)
    the k-means clustering of each number of components is computed once and shared by every
    covariance type. With an integer ``random_state`` every fit equals
    ``GaussianMixture(k, covariance_type=t, **fit_kwargs).fit(X)``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int or iterable of int, default=range(1, 11)
    covariance_types : iterable of str, default=('full', 'tied', 'diag', 'spherical')
    criterion : {'bic', 'aic'}, default='bic'
    sample_weight : array-like of shape (n_samples,), optional
    **fit_kwargs
        Other :class:`GaussianMixture` parameters (``random_state``, ``n_init``, ``tol``...).

    Returns
    -------
    best_model : GaussianMixture
        The fitted model with the lowest criterion.
    table : SelectionTable

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(0, 1, (200, 2)), rng.normal(8, 1, (200, 2))])
    >>> best, table = select(X, n_components=range(1, 4), random_state=0)
    >>> best.n_components, best.covariance_type
    (2, 'spherical')
    """
    check_choice(criterion, "criterion", CRITERIA)
    ks = [int(n_components)] if np.ndim(n_components) == 0 else [int(k) for k in n_components]
    types = list(covariance_types)
    if not ks or not types:
        raise ValueError("n_components and covariance_types must each name at least one option.")
    for t in types:
        check_choice(t, "covariance_types entry", cov.COVARIANCE_TYPES)
    for key, own in (("n_components", "n_components"), ("covariance_type", "covariance_types")):
        if key in fit_kwargs:
            raise ValueError(f"Pass {key} through select's own argument {own} (for example "
                             f"select(X, {own}=[...])), not as a fit option.")

    template = GaussianMixture(max(ks), covariance_type=types[0], **fit_kwargs)
    template._check_parameters()
    data, names = input_for(X).prepare(X, sample_weight, max(ks), template.backend,
                                       template.chunk_size)
    shared_kmeans = template.init_params == "kmeans" and all(
        fit_kwargs.get(p) is None for p in ("weights_init", "means_init", "precisions_init")
    ) and not template.warm_start and data.held_in_memory

    best_model, best_score, records = None, math.inf, []
    for k in ks:
        if k < 1:
            raise ValueError(f"n_components must be positive, got {k}.")
        clusterings = _kmeans_runs(template, data, k) if shared_kmeans else None
        for t in types:
            model = GaussianMixture(k, covariance_type=t, **fit_kwargs)
            model._check_parameters()
            model._fit_prepared(data, names, clusterings)
            log_likelihood, total_weight = model._log_likelihood(X, sample_weight)
            n_params = model._n_parameters()
            penalty = n_params * math.log(total_weight) if criterion == "bic" else 2 * n_params
            score = -2.0 * log_likelihood + penalty
            records.append(dict(n_components=k, covariance_type=t, score=float(score),
                                log_likelihood=float(log_likelihood), n_parameters=n_params,
                                converged=bool(model.converged_), n_iter=int(model.n_iter_)))
            if score < best_score:
                best_model, best_score = model, score
    return best_model, SelectionTable(criterion, tuple(records))


def _kmeans_runs(template, data, k):
    """The ``n_init`` k-means clusterings a fit with ``k`` components would compute."""
    plan = plan_fit(data, k, backend=template.backend, chunk_size=template.chunk_size,
                    reg_covar=float(template.reg_covar))
    with warnings.catch_warnings(), plan.threads():
        warnings.simplefilter("ignore")
        return kmeans_clusterings(plan, k, check_random_state(template.random_state),
                                  template.n_init)
