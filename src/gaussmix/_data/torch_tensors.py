"""PyTorch tensors on a device: the E-step, scoring and sampling where the data live.

This backend supplies the seam's ``expectation(source, params) -> Stats`` and nothing else of
the fit: initialisation (on a sample moved to the host), the M-step, repairs, convergence,
``n_init`` and warm starts are the shared ones (``fit``, ``em``, ``init``). A chunk's
logits are matrix products of the feature map ``phi(x) = [1, x, quadratic terms]`` in the
data's dtype (float32 is the fast case on a GPU), with the components whose expanded
quadratic form would cancel (``em.plan_e_step``'s guard, with a limit for the dtype) in
difference form; responsibilities are turned into statistics in float64 about the same
reference points as the numpy E-step, so that nothing cancels. Memory on the device is
O(chunk_rows * K).

CPU tensors do not come here unless ``backend='torch'`` asks: they are zero-copy numpy views
for the numba kernel (see ``inputs``). Imported only when the user passes a tensor.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from .._foundations.covariance import (
    as_full,
    covariance_cholesky_from_precision_cholesky,
    upper_triangle,
)
from .._mathematics.algebra import _split, marginal
from .chunks import ArrayChunks, default_chunk_size, spaced_rows
from .held import HeldRows
from .streams import MeasuredData
from .._mathematics.em import (
    FEATURE_SQUARE_CAP,
    MAX_RESEED_CANDIDATES,
    float32_logits_cancel,
    n_quadratic_features,
    plan_e_step,
    put_exact_moments,
    robust_centre,
    split_moments,
)
from .._foundations.stats import Stats, merge_worst
from .._foundations.validation import (
    BAD_WEIGHTS,
    NO_POSITIVE_WEIGHT,
    InputError,
    check_enough_rows,
    non_finite_error,
)

# On an accelerator a chunk's work arrays take about this fraction of the device's memory
# (large chunks: each launches the same few dozen kernels, whatever its size), at about
# BYTES_PER_PAIR per (row, component) pair: logits, responsibilities and their float64 copy.
DEVICE_MEMORY_FRACTION = 1 / 16
BYTES_PER_PAIR = 40
# float32 chunks whose rows' best logits exceed this in size take float64 logits (see
# weighted_log_prob): below it float32 keeps them to about 1e-5 nats.
FLOAT32_LOGIT_LIMIT = 128.0
MIN_CHUNK_ROWS = 1024
# Rows per step of the passes that measure the data and draw the initialisation sample.
SAMPLE_STEP_ROWS = 2**22

NUMPY_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}


def numpy_dtype(tensor_dtype):
    return NUMPY_DTYPES[tensor_dtype]


def torch_dtype(numpy_dtype):
    return torch.float32 if np.dtype(numpy_dtype) == np.float32 else torch.float64


# --------------------------------------------------------------------------------------------
# Input


def as_float_tensor(X):
    """A 2-D float32 or float64 tensor (other real dtypes become float64), detached."""
    if X.ndim != 2:
        raise InputError(f"Expected a 2-D tensor, got shape {tuple(X.shape)}. Reshape your data "
                         "with X.reshape(-1, 1) if it holds a single feature.")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise InputError(f"Found a tensor of shape {tuple(X.shape)}; pass at least one row and "
                         "one column.")
    if X.is_complex():
        raise InputError(f"Unsupported tensor dtype {X.dtype}; pass real numbers.")
    X = X.detach()
    if X.dtype not in NUMPY_DTYPES:
        X = X.to(torch.float32 if X.dtype in (torch.float16, torch.bfloat16) else torch.float64)
    return X


def check_finite_tensor(X):
    bad_nan = torch.isnan(X).any(dim=1)
    bad_inf = torch.isinf(X).any(dim=1)
    n_nan, n_inf = int(bad_nan.sum()), int(bad_inf.sum())
    if n_nan or n_inf:
        first = int(torch.nonzero(bad_nan | bad_inf)[0, 0])
        error = non_finite_error("X", n_nan, n_inf, first)
        if n_nan and not n_inf:  # missing values: the host path takes them
            error = InputError(f"{str(error)[:-1]}, or fit X.cpu() with backend=None: "
                               "missing values (NaN) are fitted on the CPU, not yet on a "
                               "device.")
        raise error


def weight_tensor(sample_weight, X):
    """Validated float64 weights on X's device (ones when None)."""
    if sample_weight is None:
        return torch.ones(X.shape[0], dtype=torch.float64, device=X.device)
    w = torch.as_tensor(sample_weight, dtype=torch.float64, device=X.device)
    if w.ndim != 1 or w.shape[0] != X.shape[0]:
        raise InputError(f"sample_weight has shape {tuple(w.shape)} but X has {X.shape[0]} "
                         "rows; pass one non-negative weight per row.")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise InputError(BAD_WEIGHTS)
    if not (w > 0).any():
        raise InputError(NO_POSITIVE_WEIGHT)
    _, exponent = torch.frexp(w.max())  # as _validation.unit_scale: exact, tiny weights kept
    return torch.ldexp(w, -exponent) if int(exponent) < 0 else w


class TensorChunks(HeldRows):
    """Rows on a device, yielded in working coordinates as ``(x, w)`` tensor chunks.

    The device keeps the rows as given; each chunk is moved to working coordinates in
    float64 and then rounded to the rows' dtype (:meth:`rows`), and its float64 version is at
    hand (:meth:`wide`): float32 rows shifted in float32 would keep only about 6e-8 of their
    distance from the origin, so a row far from it would lose its place relative to a
    component near it.

    Parameters
    ----------
    data : tensor of shape (N, D), float32 or float64, data coordinates
    sample_weight : tensor of shape (N,), float64
    chunk_size : int
    shift : tensor of shape (D,), float64, optional
        The origin of the working coordinates (zeros: none).
    """

    def __init__(self, data, sample_weight, chunk_size, shift=None):
        self.x = data
        self.sample_weight = sample_weight
        self.chunk_size = int(chunk_size)
        self.shift = (torch.zeros(data.shape[1], dtype=torch.float64, device=data.device)
                      if shift is None else shift)

    def bounds(self):
        return [(s, min(s + self.chunk_size, self.n_rows))
                for s in range(0, self.n_rows, self.chunk_size)]

    def wide(self, start, stop):
        """Rows ``start:stop`` in working coordinates, float64."""
        return self.x[start:stop].to(torch.float64) - self.shift

    def rows(self, start, stop):
        """Rows ``start:stop`` in working coordinates, in the rows' dtype."""
        return self.wide(start, stop).to(self.x.dtype)

    def __iter__(self):
        for start, stop in self.bounds():
            yield self.rows(start, stop), self.sample_weight[start:stop]


def chunk_rows(n_components, n_features, device, chunk_size=None):
    """Rows per chunk: the user's ``chunk_size``, else the usual one on the CPU, and on an
    accelerator as many as fill ``DEVICE_MEMORY_FRACTION`` of its memory."""
    if chunk_size is not None:
        return int(chunk_size)
    if device.type == "cpu":
        return default_chunk_size(n_components, n_features)
    memory = torch.cuda.get_device_properties(device).total_memory
    rows = int(memory * DEVICE_MEMORY_FRACTION) // (BYTES_PER_PAIR * max(1, n_components))
    return max(MIN_CHUNK_ROWS, rows)


@dataclass(frozen=True)
class TorchData(MeasuredData):
    """A tensor prepared for a fit on its device: the rows as given (moved to working
    coordinates chunk by chunk, see :class:`TensorChunks`) and float64 weights, both on the
    device."""

    x: torch.Tensor
    w: torch.Tensor

    @property
    def device(self):
        return self.x.device

    def backend_for(self, requested, n_components):
        return "torch"

    def chunk_rows(self, n_components):
        return chunk_rows(n_components, self.n_features, self.device)

    def fit_source(self, backend, chunk_size):
        return TensorChunks(self.x, self.w, chunk_size, self._device_shift())

    def _device_shift(self):
        return torch.as_tensor(self.shift, dtype=torch.float64, device=self.device)

    def expectation_for(self, backend):
        return expectation

    def sample(self, n_rows, random_state):
        """About ``n_rows`` positive-weight rows, moved to the host as ArrayChunks (float64,
        working coordinates); every positive row when there are not many more. The draw
        runs on the device in steps, seeded from ``random_state``."""
        p = min(1.0, n_rows / max(self.n_positive, 1))
        generator = None
        if p < 1.0:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(random_state.randint(0, 2**31 - 1)))
        rows, weights = [], []
        shift = self._device_shift()
        for start in range(0, self.n_rows, SAMPLE_STEP_ROWS):
            x = self.x[start:start + SAMPLE_STEP_ROWS].to(torch.float64) - shift
            w = self.w[start:start + SAMPLE_STEP_ROWS]
            keep = w > 0
            if generator is not None:
                keep &= torch.rand(len(w), generator=generator, device=self.device,
                                   dtype=torch.float64) < p
            rows.append(x[keep].to(torch.float64).cpu())
            weights.append(w[keep].cpu())
        x = torch.cat(rows).numpy()
        return ArrayChunks(x, torch.cat(weights).numpy(), np.zeros(self.n_features),
                           max(1, len(x)))


def _weighted_sum(X, w, function):
    """``sum_n w_n function(x_n)`` in float64, in steps of rows (no float64 copy of X)."""
    total = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device)
    for start in range(0, X.shape[0], SAMPLE_STEP_ROWS):
        rows = X[start:start + SAMPLE_STEP_ROWS].to(torch.float64)
        total += w[start:start + SAMPLE_STEP_ROWS] @ function(rows)
    return total


def prepare(X, sample_weight, n_components):
    """Validate a tensor and measure it on its device: :class:`TorchData`.

    The origin of the working coordinates is a robust centre (the weighted median of evenly
    spaced rows, ``chunks.robust_centre``); the variance is about the weighted mean, both
    computed in float64. The rows stay as given: chunks move to working coordinates as they
    are read (:class:`TensorChunks`).
    """
    X = as_float_tensor(X)
    check_finite_tensor(X)
    w = weight_tensor(sample_weight, X)
    n_positive = int((w > 0).sum())
    check_enough_rows(n_components, n_positive, sample_weight is not None)
    total = w.sum()
    mean = _weighted_sum(X, w, lambda rows: rows) / total
    variance = _weighted_sum(X, w, lambda rows: (rows - mean) ** 2) / total
    sample = torch.as_tensor(spaced_rows(X.shape[0]), device=X.device)
    shift = robust_centre(X[sample].to(torch.float64).cpu().numpy(), w[sample].cpu().numpy(),
                          mean.cpu().numpy())
    return TorchData(n_rows=X.shape[0], n_positive=n_positive, n_features=X.shape[1],
                     dtype=numpy_dtype(X.dtype), total_weight=float(total),
                     shift=shift, variance=variance.cpu().numpy(), x=X, w=w)


# --------------------------------------------------------------------------------------------
# Log-densities on the device


@dataclass(frozen=True)
class DeviceParams:
    """What a pass of E-steps needs on the device, from :func:`_em.plan_e_step`.

    Attributes
    ----------
    coef : tensor (F, K) or None
        Logit coefficients of the expanded form, in the dtype of the logits' product (the
        data's, or float64 where float32 would cancel).
    tied_chol : tensor (D, D) or None
        The shared precision factor of 'tied' (its quadratic term is not in ``coef``).
    exact : tensor of int (E,)
        Components in difference form.
    exact_means, exact_chol, exact_log_norm : tensors
        Their means (E, D), precision factors (shapes by type) and log normalisers (E,).
    wide : DeviceParams or None
        The same in float64, for a float32 chunk with a row far from every component (see
        :func:`weighted_log_prob`); None when these are float64 already.
    chol, log_norm : tensors
        Every component's precision factor and log normaliser (K,), float64, for rows whose
        squares would overflow the features (every component in difference form for them).
    origin : tensor (D,), float64
        Where the parameters' coordinates start in the data's (scoring shifts both).
    raw_means : tensor (K, D), float64
        The means in the data's coordinates as given (not shifted there and back).
    """

    covariance_type: str
    n_components: int
    coef: torch.Tensor | None
    tied_chol: torch.Tensor | None
    exact: torch.Tensor
    exact_means: torch.Tensor
    exact_chol: torch.Tensor
    exact_log_norm: torch.Tensor
    plan: object
    wide: object = None
    chol: torch.Tensor = None
    log_norm: torch.Tensor = None
    origin: torch.Tensor = None
    raw_means: torch.Tensor = None


def device_params(params, device, dtype, origin=None, raw_means=None):
    """:class:`DeviceParams` for numpy :class:`~gaussmix._mathematics.em.Params` (working coordinates,
    starting at ``origin`` in the data's, where the means are ``raw_means``; zeros and the
    params' means by default).

    The components are split as for the numpy E-step (``em.plan_e_step``). For float32 data
    the logits' matrix product runs in float32 when no expanded-form component would cancel
    there (``em.float32_logits_cancel``), else in float64, rounded to float32 after.
    """
    plan = plan_e_step(params)
    logits_dtype = dtype
    if dtype == torch.float32 and plan.coef is not None and float32_logits_cancel(params, plan):
        logits_dtype = torch.float64
    origin = np.zeros(params.n_features) if origin is None else origin
    raw_means = params.means + origin if raw_means is None else raw_means
    wide = None if dtype == torch.float64 else device_params(params, device, torch.float64,
                                                             origin, raw_means)

    def put(a, kind=dtype):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=kind, device=device)

    cov_type = params.covariance_type
    chol = params.precisions_cholesky
    exact = plan.exact
    return DeviceParams(
        covariance_type=cov_type,
        n_components=params.n_components,
        coef=None if plan.coef is None else put(plan.coef, logits_dtype),
        tied_chol=put(chol, logits_dtype) if cov_type == "tied" else None,
        exact=torch.as_tensor(exact, dtype=torch.long, device=device),
        exact_means=put(params.means[exact]),
        exact_chol=put(chol if cov_type == "tied" else chol[exact]),
        exact_log_norm=put(plan.log_norm[exact]),
        plan=plan,
        wide=wide,
        chol=put(chol, torch.float64),
        log_norm=put(plan.log_norm, torch.float64),
        origin=put(origin, torch.float64),
        raw_means=put(raw_means, torch.float64),
    )


@functools.lru_cache(maxsize=32)
def _triangle(n_features, device):
    return tuple(torch.as_tensor(i, device=device) for i in upper_triangle(n_features))


def features(x, covariance_type):
    """The feature map ``[1, x, quadratic terms]`` of ``em.features`` for tensors (n, F)."""
    n, d = x.shape
    parts = [torch.ones(n, 1, dtype=x.dtype, device=x.device), x]
    if covariance_type == "full":
        rows, cols = _triangle(d, x.device)
        parts.append(x[:, rows] * x[:, cols])
    elif covariance_type == "diag":
        parts.append(x * x)
    elif covariance_type == "spherical":
        parts.append((x * x).sum(dim=1, keepdim=True))
    return torch.cat(parts, dim=1)


def _whiten(diff, chol, covariance_type):
    """``(x_n - mu_k) U_k`` for differences (n, E, D)."""
    if covariance_type == "full":
        return torch.einsum("ned,edf->nef", diff, chol)
    if covariance_type == "tied":
        return diff @ chol
    if covariance_type == "diag":
        return diff * chol[None]
    return diff * chol[None, :, None]


def weighted_log_prob(x, dp, phi=None, wide=None, raw=None):
    """``log w_k + log N(x_n | k)`` of a chunk on its device, shape (n, K), in x's dtype, or
    in float64 for a float32 chunk with a row whose best logit exceeds
    ``FLOAT32_LOGIT_LIMIT`` in size: float32 keeps such a logit to about 6e-8 of itself, and
    that row's responsibilities, differences of large logits, to as little (the chunk is then
    computed again, in float64: one synchronisation with the device per float32 chunk).

    ``phi``: the chunk's :func:`features` in the dtype of ``dp.coef``, when already known;
    ``wide``: the chunk's rows in float64 (x itself in float64 when not given); ``raw``: the
    same rows in the data's coordinates, float64 (scoring): the difference form then runs on
    them, where ``x - mu`` is exact for a row at its component, not on two shifted values
    rounded apart.

    Returns
    -------
    logits : tensor (n, K)
    diff : tensor (n, E, D) or None
        The exact components' differences, for their moments.
    """
    logits, diff = _logits(x, dp, phi, raw)
    if dp.wide is not None and bool(
            torch.abs(logits.max(dim=1).values).max() > FLOAT32_LOGIT_LIMIT):
        return _logits(x.to(torch.float64) if wide is None else wide, dp.wide, None, raw)
    return logits, diff


def _logits(x, dp, phi=None, raw=None):
    """:func:`weighted_log_prob` in the precision of ``dp`` and ``x``; rows whose squares
    could overflow the features (``em.FEATURE_SQUARE_CAP``, seen only when scoring rows far
    beyond the data) take the difference form for every component, in float64."""
    n = x.shape[0]
    limit = np.sqrt(FEATURE_SQUARE_CAP / max(1, x.shape[1]))
    far = torch.abs(x).amax(dim=1) > limit if x.shape[1] else None
    far = far if far is not None and bool(far.any()) else None
    safe = x if far is None else torch.where(far[:, None], torch.zeros_like(x), x)
    if dp.coef is None:
        logits = torch.empty(n, dp.n_components, dtype=x.dtype, device=x.device)
    else:
        xc = safe.to(dp.coef.dtype)
        phi = features(xc, dp.covariance_type) if phi is None or far is not None else phi
        logits = phi @ dp.coef
        if dp.covariance_type == "tied":
            y = xc @ dp.tied_chol
            logits += -0.5 * (y * y).sum(dim=1, keepdim=True)
        logits = logits.to(x.dtype)
    diff = None
    if len(dp.exact) and raw is not None:
        chol = dp.chol if dp.covariance_type == "tied" else dp.chol[dp.exact]
        y = _whiten(raw[:, None, :] - dp.raw_means[dp.exact][None], chol, dp.covariance_type)
        exact_logits = dp.log_norm[dp.exact] - 0.5 * (y * y).sum(dim=2)
        logits[:, dp.exact] = torch.nan_to_num(exact_logits, nan=-torch.inf,
                                               neginf=-torch.inf).to(logits.dtype)
    elif len(dp.exact):
        diff = safe[:, None, :] - dp.exact_means[None]
        y = _whiten(diff, dp.exact_chol, dp.covariance_type)
        logits[:, dp.exact] = dp.exact_log_norm - 0.5 * (y * y).sum(dim=2)
    if far is not None:
        rows = raw[far] if raw is not None else x[far].to(torch.float64) + dp.origin
        logits[far] = _difference_logits(rows, dp).to(logits.dtype)
    return logits, diff


def _difference_logits(rows, dp):
    """Every component's logits of ``rows`` (m, D, the data's coordinates) in difference
    form, float64 (-inf where a distance overflows)."""
    y = _whiten(rows[:, None, :] - dp.raw_means[None], dp.chol, dp.covariance_type)
    logits = dp.log_norm - 0.5 * (y * y).sum(dim=2)
    return torch.nan_to_num(logits, nan=-torch.inf, neginf=-torch.inf)


def _log_softmax(logits):
    """``log p(x)`` (n,) and responsibilities (n, K); rows no component explains get -inf
    and uniform responsibilities, as in ``em.softmax_inplace`` (without a host sync)."""
    log_prob = torch.logsumexp(logits, dim=1)
    finite = torch.isfinite(log_prob)
    shift = torch.where(finite, log_prob, torch.zeros_like(log_prob))
    resp = torch.exp(logits - shift[:, None])
    resp = torch.where(finite[:, None], resp, 1.0 / logits.shape[1])
    return log_prob, resp


# --------------------------------------------------------------------------------------------
# The E-step


def _centred_moments(diff, weighted_resp, covariance_type):
    """Moments about the exact components' means from differences (n, E, D), float64."""
    resp_sum = weighted_resp.sum(dim=0)
    x_sum = torch.einsum("ne,ned->ed", weighted_resp, diff)
    if covariance_type in ("full", "tied"):
        scatter = torch.einsum("ne,ned,nef->edf", weighted_resp, diff, diff)
        xx_sum = scatter if covariance_type == "full" else scatter.sum(dim=0)
    elif covariance_type == "diag":
        xx_sum = torch.einsum("ne,ned->ed", weighted_resp, diff * diff)
    else:
        xx_sum = torch.einsum("ne,ned->e", weighted_resp, diff * diff)
    return resp_sum, x_sum, xx_sum


def expectation(source, params):
    """The seam's ``expectation`` on a device: :class:`~gaussmix._foundations.stats.Stats` of every chunk
    of ``source`` (:class:`TensorChunks`) under ``params`` (working coordinates), as the
    numpy E-step computes them: moments about the origin for expanded-form components, about
    their means for exact ones; float64, summed on the device and moved to the host once.
    """
    x_all = source.x
    dev, dtype = x_all.device, x_all.dtype
    dp = device_params(params, dev, dtype)
    means64 = (dp if dp.wide is None else dp.wide).exact_means
    cov_type = params.covariance_type
    k, d = params.means.shape
    f = 1 + d + n_quadratic_features(d, cov_type)
    exact = dp.exact
    n_exact = len(exact)
    f64 = {"dtype": torch.float64, "device": dev}
    moments = torch.zeros(k, f, **f64)
    tied_rest = torch.zeros(d, d, **f64)  # sum w (1 - r_exact) x x^T for tied
    exact_parts = None
    log_lik = torch.zeros((), **f64)
    n_candidates = min(k, MAX_RESEED_CANDIDATES)
    worst_lp, worst_x = [], []
    for start, stop in source.bounds():
        x, x64, w = source.rows(start, stop), source.wide(start, stop), \
            source.sample_weight[start:stop]
        phi = None if dp.coef is None else features(x.to(dp.coef.dtype), cov_type)
        logits, diff = weighted_log_prob(x, dp, phi, x64)
        log_prob, resp = _log_softmax(logits)
        weighted = resp.to(torch.float64) * w[:, None]
        # The moments take the float64 rows: float32 products would keep about 6e-8 of x^2
        # or of a far row's difference from a mean, more than a tight component's spread.
        if phi is not None:
            if phi.dtype != torch.float64:
                phi = features(x64, cov_type)
            moments += weighted.T @ phi
        if n_exact:
            if diff.dtype != torch.float64:
                diff = x64[:, None, :] - means64[None]
            part = _centred_moments(diff, weighted[:, exact], cov_type)
            exact_parts = part if exact_parts is None else tuple(
                a + b for a, b in zip(exact_parts, part))
        if cov_type == "tied" and phi is not None:
            rest = w if not n_exact else w * torch.clamp(1.0 - resp[:, exact].to(
                torch.float64).sum(dim=1), min=0.0)
            tied_rest += (x64 * rest[:, None]).T @ x64
        # No boolean indexing: it would wait for the device on every chunk.
        positive = w > 0
        lp = log_prob.to(torch.float64)
        log_lik += torch.where(positive, w * lp, 0.0).sum()
        low = torch.topk(torch.where(positive, lp, torch.inf), min(n_candidates, len(lp)),
                         largest=False)
        worst_lp.append(low.values)
        worst_x.append(x64[low.indices])
    return _host_stats(params, moments, tied_rest, exact_parts, dp, log_lik, source,
                       worst_lp, worst_x, n_candidates)


def _host_stats(params, moments, tied_rest, exact_parts, dp, log_lik, source, worst_lp,
                worst_x, n_candidates):
    """The device sums as one host :class:`Stats`."""
    cov_type = params.covariance_type
    d = params.n_features
    exact = dp.plan.exact
    resp_sum, x_sum, xx_sum = split_moments(moments.cpu().numpy(), d, cov_type)
    if cov_type == "tied":
        xx_sum = tied_rest.cpu().numpy()
    center = np.zeros_like(params.means)
    if len(exact):
        part = [a.cpu().numpy() for a in exact_parts]
        center[exact] = params.means[exact]
        xx_sum = put_exact_moments(resp_sum, x_sum, xx_sum, exact, part, cov_type)
    w = source.sample_weight
    worst_lp = np.concatenate([a.cpu().numpy() for a in worst_lp] or [np.empty(0)])
    worst_x = np.concatenate([a.cpu().numpy() for a in worst_x] or [np.empty((0, d))])
    taken = worst_lp < np.inf  # the places of zero-weight rows
    worst = merge_worst((worst_lp[taken],), (worst_x[taken],), n_candidates)
    return Stats(
        covariance_type=cov_type,
        center=center,
        resp_sum=resp_sum,
        x_sum=x_sum,
        xx_sum=xx_sum,
        log_likelihood=float(log_lik),
        weight_sum=float(w.sum()),
        n_rows=int((w > 0).sum()),
        worst_log_prob=worst[0],
        worst_points=worst[1],
    )


# --------------------------------------------------------------------------------------------
# Inference and sampling on the device


def log_prob_labels_resp(params, X, want_resp=False, chunk_size=None):
    """``log p(x)`` (N,), most likely components (N,) and, if asked, responsibilities (N, K)
    of a validated tensor, on its device, in its dtype (labels int64).

    The rows and the means are centred on the mixture's weighted median first (in float64),
    as for arrays (``inference.centred``), and the difference form runs in the data's own
    coordinates.
    """
    centre = robust_centre(params.means, params.weights, np.zeros(params.n_features))
    dp = device_params(params.shifted(-centre), X.device, X.dtype, centre, params.means)
    step = chunk_rows(params.n_components, params.n_features, X.device, chunk_size)
    log_prob, labels, resp = [], [], []
    for start in range(0, X.shape[0], step):
        raw = X[start:start + step].to(torch.float64)
        wide = raw - dp.origin
        logits, _ = weighted_log_prob(wide.to(X.dtype), dp, wide=wide, raw=raw)
        labels.append(logits.argmax(dim=1))
        lp, r = _log_softmax(logits)
        log_prob.append(lp)
        if want_resp:
            resp.append(r)
    out = (torch.cat(log_prob), torch.cat(labels))
    return out + ((torch.cat(resp),) if want_resp else ())


def sample(params, n_samples, device, random_state, dtype):
    """``n_samples`` rows drawn on ``device``, grouped by component.

    The counts per component come from ``random_state`` (as for arrays); the normal draws
    from a device generator seeded from it, so a seed reproduces them and None does not.

    Returns
    -------
    X : tensor (n_samples, D) in ``dtype``; labels : tensor (n_samples,) int64
    """
    k, d = params.means.shape
    counts = random_state.multinomial(n_samples, params.weights / params.weights.sum())
    generator = torch.Generator(device=device)
    generator.manual_seed(int(random_state.randint(0, 2**31 - 1)))
    factors = as_full(covariance_cholesky_from_precision_cholesky(
        params.precisions_cholesky, params.covariance_type), params.covariance_type, k, d)
    f64 = {"dtype": torch.float64, "device": device}
    labels = torch.repeat_interleave(torch.arange(k, device=device),
                                     torch.as_tensor(counts, device=device))
    z = torch.randn(n_samples, d, generator=generator, **f64)
    means = torch.as_tensor(params.means, **f64)
    factors = torch.as_tensor(np.ascontiguousarray(factors), **f64)
    x = torch.empty(n_samples, d, dtype=dtype, device=device)
    step = 65536
    for start in range(0, n_samples, step):
        lab = labels[start:start + step]
        block = means[lab] + torch.einsum("nij,nj->ni", factors[lab], z[start:start + step])
        x[start:start + step] = block.to(dtype)
    return x, labels


def conditional_mean(params, given, values):
    """``E[x_rest | x[given] = v]`` for a query tensor (M, len(given)) on its device."""
    rest, _, regression = _split(params, given)
    dev = values.device
    f64 = {"dtype": torch.float64, "device": dev}
    v = values.to(torch.float64)
    marg = marginal(params, given)
    resp = log_prob_labels_resp(marg, v, want_resp=True)[2]
    mu_rest = torch.as_tensor(params.means[:, rest], **f64)
    if regression is None:
        out = resp @ mu_rest
    else:
        reg = torch.as_tensor(np.ascontiguousarray(regression), **f64)
        mu_given = torch.as_tensor(params.means[:, given], **f64)
        comp = mu_rest[None] + torch.einsum("kba,mka->mkb", reg, v[:, None, :] - mu_given[None])
        out = torch.einsum("mk,mkb->mb", resp, comp)
    return out.to(values.dtype if values.is_floating_point() else torch.float64)

