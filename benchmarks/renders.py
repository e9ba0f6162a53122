"""Re-render times of a fitted picture: each render of ``gaussmix paint`` from the model,
what the studio's sliders wait for.

    python benchmarks/renders.py [--size 512] [-k 1000]

Fits the astronaut (scikit-image's sample) at ``size`` x ``size`` in colour once, then times
every render at that size (best of three), with the (x, y) grid shared by the density,
contour and components renders as the pipeline shares it; then what the studio answers when
a slider moves: a new sharpen (the mixture rescaled, the grid and the render again) and
another tone curve or peak (the grid kept), each to PNG bytes.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def best_of(function, repeats=3):
    best, result = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    os.environ.setdefault("GAUSSMIX_COMPILE", "foreground")  # time the kernels
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("-k", type=int, default=1000)
    args = parser.parse_args()
    from skimage import data
    from skimage.transform import resize

    from gaussmix.imaging import paint, render

    image = resize(data.astronaut(), (args.size, args.size), anti_aliasing=True)
    start = time.perf_counter()
    painting = paint(image, mode="color", n_components=args.k, renders=["density"],
                     max_pixels=args.size * args.size)
    print(f"fit {args.size}x{args.size}, K={args.k}: {time.perf_counter() - start:.1f} s "
          f"({painting.report['iterations']} iterations)")
    model, shape = painting.model, painting.shape
    grid_s, grid = best_of(lambda: render.evaluate_grid(model, shape))
    colours = render.mean_colours(model)
    timings = {
        "(x, y) grid": grid_s,
        "density": best_of(lambda: render.render_density(grid))[0],
        "density-mapped": best_of(lambda: render.render_density(
            grid, render.DEFAULT_TONE_KNOTS))[0],
        "contour": best_of(lambda: render.render_contour(grid))[0],
        "components": best_of(lambda: render.render_components(grid, colours))[0],
        "conditional-mean": best_of(lambda: render.render_conditional_mean(model, shape))[0],
        "samples (half the pixels)": best_of(lambda: render.render_samples(
            model, shape, shape[0] * shape[1] // 2))[0],
        "sharpen 0.6 (covariances scaled)": best_of(lambda: model.scale_covariances(0.6))[0],
    }
    print("| render | seconds |\n|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.3f} |")
    studio(painting)


def studio(painting):
    """Seconds from a slider's move to the PNG, as the studio's render endpoint works."""
    from gaussmix.imaging.pipeline import Renderer
    from gaussmix.studio.jobs import GALLERY_ORDER, png_bytes

    print("\n| render (studio, to PNG) | new sharpen | new tone or peak |\n|---|---|---|")
    for name in GALLERY_ORDER:
        sharpen_s, _ = best_of(lambda: png_bytes(Renderer(painting, 0.8).render(name)))
        kept = Renderer(painting, 0.8)
        kept.render(name)
        other_s, _ = best_of(lambda: png_bytes(kept.render(name, peak_quantile=0.9)))
        print(f"| {name} | {sharpen_s:.3f} | {other_s:.3f} |")


if __name__ == "__main__":
    main()
