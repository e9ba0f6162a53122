"""Thumbnails of a ``gaussmix demo`` run (and of ``gaussmix figures``) for the README.

Usage::

    gaussmix demo --out gaussmix-demo && gaussmix figures --out gaussmix-figures
    python docs/gallery.py gaussmix-demo gaussmix-figures

writes ``docs/images/{horse,astronaut}-<render>.png`` and ``docs/images/fig-<figure>.png``
(200 pixels high) and ``docs/images/fig-sampling.gif`` (copied as it is).
"""

import os
import shutil
import sys

from PIL import Image

HEIGHT = 200
RENDERS = {
    "horse": ["samples", "density", "density-mapped", "contour", "components", "ellipses"],
    "astronaut": ["samples", "density-mapped", "conditional-mean", "components", "ellipses",
                  "contour"],
}
FIGURES = ["1d-mixture", "1d-weights", "1d-fit", "2d-density", "conditionals",
           "dirichlet-process"]
FIGURE_HEIGHT = 260


def thumbnail(source, target, height=HEIGHT):
    image = Image.open(source).convert("RGB")
    width = round(image.width * height / image.height)
    image.resize((width, height), Image.LANCZOS).save(target, optimize=True)


def main(demo_folder, figures_folder=None,
         out_folder=os.path.join(os.path.dirname(__file__), "images")):
    os.makedirs(out_folder, exist_ok=True)
    for picture, renders in RENDERS.items():
        for name in renders:
            thumbnail(os.path.join(demo_folder, picture, f"{name}.png"),
                      os.path.join(out_folder, f"{picture}-{name}.png"))
    if figures_folder is not None:
        for name in FIGURES:
            thumbnail(os.path.join(figures_folder, f"{name}.png"),
                      os.path.join(out_folder, f"fig-{name}.png"), FIGURE_HEIGHT)
        shutil.copyfile(os.path.join(figures_folder, "sampling.gif"),
                        os.path.join(out_folder, "fig-sampling.gif"))


if __name__ == "__main__":
    main(*sys.argv[1:])
