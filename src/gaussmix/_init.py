"""Initial parameters: k-means, k-means++, random responsibilities, random rows.

Every method produces a hard or soft assignment chunk by chunk, turns it into
:class:`~gaussmix._stats.Stats` and runs one M-step, exactly as scikit-learn derives its
initial parameters from initial responsibilities. Nothing here allocates an (N, K) array.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ._em import m_step, stats_from_labels, stats_from_resp
from ._stats import Stats

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")

# Lloyd iterations stop when the total squared centre shift falls below this fraction of the
# data's mean variance (scikit-learn's KMeans criterion) or after KMEANS_MAX_ITER passes.
KMEANS_TOL = 1e-4
KMEANS_MAX_ITER = 300

# Assignment uses a k-d tree over the centres up to this dimension, matrix products above.
KDTREE_MAX_DIM = 8


def _sq_distances(x, centers, center_sq):
    """Squared Euclidean distances (n, M) by the matrix-product expansion, clipped at 0."""
    d2 = np.einsum("ij,ij->i", x, x)[:, np.newaxis] - 2.0 * (x @ centers.T) + center_sq
    return np.maximum(d2, 0.0, out=d2)


def nearest_center(x, centers, tree=None):
    """Index of and squared distance to the nearest centre for each row of a chunk."""
    if tree is not None:
        dist, idx = tree.query(x, k=1, workers=-1)
        return idx, dist**2
    d2 = _sq_distances(x, centers, np.einsum("ij,ij->i", centers, centers))
    idx = d2.argmin(axis=1)
    return idx, d2[np.arange(len(idx)), idx]


def _center_tree(centers):
    return cKDTree(centers) if centers.shape[1] <= KDTREE_MAX_DIM else None


def kmeans_plusplus(source, n_clusters, random_state):
    """Greedy k-means++ seeding (as scikit-learn), weighted, chunked over rows.

    Parameters
    ----------
    source : ArrayChunks
    n_clusters : int
    random_state : numpy.random.RandomState

    Returns
    -------
    centers : ndarray of shape (n_clusters, D)
    indices : ndarray of shape (n_clusters,)
        Rows chosen as centres.
    """
    weights = source.sample_weight
    n = source.n_rows
    n_local_trials = 2 + int(np.log(n_clusters))
    bounds = source.bounds()
    # Rows are drawn by weighted quantile over a lexicographic order of the rows, so the draw
    # depends only on the weighted set of rows: an integer weight picks the same point as
    # repeating the row, whatever the row order.
    order = _lexicographic_order(source)

    def draw(mass, size):
        cumulative = np.cumsum(mass[order])
        targets = random_state.uniform(size=size) * cumulative[-1]
        return order[np.minimum(np.searchsorted(cumulative, targets), n - 1)]

    first = int(draw(weights, 1)[0])
    indices = [first]
    centers = [source.take([first])[0]]
    closest = np.empty(n, dtype=np.float64)
    for start, stop in bounds:
        x, _ = source.chunk(start, stop)
        closest[start:stop] = ((x - centers[0]) ** 2).sum(axis=1)
    weighted = closest * weights
    for _ in range(1, n_clusters):
        # When every row already sits on a centre, any row will do.
        mass = weighted if weighted.sum() > 0 else weights
        candidate_ids = draw(mass, n_local_trials)
        candidates = source.take(candidate_ids)
        cand_sq = np.einsum("ij,ij->i", candidates, candidates)
        potentials = np.zeros(len(candidate_ids))
        for start, stop in bounds:
            x, w = source.chunk(start, stop)
            d2 = _sq_distances(x, candidates, cand_sq)
            np.minimum(d2, closest[start:stop, np.newaxis], out=d2)
            potentials += w @ d2
        best = int(np.argmin(potentials))
        indices.append(int(candidate_ids[best]))
        centers.append(candidates[best])
        for start, stop in bounds:
            x, _ = source.chunk(start, stop)
            d2 = ((x - candidates[best]) ** 2).sum(axis=1)
            np.minimum(closest[start:stop], d2, out=closest[start:stop])
        weighted = closest * weights
    return np.array(centers), np.array(indices)


def _lexicographic_order(source):
    """Permutation sorting the rows lexicographically by their coordinates."""
    columns = np.asarray(source.X)
    return np.lexsort(columns.T[::-1])


def _farthest_rows(source, labels, centers, count):
    """Rows farthest from their centre (positive weight only), for relocating empty clusters."""
    best_d2 = np.empty(0)
    best_rows = np.empty((0, source.n_features))
    for start, stop in source.bounds():
        x, w = source.chunk(start, stop)
        d2 = ((x - centers[labels[start:stop]]) ** 2).sum(axis=1)
        d2[w <= 0] = -1.0
        top = np.argsort(-d2, kind="stable")[:count]
        best_d2 = np.concatenate([best_d2, d2[top]])
        best_rows = np.concatenate([best_rows, x[top]])
        keep = np.argsort(-best_d2, kind="stable")[:count]
        best_d2, best_rows = best_d2[keep], best_rows[keep]
    return best_rows


def kmeans(source, n_clusters, random_state, max_iter=KMEANS_MAX_ITER, tol=KMEANS_TOL,
           variance=None):
    """Weighted Lloyd's k-means from a k-means++ seeding, chunked over rows.

    Parameters
    ----------
    source : ArrayChunks
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
    labels : ndarray of shape (N,), int
    centers : ndarray of shape (n_clusters, D)
    """
    centers, _ = kmeans_plusplus(source, n_clusters, random_state)
    threshold = tol * (float(np.mean(variance)) if variance is not None else 1.0)
    labels = np.full(source.n_rows, -1, dtype=np.intp)
    for _ in range(max_iter):
        tree = _center_tree(centers)
        counts = np.zeros(n_clusters)
        sums = np.zeros_like(centers)
        n_changed = 0
        for start, stop in source.bounds():
            x, w = source.chunk(start, stop)
            idx, _ = nearest_center(x, centers, tree)
            n_changed += int((idx != labels[start:stop]).sum())
            labels[start:stop] = idx
            counts += np.bincount(idx, weights=w, minlength=n_clusters)
            for j in range(x.shape[1]):
                sums[:, j] += np.bincount(idx, weights=w * x[:, j], minlength=n_clusters)
        if n_changed == 0:
            break
        new_centers = centers.copy()
        filled = counts > 0
        new_centers[filled] = sums[filled] / counts[filled, np.newaxis]
        empty = np.flatnonzero(~filled)
        if len(empty):
            far = _farthest_rows(source, labels, centers, len(empty))
            new_centers[empty[: len(far)]] = far
        shift = float(((new_centers - centers) ** 2).sum())
        centers = new_centers
        if shift <= threshold and not len(empty):
            break
    # Final assignment to the final centres.
    tree = _center_tree(centers)
    for start, stop in source.bounds():
        x, _ = source.chunk(start, stop)
        labels[start:stop] = nearest_center(x, centers, tree)[0]
    return labels, centers


def stats_of_labels(source, labels, centers, covariance_type):
    """Statistics of a hard assignment of every row (label -1: no component), about
    ``centers`` (K, D) so that no second moment cancels."""
    total = None
    for start, stop in source.bounds():
        x, w = source.chunk(start, stop)
        arrays = stats_from_labels(x, w, labels[start:stop], centers, covariance_type)
        total = arrays if total is None else tuple(a + b for a, b in zip(total, arrays))
    return _as_stats(total, centers, source, covariance_type)


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
        centers, indices = kmeans_plusplus(source, n_components, random_state)
    elif method == "random_from_data":
        positive = np.flatnonzero(source.sample_weight > 0)
        indices = random_state.choice(positive, size=n_components, replace=False)
        centers = source.take(indices)
    else:  # pragma: no cover - validated by the estimator
        raise ValueError(f"unknown init method {method!r}")
    labels = np.full(source.n_rows, -1, dtype=np.intp)
    labels[indices] = np.arange(n_components)
    return stats_of_labels(source, labels, centers, covariance_type)


def initial_params(source, n_components, covariance_type, method, random_state, *, reg_covar,
                   jitter_floor, variance=None):
    """Initial :class:`~gaussmix._em.Params` in working coordinates."""
    stats = initial_stats(source, n_components, covariance_type, method, random_state, variance)
    params, _ = m_step(stats, reg_covar, jitter_floor, reseed=False)
    return params
