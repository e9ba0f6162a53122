"""Initial parameters: k-means, k-means++, random responsibilities, random rows.

Every method produces a hard or soft assignment chunk by chunk, turns it into
:class:`~gaussmix._foundations.stats.Stats` and runs one M-step, exactly as scikit-learn
derives its initial parameters from initial responsibilities. Nothing here allocates an (N, K)
array.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.spatial import cKDTree

from .._data.backends import kernels_usable
from .._foundations.covariance import second_moments_from_packed
from .._mathematics.em import m_step, stats_from_labels, stats_from_resp
from .._foundations.stats import Stats

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")

# Lloyd iterations stop when the total squared centre shift falls below this fraction of the
# data's mean variance (scikit-learn's KMeans criterion) or after KMEANS_MAX_ITER passes: EM
# refines the clusters anyway, so the initialisation need not run to the end.
KMEANS_TOL = 1e-4
KMEANS_MAX_ITER = 10

# k-means++ seeding costs rows x clusters x trials distance evaluations; above this many
# (row, cluster) pairs it runs on a weighted sample of max(SEED_ROWS_PER_CLUSTER * K,
# SEED_PAIRS / K) rows.
SEED_PAIRS = 20_000_000
SEED_ROWS_PER_CLUSTER = 16

# Lloyd's assignment: brute force (vectorised over centres) up to this many centres, a k-d
# tree above, when the dimension is at most KDTREE_MAX_DIM; matrix products otherwise.
BRUTE_FORCE_MAX_K = 64
KDTREE_MAX_DIM = 8
# Rows per block of the numpy fallbacks (bounds the (rows, centres) distance blocks).
BLOCK_ROWS = 8192


def _kernels():
    """The numba k-means kernels, or None when numba is not installed or its kernels are
    still compiling (``_fitting.warmup``)."""
    if not kernels_usable():
        return None
    from .._kernels import kmeans as kmeans_kernels  # imports numba

    return kmeans_kernels


def working_rows(source):
    """All rows of a source in working coordinates, as one float64 array (N, D).

    A tiled source already holds one; an array source is converted once (O(N D) memory).
    """
    rows = getattr(source, "x", None)
    if rows is not None:
        return rows
    if source.n_rows == 0:
        return np.empty((0, source.n_features))
    return np.ascontiguousarray(np.concatenate([x for x, _ in source]))


def _sq_distances(x, centers, center_sq):
    """Squared Euclidean distances (n, M) by the matrix-product expansion, clipped at 0."""
    d2 = np.einsum("ij,ij->i", x, x)[:, np.newaxis] - 2.0 * (x @ centers.T) + center_sq
    return np.maximum(d2, 0.0, out=d2)


def _blocks(n_rows):
    return [(s, min(s + BLOCK_ROWS, n_rows)) for s in range(0, n_rows, BLOCK_ROWS)]


class _NearestCentre:
    """Each row's squared distance to its nearest chosen centre, and k-means++'s draws of
    rows in proportion to it (weighted). Rows stay in the caller's order.

    Parameters
    ----------
    x : ndarray of shape (N, D), float64
    w : ndarray of shape (N,)
    """

    def __init__(self, x, w):
        self.x = x
        self.w = w
        self.kernels = _kernels()
        self.xt = self.kernels.transposed(x) if self.kernels is not None else None
        self.closest = np.full(len(x), np.inf)
        self.block_mass = None  # numba: mass per block of rows, for draws without a cumsum

    def add(self, center):
        """Take ``center`` (D,) among the chosen centres."""
        if self.kernels is not None:
            self.block_mass = self.kernels.update_closest(self.xt, self.w, center, self.closest)
            return
        for s, e in _blocks(len(self.x)):
            np.minimum(self.closest[s:e], ((self.x[s:e] - center) ** 2).sum(axis=1),
                       out=self.closest[s:e])

    def draw(self, size, random_state):
        """``size`` row indices with probability proportional to weight x squared distance;
        by weight alone when every row already sits on a centre."""
        if self.kernels is not None:
            if self.block_mass.sum() > 0:
                return self.kernels.weighted_draw(self.w, self.closest, self.block_mass, size,
                                                  random_state)
            return _weighted_draw(None, self.w, size, random_state)
        weighted = self.closest * self.w
        return _weighted_draw(None, weighted if weighted.sum() > 0 else self.w, size,
                              random_state)

    def potentials(self, candidates):
        """``sum_n w_n min(closest_n, |x_n - c|^2)`` for each candidate c of (T, D)."""
        if self.kernels is not None:
            return self.kernels.candidate_potentials(self.xt, self.w, self.closest, candidates)
        cand_sq = np.einsum("ij,ij->i", candidates, candidates)
        potentials = np.zeros(len(candidates))
        for s, e in _blocks(len(self.x)):
            d2 = _sq_distances(self.x[s:e], candidates, cand_sq)
            np.minimum(d2, self.closest[s:e, np.newaxis], out=d2)
            potentials += self.w[s:e] @ d2
        return potentials


def kmeans_plusplus(x, w, n_clusters, random_state, order=None):
    """Greedy k-means++ seeding (as scikit-learn), weighted.

    Parameters
    ----------
    x : ndarray of shape (N, D), float64
    w : ndarray of shape (N,), non-negative weights
    n_clusters : int
    random_state : numpy.random.RandomState
    order : ndarray of shape (N,), optional
        ``_lexicographic_order(x)``, when already known.

    Returns
    -------
    centers : ndarray of shape (n_clusters, D)
    indices : ndarray of shape (n_clusters,)
        Rows chosen as centres.
    """
    n_local_trials = 2 + int(np.log(n_clusters))
    if order is None:
        order = _lexicographic_order(x)
    # Draws walk the rows in a fixed (lexicographic) order: see _weighted_draw.
    xs = np.ascontiguousarray(x[order])
    ws = np.ascontiguousarray(w[order], dtype=np.float64)
    first = int(_weighted_draw(None, ws, 1, random_state)[0])
    chosen = [first]
    nearest = _NearestCentre(xs, ws)
    nearest.add(xs[first])
    for _ in range(1, n_clusters):
        candidate_ids = nearest.draw(n_local_trials, random_state)
        candidates = xs[candidate_ids]
        best = int(np.argmin(nearest.potentials(candidates)))
        chosen.append(int(candidate_ids[best]))
        nearest.add(candidates[best])
    chosen = np.array(chosen)
    return xs[chosen], order[chosen]


def _weighted_draw(order, mass, size, random_state):
    """``size`` row indices drawn with probability proportional to ``mass`` (with replacement).

    Rows are drawn by weighted quantile over a fixed order of the rows (lexicographic by
    coordinates), so the draw depends only on the weighted set of rows: an integer weight picks
    the same point as repeating the row, whatever the row order.
    """
    cumulative = np.cumsum(mass if order is None else mass[order])
    targets = random_state.uniform(size=size) * cumulative[-1]
    picked = np.minimum(np.searchsorted(cumulative, targets), len(cumulative) - 1)
    return picked if order is None else order[picked]


def seeding_sample(x, w, n_clusters, random_state, cache=None):
    """The rows k-means++ seeds from: all of them, or a weighted sample for large problems.

    ``cache`` (a dict) keeps the rows' lexicographic order under "order" for later calls.

    Returns
    -------
    x, w : the rows and their weights
    """
    cache = {} if cache is None else cache
    if "order" not in cache:
        cache["order"] = _lexicographic_order(x)
    n_rows = max(SEED_ROWS_PER_CLUSTER * n_clusters, SEED_PAIRS // n_clusters)
    if len(x) <= n_rows:
        return x, w
    picked = np.sort(_weighted_draw(cache["order"], w, n_rows, random_state))
    return np.ascontiguousarray(x[picked]), np.ones(n_rows)


def _lexicographic_order(x):
    """Permutation sorting the rows lexicographically by their coordinates."""
    return np.lexsort(x.T[::-1])


def _farthest_rows(x, w, labels, centers, count):
    """Rows farthest from their centre (positive weight only), for relocating empty clusters."""
    d2 = np.empty(len(x))
    for s, e in _blocks(len(x)):
        d2[s:e] = ((x[s:e] - centers[labels[s:e]]) ** 2).sum(axis=1)
    d2[w <= 0] = -1.0
    return x[np.argsort(-d2, kind="stable")[:count]]


def _assign(x, xt, w, centers, labels):
    """Lloyd's assignment step in place; returns (counts, sums, rows that changed label).

    ``xt`` is the transposed copy of ``x`` the numba kernel reads (None without numba).
    """
    k, d = centers.shape
    kernels = _kernels()
    if kernels is not None and k <= BRUTE_FORCE_MAX_K:
        return kernels.assign_and_sum(xt, w, centers, labels)
    tree = cKDTree(centers) if d <= KDTREE_MAX_DIM else None
    n_changed = 0
    for s, e in _blocks(len(x)) if tree is None else [(0, len(x))]:
        if tree is not None:
            idx = nearest_centres(tree, x)
        else:
            idx = _sq_distances(x[s:e], centers, np.einsum("ij,ij->i", centers, centers)).argmin(1)
        n_changed += int((idx != labels[s:e]).sum())
        labels[s:e] = idx
    counts = np.bincount(labels, weights=w, minlength=k)
    sums = np.stack([np.bincount(labels, weights=w * x[:, j], minlength=k) for j in range(d)],
                    axis=1)
    return counts, sums, n_changed


def nearest_centres(tree, x):
    """Index of each row's nearest centre in ``tree`` (a ``cKDTree`` of the centres), shape
    (N,), queried in one task per core.

    The tasks run in threads of this module's pool, not scipy's own (``workers=-1``): an
    interrupt (Ctrl-C, Jupyter's interrupt) while scipy joins its threads crashes the
    interpreter, while tasks of a pool hold what they read and finish after it.
    """
    n_tasks = min(_cores(), max(1, len(x) // BLOCK_ROWS))
    if n_tasks == 1:
        return tree.query(x, k=1)[1]
    bounds = np.linspace(0, len(x), n_tasks + 1).astype(np.intp)
    with ThreadPoolExecutor(n_tasks) as pool:
        parts = pool.map(lambda s, e: tree.query(x[s:e], k=1)[1], bounds[:-1], bounds[1:])
        return np.concatenate(list(parts))


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def kmeans(source, n_clusters, random_state, max_iter=KMEANS_MAX_ITER, tol=KMEANS_TOL,
           variance=None):
    """Weighted Lloyd's k-means from a k-means++ seeding.

    Parameters
    ----------
    source : ArrayChunks or TiledSource
        The rows (held in memory as one working array while clustering).
    n_clusters : int
    random_state : numpy.random.RandomState
    max_iter : int
        Lloyd passes at most.
    tol : float
        Relative tolerance on the total squared centre shift.
    variance : ndarray of shape (D,), optional
        Per-feature variance of the data (scales ``tol``).

    Returns
    -------
    labels : ndarray of shape (N,), int, in the source's row order
    centers : ndarray of shape (n_clusters, D)
    """
    x = working_rows(source)
    w = np.ascontiguousarray(source.sample_weight, dtype=np.float64)
    cache = getattr(source, "cache", {})  # shared by the n_init runs on one source
    seed_x, seed_w = seeding_sample(x, w, n_clusters, random_state, cache)
    order = cache.get("order") if seed_x is x else None
    centers, _ = kmeans_plusplus(seed_x, seed_w, n_clusters, random_state, order=order)
    threshold = tol * (float(np.mean(variance)) if variance is not None else 1.0)
    labels = np.full(len(x), -1, dtype=np.int64)
    kernels = _kernels()
    xt = None
    if kernels is not None and n_clusters <= BRUTE_FORCE_MAX_K:
        if "transposed" not in cache or getattr(source, "x", None) is not x:
            cache["transposed"] = kernels.transposed(x)
        xt = cache["transposed"]
    settled = False
    for _ in range(max_iter):
        counts, sums, n_changed = _assign(x, xt, w, centers, labels)
        if n_changed == 0:
            settled = True  # the labels already belong to these centres
            break
        new_centers = centers.copy()
        filled = counts > 0
        new_centers[filled] = sums[filled] / counts[filled, np.newaxis]
        empty = np.flatnonzero(~filled)
        if len(empty):
            far = _farthest_rows(x, w, labels, centers, len(empty))
            new_centers[empty[: len(far)]] = far
        shift = float(((new_centers - centers) ** 2).sum())
        centers = new_centers
        if shift <= threshold and not len(empty):
            break
    if not settled:
        _assign(x, xt, w, centers, labels)  # labels of the final centres
    return labels, centers


def stats_of_labels(source, labels, centers, covariance_type):
    """Statistics of a hard assignment of every row (label -1: no component), about
    ``centers`` (K, D) so that no second moment cancels."""
    kernels = _kernels()
    if kernels is not None and getattr(source, "x", None) is not None:
        return _as_stats(_label_moments(kernels, source, labels, centers, covariance_type),
                         centers, source, covariance_type)
    total = None
    start = 0
    for x, w in source:
        stop = start + len(x)
        arrays = stats_from_labels(x, w, labels[start:stop], centers, covariance_type)
        total = arrays if total is None else tuple(a + b for a, b in zip(total, arrays))
        start = stop
    return _as_stats(total, centers, source, covariance_type)


def _label_moments(kernels, source, labels, centers, covariance_type):
    """:func:`stats_of_labels`'s arrays from the numba kernel, for rows held in memory."""
    d = centers.shape[1]
    diagonal = covariance_type in ("diag", "spherical")
    cache = getattr(source, "cache", {})
    if "transposed" not in cache:
        cache["transposed"] = kernels.transposed(source.x)
    counts, first, second = kernels.label_moments(
        cache["transposed"], np.ascontiguousarray(source.sample_weight, dtype=np.float64),
        np.ascontiguousarray(labels, dtype=np.int64), centers, diagonal)
    xx = second_moments_from_packed(second, covariance_type, d)
    return counts, first, xx


def stats_of_random_resp(source, n_clusters, covariance_type, random_state):
    """Statistics of uniformly random soft responsibilities (scikit-learn's 'random').

    Every component then sits near the data's mean, the origin of the working coordinates,
    so moments about the origin are accurate.
    """
    total = None
    for x, w in source:
        resp = random_state.uniform(size=(x.shape[0], n_clusters))
        resp /= resp.sum(axis=1)[:, np.newaxis]
        arrays = stats_from_resp(x, w, resp, covariance_type)
        total = arrays if total is None else tuple(a + b for a, b in zip(total, arrays))
    centers = np.zeros((n_clusters, source.n_features))
    return _as_stats(total, centers, source, covariance_type)


def _as_stats(arrays, centers, source, covariance_type):
    resp_sum, x_sum, xx_sum = arrays
    weights = source.sample_weight
    return Stats(
        covariance_type=covariance_type,
        center=centers,
        resp_sum=resp_sum,
        x_sum=x_sum,
        xx_sum=xx_sum,
        log_likelihood=0.0,
        weight_sum=float(weights.sum()),
        n_rows=int((weights > 0).sum()),
        worst_log_prob=np.empty(0),
        worst_points=np.empty((0, source.n_features)),
    )


def initial_stats(source, n_components, covariance_type, method, random_state, variance=None):
    """Statistics of the initial assignment chosen by ``method`` (see ``INIT_METHODS``)."""
    if method == "random":
        return stats_of_random_resp(source, n_components, covariance_type, random_state)
    if method == "kmeans":
        labels, centers = kmeans(source, n_components, random_state, variance=variance)
        return stats_of_labels(source, labels, centers, covariance_type)
    if method == "k-means++":
        w = np.ascontiguousarray(source.sample_weight, dtype=np.float64)
        centers, indices = kmeans_plusplus(working_rows(source), w, n_components, random_state)
    elif method == "random_from_data":
        positive = np.flatnonzero(source.sample_weight > 0)
        indices = random_state.choice(positive, size=n_components, replace=False)
        centers = working_rows(source)[indices]
    else:  # pragma: no cover - validated by the estimator
        raise ValueError(f"unknown init method {method!r}")
    labels = np.full(source.n_rows, -1, dtype=np.intp)
    labels[indices] = np.arange(n_components)
    return stats_of_labels(source, labels, centers, covariance_type)


def initial_params(source, n_components, covariance_type, method, random_state, *, reg_covar,
                   jitter_floor, variance=None):
    """Initial :class:`~gaussmix._mathematics.em.Params` in working coordinates."""
    stats = initial_stats(source, n_components, covariance_type, method, random_state, variance)
    params, _ = m_step(stats, reg_covar, jitter_floor, reseed=False)
    return params
