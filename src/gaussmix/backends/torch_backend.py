"""PyTorch tensors: the whole fit on the tensor's device (CPU or GPU).

Initialisation (k-means++ and Lloyd iterations), E-step, M-step, scoring, sampling and
conditional means all run with torch operations on the device that holds the data. The
E-step works in the data's dtype (float32 is the fast case on a GPU) in difference form,
``(x - mu_k) U_k``, and accumulates the statistics about the current means in float64, so that
nothing cancels; the M-step runs in float64. The estimator keeps numpy copies of the fitted
parameters (for the algebra, saving and rendering) and remembers the device for inference.

Imported only when the user passes a torch tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .._em import DEAD_COMPONENT_MASS, MAX_RESEED_CANDIDATES, EMResult, Params

LOG_2PI = math.log(2.0 * math.pi)
# Elements of the (rows, K, D) difference block per E-step chunk.
CHUNK_ELEMENTS = 2**24
KMEANS_MAX_ITER = 10
SEED_ROWS_PER_CLUSTER = 16
SEED_MIN_ROWS = 20_000
JITTER_ROUNDS = 12


@dataclass
class TorchParams:
    """Mixture parameters as float64 tensors on one device, every covariance type as (K, D, D)
    factors (diagonal ones kept diagonal)."""

    weights: torch.Tensor
    means: torch.Tensor
    prec_chol: torch.Tensor  # (K, D, D) upper factors: precision = U U^T
    covariances: torch.Tensor  # (K, D, D)
    covariance_type: str

    @property
    def n_components(self):
        return self.means.shape[0]


def _rows_per_chunk(k, d):
    return max(64, CHUNK_ELEMENTS // max(1, k * d))


def _log_norm(p):
    d = p.means.shape[1]
    log_det = torch.log(torch.diagonal(p.prec_chol, dim1=1, dim2=2)).sum(dim=1)
    return torch.log(p.weights) + log_det - 0.5 * d * LOG_2PI


def _logits(x, p, log_norm):
    """``log w_k + log N(x | k)`` for a chunk, shape (n, K), in x's dtype."""
    diff = x[:, None, :] - p.means.to(x.dtype)[None]
    y = torch.einsum("nkd,kde->nke", diff, p.prec_chol.to(x.dtype))
    return log_norm.to(x.dtype) - 0.5 * (y * y).sum(dim=2), diff


def e_step(x, w, p, n_worst):
    """Statistics of all rows (tensors) under ``p``, about the current means, in float64.

    Returns
    -------
    dict with resp_sum (K,), x_sum (K, D), xx_sum (K, D, D), log_likelihood, weight_sum,
    n_rows, worst_log_prob, worst_points
    """
    k, d = p.means.shape
    log_norm = _log_norm(p)
    step = _rows_per_chunk(k, d)
    dev = x.device
    resp_sum = torch.zeros(k, dtype=torch.float64, device=dev)
    x_sum = torch.zeros(k, d, dtype=torch.float64, device=dev)
    xx_sum = torch.zeros(k, d, d, dtype=torch.float64, device=dev)
    log_likelihood = torch.zeros((), dtype=torch.float64, device=dev)
    worst_lp, worst_x = [], []
    for s in range(0, x.shape[0], step):
        xc, wc = x[s:s + step], w[s:s + step]
        logits, diff = _logits(xc, p, log_norm)
        log_prob = torch.logsumexp(logits, dim=1)
        resp = torch.exp(logits - log_prob[:, None]).to(torch.float64) * wc[:, None]
        diff64 = diff.to(torch.float64)
        resp_sum += resp.sum(dim=0)
        x_sum += torch.einsum("nk,nkd->kd", resp, diff64)
        xx_sum += torch.einsum("nk,nkd,nke->kde", resp, diff64, diff64)
        positive = wc > 0
        lp = log_prob.to(torch.float64)
        log_likelihood += (wc[positive] * lp[positive]).sum()
        lp_pos, x_pos = lp[positive], xc[positive]
        m = min(n_worst, lp_pos.shape[0])
        if m:
            low = torch.topk(lp_pos, m, largest=False)
            worst_lp.append(low.values)
            worst_x.append(x_pos[low.indices].to(torch.float64))
    lp_all = torch.cat(worst_lp) if worst_lp else torch.empty(0, dtype=torch.float64, device=dev)
    x_all = torch.cat(worst_x) if worst_x else torch.empty(0, d, dtype=torch.float64, device=dev)
    order = torch.argsort(lp_all)[:n_worst]
    return dict(resp_sum=resp_sum, x_sum=x_sum, xx_sum=xx_sum,
                log_likelihood=float(log_likelihood), weight_sum=float(w.sum()),
                n_rows=int((w > 0).sum()), worst_log_prob=lp_all[order],
                worst_points=x_all[order])


def _covariances(stats, center, reg_covar, covariance_type):
    nk = stats["resp_sum"] + 10.0 * float(np.finfo(np.float64).eps)
    offsets = stats["x_sum"] / nk[:, None]
    scatter = stats["xx_sum"] / nk[:, None, None] - offsets[:, :, None] * offsets[:, None, :]
    d = scatter.shape[1]
    eye = torch.eye(d, dtype=torch.float64, device=scatter.device)
    if covariance_type == "full":
        cov = scatter
    elif covariance_type == "tied":
        cov = (scatter * nk[:, None, None]).sum(dim=0, keepdim=True) / nk.sum()
        cov = cov.expand_as(scatter)
    elif covariance_type == "diag":
        cov = torch.diag_embed(torch.diagonal(scatter, dim1=1, dim2=2))
    else:
        cov = (torch.diagonal(scatter, dim1=1, dim2=2).mean(dim=1))[:, None, None] * eye
    cov = 0.5 * (cov + cov.transpose(1, 2)) + reg_covar * eye
    return nk, center + offsets, cov


def _cholesky_with_jitter(cov, jitter_floor):
    """Lower Cholesky factors, raising the diagonal of the matrices that fail."""
    chol, info = torch.linalg.cholesky_ex(cov)
    n_fixed, max_jitter = 0, 0.0
    bad = info > 0
    if bad.any():
        n_fixed = int(bad.sum())
        d = cov.shape[1]
        eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
        scale = torch.diagonal(cov, dim1=1, dim2=2).abs().mean(dim=1).nan_to_num(0.0)
        jitter = torch.clamp(1e-12 * scale, min=jitter_floor)
        repaired = torch.where(torch.isfinite(cov), cov, torch.zeros_like(cov))
        for _ in range(JITTER_ROUNDS):
            trial, info = torch.linalg.cholesky_ex(repaired + jitter[:, None, None] * eye)
            chol = torch.where(bad[:, None, None], trial, chol)
            bad = bad & (info > 0)
            if not bad.any():
                break
            jitter = torch.where(bad, jitter * 10.0, jitter)
        if bad.any():  # give up on the shape: a scaled identity
            chol = torch.where(bad[:, None, None], torch.sqrt(jitter)[:, None, None] * eye, chol)
        max_jitter = float(jitter.max())
    return chol, n_fixed, max_jitter


def m_step(stats, p, reg_covar, jitter_floor):
    """New :class:`TorchParams` from statistics about ``p``'s means (float64, on device)."""
    cov_type = p.covariance_type
    nk, means, cov = _covariances(stats, p.means, reg_covar, cov_type)
    weights = nk / nk.sum()
    n_reseeded = 0
    row_mass = stats["weight_sum"] / max(stats["n_rows"], 1)
    share = row_mass / stats["weight_sum"]
    dead = torch.nonzero(stats["resp_sum"] < DEAD_COMPONENT_MASS * row_mass).ravel()
    worst = stats["worst_points"]
    max_seeds = min(len(worst), int(0.5 / share))
    if 0 < len(dead) < len(nk) and max_seeds:
        seeds = dead[:max_seeds]
        n_reseeded = len(seeds)
        live = torch.ones(len(nk), dtype=torch.bool, device=nk.device)
        live[dead] = False
        means[seeds] = worst[:n_reseeded]
        if cov_type != "tied":
            average = (weights[live, None, None] * cov[live]).sum(dim=0) / weights[live].sum()
            cov[seeds] = average
        others = torch.ones(len(nk), dtype=torch.bool, device=nk.device)
        others[seeds] = False
        weights[others] *= (1.0 - n_reseeded * share) / weights[others].sum()
        weights[seeds] = share
    chol, n_fixed, max_jitter = _cholesky_with_jitter(cov, jitter_floor)
    cov = chol @ chol.transpose(1, 2)
    eye = torch.eye(chol.shape[1], dtype=chol.dtype, device=chol.device).expand_as(chol)
    prec_chol = torch.linalg.solve_triangular(chol, eye, upper=False).transpose(1, 2)
    return TorchParams(weights, means, prec_chol, cov, cov_type), (n_reseeded, n_fixed,
                                                                  max_jitter)


# --------------------------------------------------------------------------------------------
# Initialisation on the device


def _weighted_draw(mass, size, generator):
    cumulative = torch.cumsum(mass, dim=0)
    targets = torch.rand(size, dtype=mass.dtype, device=mass.device,
                         generator=generator) * cumulative[-1]
    return torch.clamp(torch.searchsorted(cumulative, targets), max=len(mass) - 1)


def kmeans_plusplus(x, w, k, generator):
    """Greedy weighted k-means++ seeding, on the device. Returns the chosen row indices (k,)."""
    trials = 2 + int(math.log(k))
    chosen = [int(_weighted_draw(w, 1, generator)[0])]
    closest = ((x - x[chosen[0]]) ** 2).sum(dim=1)
    for _ in range(1, k):
        mass = closest * w
        mass = mass if mass.sum() > 0 else w
        candidates = _weighted_draw(mass, trials, generator)
        d2 = torch.cdist(x, x[candidates]) ** 2
        potentials = (w[:, None] * torch.minimum(d2, closest[:, None])).sum(dim=0)
        best = int(torch.argmin(potentials))
        chosen.append(int(candidates[best]))
        closest = torch.minimum(closest, d2[:, best])
    return torch.tensor(chosen, device=x.device)


def _nearest(x, centres):
    step = _rows_per_chunk(centres.shape[0], 1)
    return torch.cat([torch.cdist(x[s:s + step], centres).argmin(dim=1)
                      for s in range(0, x.shape[0], step)])


def kmeans(x, w, k, generator, variance_mean):
    """k-means++ seeding (on a weighted sample for large data) and bounded Lloyd passes.

    Returns
    -------
    labels : (N,) long tensor; centres : (k, D) tensor
    """
    n = x.shape[0]
    seed_rows = max(SEED_MIN_ROWS, SEED_ROWS_PER_CLUSTER * k)
    if n > seed_rows:
        sample = x[_weighted_draw(w, seed_rows, generator)]
        centres = sample[kmeans_plusplus(sample, torch.ones(seed_rows, dtype=w.dtype,
                                                             device=w.device), k, generator)]
    else:
        centres = x[kmeans_plusplus(x, w, k, generator)]
    labels = None
    for _ in range(KMEANS_MAX_ITER):
        new_labels = _nearest(x, centres)
        if labels is not None and torch.equal(new_labels, labels):
            break
        labels = new_labels
        counts = torch.zeros(k, dtype=w.dtype, device=x.device).index_add_(0, labels, w)
        sums = torch.zeros(k, x.shape[1], dtype=w.dtype, device=x.device).index_add_(
            0, labels, x.to(w.dtype) * w[:, None])
        filled = counts > 0
        moved = centres.clone()
        moved[filled] = (sums[filled] / counts[filled, None]).to(x.dtype)
        shift = float(((moved - centres) ** 2).sum())
        centres = moved
        if shift <= 1e-4 * variance_mean:
            break
    return _nearest(x, centres), centres


def _init_stats(x, w, labels, centres, k, generator):
    """Statistics about ``centres`` of a hard assignment (``labels``, -1: none) or, with
    ``labels`` None, of uniformly random soft responsibilities; chunked over rows."""
    d = x.shape[1]
    dev = x.device
    c64 = centres.to(torch.float64)
    resp_sum = torch.zeros(k, dtype=torch.float64, device=dev)
    x_sum = torch.zeros(k, d, dtype=torch.float64, device=dev)
    xx_sum = torch.zeros(k, d, d, dtype=torch.float64, device=dev)
    step = _rows_per_chunk(k, d)
    for s in range(0, x.shape[0], step):
        xc, wc = x[s:s + step].to(torch.float64), w[s:s + step]
        if labels is None:
            resp = torch.rand(len(xc), k, dtype=torch.float64, device=dev, generator=generator)
            resp = resp / resp.sum(dim=1, keepdim=True) * wc[:, None]
            diff = xc[:, None, :] - c64[None]
            resp_sum += resp.sum(dim=0)
            x_sum += torch.einsum("nk,nkd->kd", resp, diff)
            xx_sum += torch.einsum("nk,nkd,nke->kde", resp, diff, diff)
        else:
            lab = labels[s:s + step]
            keep = lab >= 0
            lab, xc, wc = lab[keep], xc[keep], wc[keep]
            diff = xc - c64[lab]
            resp_sum.index_add_(0, lab, wc)
            x_sum.index_add_(0, lab, diff * wc[:, None])
            xx_sum.index_add_(0, lab, diff[:, :, None] * diff[:, None, :] * wc[:, None, None])
    return dict(resp_sum=resp_sum, x_sum=x_sum, xx_sum=xx_sum, weight_sum=float(w.sum()),
                n_rows=int((w > 0).sum()),
                worst_points=torch.empty(0, d, dtype=torch.float64, device=dev))


def initial_params(x, w, k, covariance_type, method, generator, reg_covar, jitter_floor,
                   variance_mean):
    """Initial parameters from k-means labels, k-means++ or random rows (one row each), or
    random soft responsibilities, on the device (as scikit-learn derives them)."""
    dev = x.device
    labels = None
    if method == "random":
        centres = torch.zeros(k, x.shape[1], dtype=x.dtype, device=dev)
    elif method == "kmeans":
        labels, centres = kmeans(x, w, k, generator, variance_mean)
    else:
        if method == "k-means++":
            rows = kmeans_plusplus(x, w, k, generator)
        else:  # random_from_data
            positive = torch.nonzero(w > 0).ravel()
            rows = positive[torch.randperm(len(positive), device=dev, generator=generator)[:k]]
        centres = x[rows]
        labels = torch.full((x.shape[0],), -1, dtype=torch.long, device=dev)
        labels[rows] = torch.arange(k, device=dev)
    stats = _init_stats(x, w, labels, centres, k, generator)
    start = TorchParams(None, centres.to(torch.float64), None, None, covariance_type)
    return m_step(stats, start, reg_covar, jitter_floor)[0]


# --------------------------------------------------------------------------------------------
# The fit


def to_torch_params(params, device, dtype=torch.float64):
    """Numpy :class:`Params` as :class:`TorchParams` (every type as (K, D, D) factors)."""
    k, d = params.means.shape
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
    u = params.precisions_cholesky
    cov_type = params.covariance_type
    if cov_type == "full":
        prec, cov = u, params.covariances
    elif cov_type == "tied":
        prec, cov = np.broadcast_to(u, (k, d, d)), np.broadcast_to(params.covariances, (k, d, d))
    else:
        diag = u if cov_type == "diag" else np.repeat(u[:, None], d, axis=1)
        prec = diag[:, :, None] * np.eye(d)
        cov = (1.0 / diag**2)[:, :, None] * np.eye(d)
    return TorchParams(t(params.weights), t(params.means), t(prec), t(cov), cov_type)


def to_numpy_params(p):
    """:class:`TorchParams` back to numpy :class:`Params` in the covariance type's shapes."""
    cov_type = p.covariance_type
    u = p.prec_chol.detach().cpu().numpy()
    c = p.covariances.detach().cpu().numpy()
    if cov_type == "tied":
        u, c = u[0], c[0]
    elif cov_type == "diag":
        u, c = np.diagonal(u, axis1=1, axis2=2).copy(), np.diagonal(c, axis1=1, axis2=2).copy()
    elif cov_type == "spherical":
        u, c = u[:, 0, 0].copy(), c[:, 0, 0].copy()
    return Params(p.weights.cpu().numpy(), p.means.cpu().numpy(), u, c, cov_type)


def validate(X, sample_weight):
    """Checks a tensor and its weights; returns (X, w as float64 on the same device)."""
    from .._validation import InputError

    if X.ndim != 2:
        raise InputError(f"Expected a 2-D tensor, got shape {tuple(X.shape)}. Reshape your data "
                         "with X.reshape(-1, 1) if it holds a single feature.")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise InputError(f"Found a tensor of shape {tuple(X.shape)}; pass at least one row and "
                         "one column.")
    if X.is_complex() or not (X.is_floating_point() or X.dtype in (torch.int32, torch.int64,
                                                                   torch.uint8, torch.bool)):
        raise InputError(f"Unsupported tensor dtype {X.dtype}; pass real numbers.")
    if not X.is_floating_point():
        X = X.to(torch.float64)
    bad = ~torch.isfinite(X).all(dim=1)
    if bad.any():
        raise InputError(f"Input X contains NaN or infinity in {int(bad.sum())} rows; remove or "
                         "impute those rows before calling this method.")
    if sample_weight is None:
        w = torch.ones(X.shape[0], dtype=torch.float64, device=X.device)
    else:
        w = torch.as_tensor(sample_weight, dtype=torch.float64, device=X.device)
        if w.ndim != 1 or w.shape[0] != X.shape[0]:
            raise InputError(f"sample_weight has shape {tuple(w.shape)} but X has {X.shape[0]} "
                             "rows; pass one non-negative weight per row.")
        if not torch.isfinite(w).all() or (w < 0).any():
            raise InputError("sample_weight must be finite and non-negative (use 0 to leave a "
                             "row out).")
        if not (w > 0).any():
            raise InputError("sample_weight is zero for every row; at least one row needs a "
                             "positive weight.")
    return X, w


def fit(estimator, X, sample_weight):
    """Fit ``estimator`` (a GaussianMixture) on a tensor, on its device."""
    X, w = validate(X, sample_weight)
    n_positive = int((w > 0).sum())
    k = estimator.n_components
    if k > n_positive:
        raise ValueError(f"n_components={k} is larger than the number of samples (n_samples = "
                         f"{n_positive}); reduce n_components or provide more data.")
    estimator.n_features_in_ = X.shape[1]
    estimator.__dict__.pop("feature_names_in_", None)
    total = w.sum()
    shift = (w[:, None] * X.to(torch.float64)).sum(dim=0) / total
    x = X - shift.to(X.dtype)
    variance = (w[:, None] * (x.to(torch.float64) ** 2)).sum(dim=0) / total
    var_mean = float(variance.mean())
    scale = var_mean if var_mean > 0 else max(float((shift**2).mean()), 1.0)
    reg = float(estimator.reg_covar)
    floor = max(reg, 1e-10 * scale)
    generator = torch.Generator(device=X.device)
    seed = estimator.random_state if isinstance(estimator.random_state, int) else 0
    generator.manual_seed(int(seed))
    user = estimator._user_init(X.shape[1])
    shift_np = shift.cpu().numpy()
    warm = estimator.warm_start and hasattr(estimator, "converged_")
    best = None
    for init in range(1 if warm else estimator.n_init):
        estimator._verbose_init_begin(init)
        if warm:
            start = to_torch_params(estimator._params().shifted(-shift_np), X.device)
        else:
            start = initial_params(x, w, k, estimator.covariance_type,
                                   estimator.init_params, generator, reg, floor, var_mean)
            start = _with_user_init(estimator, start, user, shift_np, X.device)
        result = _run_em(x, w, start, reg, floor, estimator, init)
        estimator._verbose_init_end(result)
        if best is None or result.lower_bound > best.lower_bound:
            best = result
    params = to_numpy_params(best.params).shifted(shift_np)
    estimator._set_fit_result(best, params,
                              np.float32 if X.dtype == torch.float32 else np.float64,
                              torch_device=str(X.device))


def _with_user_init(estimator, start, user, shift_np, device):
    weights, means, prec_chol = user
    if weights is None and means is None and prec_chol is None:
        return start
    numpy_start = estimator._with_user_init(to_numpy_params(start), shift_np, weights, means,
                                            prec_chol)
    return to_torch_params(numpy_start, device)


def _run_em(x, w, p, reg, floor, estimator, init):
    n_worst = min(p.n_components, MAX_RESEED_CANDIDATES)
    result = EMResult(params=p, lower_bound=-np.inf)
    report = estimator._iteration_reporter(init)
    for n_iter in range(1, estimator.max_iter + 1):
        stats = e_step(x, w, result.params, n_worst)
        lower_bound = stats["log_likelihood"] / stats["weight_sum"]
        new, (n_reseeded, n_fixed, max_jitter) = m_step(stats, result.params, reg, floor)
        change = lower_bound - result.lower_bound
        result.params = new
        result.lower_bound = lower_bound
        result.lower_bounds.append(lower_bound)
        result.n_iter = n_iter
        result.n_reseeded += n_reseeded
        result.n_regularized += n_fixed
        result.max_jitter = max(result.max_jitter, max_jitter)
        if report is not None:
            report(n_iter, lower_bound, change)
        if abs(change) < estimator.tol:
            result.converged = True
            break
    return result


# --------------------------------------------------------------------------------------------
# Inference on tensors


def log_prob_and_resp(estimator, X, want_resp):
    """``log p(x)``, labels and optionally responsibilities of a tensor, on its device."""
    X, _ = validate(X, None)
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(estimator).__name__} is "
                         f"expecting {estimator.n_features_in_} features as input; pass data "
                         "with the same columns as during fit.")
    params = estimator._params()
    centre = params.weights @ params.means / params.weights.sum()
    p = to_torch_params(params.shifted(-centre), X.device)
    x = X - torch.as_tensor(centre, dtype=X.dtype, device=X.device)
    log_norm = _log_norm(p)
    step = _rows_per_chunk(p.n_components, x.shape[1])
    log_prob, labels, resp = [], [], []
    for s in range(0, x.shape[0], step):
        logits, _ = _logits(x[s:s + step], p, log_norm)
        lp = torch.logsumexp(logits, dim=1)
        log_prob.append(lp)
        labels.append(logits.argmax(dim=1))
        if want_resp:
            resp.append(torch.exp(logits - lp[:, None]))
    out = (torch.cat(log_prob), torch.cat(labels))
    return out + ((torch.cat(resp),) if want_resp else ())


def sample(estimator, n_samples, device):
    """Rows drawn from the fitted mixture on ``device``, grouped by component."""
    params = estimator._params()
    p = to_torch_params(params, device)
    generator = torch.Generator(device=device)
    seed = estimator.random_state if isinstance(estimator.random_state, int) else 0
    generator.manual_seed(int(seed))
    counts = torch.multinomial(p.weights, n_samples, replacement=True, generator=generator)
    counts = torch.bincount(counts, minlength=p.n_components)
    labels = torch.repeat_interleave(torch.arange(p.n_components, device=device), counts)
    z = torch.randn(n_samples, p.means.shape[1], dtype=torch.float64, device=device,
                    generator=generator)
    factors = torch.linalg.cholesky(p.covariances)
    x = p.means[labels] + torch.einsum("nij,nj->ni", factors[labels], z)
    dtype = torch.float32 if estimator.means_.dtype == np.float32 else torch.float64
    return x.to(dtype), labels


def conditional_mean(estimator, given, values):
    """``E[x_rest | x[given] = v]`` for query tensors, on their device (float64 inside)."""
    from .._algebra import _split, marginal

    params = estimator._params()
    rest, _, regression = _split(params, given)
    dev = values.device
    v = values.to(torch.float64)
    marg = marginal(params, given)
    centre = marg.weights @ marg.means / marg.weights.sum()
    pm = to_torch_params(marg.shifted(-centre), dev)
    log_norm = _log_norm(pm)
    logits, _ = _logits(v - torch.as_tensor(centre, device=dev), pm, log_norm)
    resp = torch.softmax(logits, dim=1)
    mu_rest = torch.as_tensor(params.means[:, rest], dtype=torch.float64, device=dev)
    if regression is None:
        out = resp @ mu_rest
    else:
        reg_t = torch.as_tensor(np.ascontiguousarray(regression), dtype=torch.float64,
                                device=dev)
        mu_given = torch.as_tensor(params.means[:, given], dtype=torch.float64, device=dev)
        comp = mu_rest[None] + torch.einsum("kba,mka->mkb", reg_t, v[:, None, :] - mu_given[None])
        out = torch.einsum("mk,mkb->mb", resp, comp)
    return out.to(values.dtype if values.is_floating_point() else torch.float64)
