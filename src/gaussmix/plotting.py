"""Tutorial figures with matplotlib. Every function returns a Figure (the caller saves it).

Needs the ``images`` extra (matplotlib). Figures are built with ``matplotlib.figure.Figure``
directly, so no display or pyplot state is involved.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from ._mathematics.algebra import dense_covariances
from .bayesian import BayesianGaussianMixture
from .mixture import GaussianMixture

COMPONENT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                     "#e377c2", "#17becf")


def _figure(width, height, dpi=100):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi, layout="constrained")


def _colour(k):
    return COMPONENT_COLOURS[k % len(COMPONENT_COLOURS)]


def mixture_pdf_1d(x, weights, means, stds):
    """Component densities (K, len(x)) weighted by ``weights``, and their sum (len(x),)."""
    parts = np.array([w * norm.pdf(x, m, s) for w, m, s in zip(weights, means, stds)])
    return parts, parts.sum(axis=0)


def _model_1d(model):
    """Weights, means and standard deviations of a 1-D GaussianMixture."""
    if model.n_features_in_ != 1:
        raise ValueError(f"A 1-D figure needs a model of one feature, got {model.n_features_in_}; "
                         "use model.marginal([i]) first.")
    stds = np.sqrt(dense_covariances(model._params())[:, 0, 0])
    return model.weights_.astype(float), model.means_[:, 0].astype(float), stds


def _draw_1d(ax, x, weights, means, stds, title=None):
    parts, total = mixture_pdf_1d(x, weights, means, stds)
    for k, part in enumerate(parts):
        ax.plot(x, part, "--", color=_colour(k), lw=1.4,
                label=f"w={weights[k]:.2f} N({means[k]:.2f}, {stds[k]:.2f}²)")
    ax.plot(x, total, "k-", lw=2.2, label="mixture")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title, fontsize=10)
    ax.set_ylim(0, 1.08 * total.max())
    return total.max()


def figure_1d_mixture(weights=(0.3, 0.5, 0.2), means=(-2.0, 1.0, 4.0), stds=(0.8, 1.2, 0.6)):
    """Components (dashed, each weighted) and the mixture density (solid) of a 1-D mixture."""
    weights, means, stds = map(np.asarray, (weights, means, stds))
    x = np.linspace(means.min() - 4 * stds.max(), means.max() + 4 * stds.max(), 600)
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    _draw_1d(ax, x, weights, means, stds, "A Gaussian mixture: weighted components add up")
    ax.legend(fontsize=8, frameon=False)
    return fig


def figure_1d_weights(weight_sets=((1 / 3, 1 / 3, 1 / 3), (0.7, 0.2, 0.1), (0.1, 0.2, 0.7),
                                   (0.45, 0.1, 0.45)),
                      means=(-2.0, 1.0, 4.0), stds=(0.8, 1.2, 0.6)):
    """A panel of mixtures with the same components and different weights."""
    means, stds = np.asarray(means), np.asarray(stds)
    x = np.linspace(means.min() - 4 * stds.max(), means.max() + 4 * stds.max(), 600)
    fig = _figure(3.2 * len(weight_sets), 3.2)
    axes = np.atleast_1d(fig.subplots(1, len(weight_sets), sharey=True))
    peaks = [_draw_1d(ax, x, np.asarray(weights), means, stds,
                      "weights " + ", ".join(f"{w:.2f}" for w in weights))
             for ax, weights in zip(axes, weight_sets)]
    axes[0].set_ylim(0, 1.08 * max(peaks))  # shared: the tallest mixture fits
    fig.suptitle("Same components, different weights", fontsize=11)
    return fig


def figure_1d_fit(data, model, bins=40):
    """Data as a histogram and a rug, with the fitted mixture's density and components.

    Parameters
    ----------
    data : array-like of shape (n,) or (n, 1)
    model : GaussianMixture fitted on one feature
    """
    data = np.asarray(data, dtype=float).ravel()
    weights, means, stds = _model_1d(model)
    pad = 3 * stds.max()
    x = np.linspace(min(data.min(), means.min()) - pad, max(data.max(), means.max()) + pad, 600)
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    ax.hist(data, bins=bins, density=True, color="0.85", edgecolor="0.6", label="data")
    _draw_1d(ax, x, weights, means, stds,
             f"{model.n_components} components fitted to {len(data)} points")
    ax.set_ylim(0, 1.08 * max(ax.get_ylim()[1], max(p.get_height() for p in ax.patches)))
    rug_height = 0.03 * ax.get_ylim()[1]
    ax.plot(data, np.full_like(data, -0.5 * rug_height), "|", color="0.2", ms=8, alpha=0.5,
            label="rug")
    ax.set_ylim(-rug_height, None)
    ax.legend(fontsize=8, frameon=False)
    return fig


def sampling_frames(model, n_draws=40, seed=0):
    """The draws of the sampling animation: for each, the component chosen and the point.

    Returns
    -------
    components : ndarray of shape (n_draws,), int
    points : ndarray of shape (n_draws,)
    """
    weights, means, stds = _model_1d(model)
    rng = np.random.RandomState(seed)
    components = rng.choice(len(weights), size=n_draws, p=weights / weights.sum())
    points = rng.normal(means[components], stds[components])
    return components, points


def sampling_animation(model, n_draws=40, seed=0, interval_ms=350):
    """How a mixture samples: pick a component by its weight, then draw from it.

    Each draw takes two frames: the chosen component is highlighted, then the sampled point
    appears (and stays) under the mixture's density, drawn in black.

    Returns
    -------
    fig : matplotlib.figure.Figure
    animation : matplotlib.animation.FuncAnimation
        Save with ``animation.save(path, writer=matplotlib.animation.PillowWriter(fps=3))``.
    """
    from matplotlib.animation import FuncAnimation

    weights, means, stds = _model_1d(model)
    components, points = sampling_frames(model, n_draws, seed)
    x = np.linspace(means.min() - 4 * stds.max(), means.max() + 4 * stds.max(), 500)
    parts, total = mixture_pdf_1d(x, weights, means, stds)
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    ax.plot(x, total, "k-", lw=2.2)
    lines = [ax.plot(x, part, "--", color=_colour(k), lw=1.2, alpha=0.35)[0]
             for k, part in enumerate(parts)]
    fills = [ax.fill_between(x, part, color=_colour(k), alpha=0.0) for k, part in enumerate(parts)]
    dots = ax.scatter([], [], s=40, zorder=3)
    title = ax.set_title("", fontsize=10)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_ylim(-0.04 * total.max(), 1.1 * total.max())

    def frame(i):
        draw, stage = divmod(i, 2)
        k = components[draw]
        for j, (line, fill) in enumerate(zip(lines, fills)):
            chosen = j == k
            line.set_alpha(1.0 if chosen else 0.35)
            line.set_linewidth(2.4 if chosen else 1.2)
            fill.set_alpha(0.25 if chosen else 0.0)
        shown = draw + stage  # points drawn so far
        offsets = np.column_stack([points[:shown], np.full(shown, -0.02 * total.max())])
        dots.set_offsets(offsets if shown else np.empty((0, 2)))
        dots.set_color([_colour(c) for c in components[:shown]])
        step = "pick a component" if stage == 0 else f"draw x = {points[draw]:.2f}"
        title.set_text(f"draw {draw + 1}/{n_draws}: component {k + 1} "
                       f"(weight {weights[k]:.2f}) - {step}")
        return [*lines, *fills, dots, title]

    animation = FuncAnimation(fig, frame, frames=2 * n_draws, interval=interval_ms, blit=False)
    return fig, animation


def _ellipse_patches(ax, model, n_std=2.0):
    from matplotlib.patches import Ellipse

    cov = dense_covariances(model._params())
    for k, (mean, c) in enumerate(zip(model.means_, cov)):
        values, vectors = np.linalg.eigh(c[:2, :2])
        angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
        ax.add_patch(Ellipse(mean[:2], 2 * n_std * np.sqrt(values[1]),
                             2 * n_std * np.sqrt(values[0]), angle=angle, fill=False,
                             color=_colour(k), lw=1.8))


def figure_2d(data, model, levels=12):
    """Data beside the contour plot of log p, with a legend and the components' ellipses.

    Parameters
    ----------
    data : array-like of shape (n, 2)
    model : GaussianMixture fitted on two features
    """
    data = np.asarray(data, dtype=float)
    if data.ndim != 2 or data.shape[1] != 2 or model.n_features_in_ != 2:
        raise ValueError("figure_2d needs 2-D data (n, 2) and a model of two features.")
    pad = 0.1 * np.ptp(data, axis=0)
    lo, hi = data.min(axis=0) - pad, data.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    log_p = model.score_samples(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
    labels = model.predict(data)
    fig = _figure(11, 4.6)
    left, right = fig.subplots(1, 2, sharex=True, sharey=True)
    for k in range(model.n_components):
        mine = labels == k
        left.scatter(data[mine, 0], data[mine, 1], s=6, color=_colour(k), alpha=0.6,
                     label=f"component {k + 1} ({mine.sum()} points)")
    left.set_title("data, coloured by most likely component", fontsize=10)
    left.legend(fontsize=8, markerscale=2, frameon=False)
    top = log_p.max()
    filled = right.contourf(gx, gy, np.clip(log_p, top - 15, None), levels=levels, cmap="viridis")
    right.contour(gx, gy, log_p, levels=filled.levels, colors="k", linewidths=0.3)
    _ellipse_patches(right, model)
    right.plot(*model.means_[:, :2].T, "w+", ms=10, mew=2, label="means")
    right.legend(fontsize=8, frameon=False, loc="upper left")
    right.set_title("log p(x) with 2-sigma ellipses", fontsize=10)
    fig.colorbar(filled, ax=right, label="log p(x)")
    for ax in (left, right):
        ax.set_xlabel("x1")
        ax.set_aspect("equal")
    left.set_ylabel("x2")
    return fig


def figure_conditionals(gaussian, mixture, slices=(-1.5, 0.0, 1.5)):
    """Slices ``p(x2 | x1 = a)`` of a 2-D Gaussian and of a mixture, beside their joints.

    Parameters
    ----------
    gaussian, mixture : GaussianMixture over two features (the first with one component)
    slices : values ``a`` of x1 to condition on
    """
    from matplotlib import colormaps

    models = (("a Gaussian", gaussian), ("a mixture", mixture))
    fig = _figure(11, 8)
    axes = fig.subplots(2, 2, width_ratios=(1, 1.2))
    colours = colormaps["plasma"](np.linspace(0.1, 0.8, len(slices)))
    for row, (name, model) in enumerate(models):
        joint_ax, slice_ax = axes[row]
        mean = model.mean()
        spread = np.sqrt(np.diag(model.covariance()))
        lo, hi = mean - 3.5 * spread, mean + 3.5 * spread
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 250), np.linspace(lo[1], hi[1], 250))
        log_p = model.score_samples(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
        joint_ax.contourf(gx, gy, np.exp(log_p), levels=14, cmap="Greys")
        y = np.linspace(lo[1], hi[1], 400)
        for a, colour in zip(slices, colours):
            joint_ax.axvline(a, color=colour, lw=2)
            cond = model.condition([0], [a])
            density = np.exp(cond.score_samples(y[:, np.newaxis]))
            slice_ax.plot(y, density, color=colour, lw=2, label=f"x1 = {a:g}")
            slice_ax.axvline(float(cond.mean()[0]), color=colour, ls=":", lw=1)
        joint_ax.set_title(f"joint density of {name}", fontsize=10)
        joint_ax.set_xlabel("x1")
        joint_ax.set_ylabel("x2")
        slice_ax.set_title(f"p(x2 | x1 = a) of {name} (dotted: conditional means)", fontsize=10)
        slice_ax.set_xlabel("x2")
        slice_ax.set_ylabel("density")
        slice_ax.legend(fontsize=8, frameon=False)
    return fig


def figure_dirichlet_process(data, em_model, dp_model, bins=40):
    """Ten components by EM against a Dirichlet-process fit with ten at most: both
    densities over the data, and every component's weight side by side.

    Parameters
    ----------
    data : array-like of shape (n,) or (n, 1)
    em_model : GaussianMixture fitted on one feature
    dp_model : BayesianGaussianMixture fitted on one feature
    """
    data = np.asarray(data, dtype=float).ravel()
    fig = _figure(13, 3.8)
    axes = fig.subplots(1, 3, width_ratios=(1, 1, 0.8))
    active = dp_model.active()
    shown = ((em_model, f"EM: all {em_model.n_components} components used"),
             (active, f"Dirichlet process: {active.n_components} of {dp_model.n_components} "
                      "carry weight"))
    pad = 3 * float(np.sqrt(np.max(dense_covariances(em_model._params()))))
    x = np.linspace(data.min() - pad, data.max() + pad, 600)
    for ax, (model, title) in zip(axes, shown):
        ax.hist(data, bins=bins, density=True, color="0.85", edgecolor="0.6")
        weights, means, stds = _model_1d(model)
        parts, total = mixture_pdf_1d(x, weights, means, stds)
        for k, part in enumerate(parts):
            ax.plot(x, part, "--", color=_colour(k), lw=1.1)
        ax.plot(x, total, "k-", lw=2.0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("x")
    axes[0].set_ylabel("density")
    order = np.arange(em_model.n_components)
    axes[2].bar(order - 0.2, np.sort(em_model.weights_)[::-1], width=0.4, color="0.55",
                label="EM")
    axes[2].bar(order + 0.2, np.sort(dp_model.weights_)[::-1], width=0.4, color=_colour(0),
                label="Dirichlet process")
    axes[2].set_yscale("log")
    axes[2].set_ylim(1e-6, 1.0)
    axes[2].set_xlabel("component (by weight)")
    axes[2].set_ylabel("weight")
    axes[2].set_title("Weights: unneeded components switched off", fontsize=10)
    axes[2].legend(fontsize=8, frameon=False)
    return fig


def tutorial_models(seed=0):
    """The data and models the tutorial figures use: a 1-D sample and its 3-component fit,
    2-D blobs and their fit, a correlated 2-D Gaussian and a 2-D mixture for conditionals.

    Returns
    -------
    dict with keys 'data_1d', 'model_1d', 'data_2d', 'model_2d', 'gaussian', 'mixture',
    'em_10' and 'dp_10' (ten components by EM and by a Dirichlet process, on 'data_1d')
    """
    rng = np.random.RandomState(seed)
    data_1d = np.concatenate([rng.normal(-2, 0.8, 300), rng.normal(1, 1.2, 500),
                              rng.normal(4, 0.6, 200)])
    model_1d = GaussianMixture(3, random_state=seed).fit(data_1d[:, np.newaxis])
    data_2d = np.concatenate([
        rng.multivariate_normal([0, 0], [[1.0, 0.6], [0.6, 1.0]], 300),
        rng.multivariate_normal([4, 1], [[0.4, -0.3], [-0.3, 1.2]], 250),
        rng.multivariate_normal([1.5, 4], [[1.5, 0.0], [0.0, 0.3]], 200),
    ])
    model_2d = GaussianMixture(3, random_state=seed).fit(data_2d)
    gaussian = GaussianMixture.from_params([1.0], [[0.0, 0.0]], [[[1.0, 0.8], [0.8, 1.0]]])
    mixture = GaussianMixture.from_params(
        [0.5, 0.3, 0.2], [[-1.0, -1.0], [1.2, 1.5], [0.5, -2.0]],
        [[[0.6, 0.3], [0.3, 0.6]], [[0.5, -0.2], [-0.2, 0.4]], [[0.3, 0.0], [0.0, 0.2]]],
    )
    column = data_1d[:, np.newaxis]
    em_10 = GaussianMixture(10, random_state=seed, max_iter=500).fit(column)
    dp_10 = BayesianGaussianMixture(n_components=10, weight_concentration_prior=1e-2,
                                    max_iter=1000, random_state=seed).fit(column)
    return dict(data_1d=data_1d, model_1d=model_1d, data_2d=data_2d, model_2d=model_2d,
                gaussian=gaussian, mixture=mixture, em_10=em_10, dp_10=dp_10)
