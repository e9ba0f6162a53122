"""Thumbnails of a ``gaussmix demo`` run for the README.

Usage: ``gaussmix demo --out gaussmix-demo && python docs/gallery.py gaussmix-demo``
writes ``docs/images/{horse,astronaut}-<render>.png`` (200 pixels high).
"""

import os
import sys

from PIL import Image

HEIGHT = 200
RENDERS = {
    "horse": ["samples", "density", "density-mapped", "contour", "components", "ellipses"],
    "astronaut": ["samples", "density-mapped", "conditional-mean", "components", "ellipses",
                  "contour"],
}


def main(demo_folder, out_folder=os.path.join(os.path.dirname(__file__), "images")):
    os.makedirs(out_folder, exist_ok=True)
    for picture, renders in RENDERS.items():
        for name in renders:
            image = Image.open(os.path.join(demo_folder, picture, f"{name}.png")).convert("RGB")
            width = round(image.width * HEIGHT / image.height)
            thumb = image.resize((width, HEIGHT), Image.LANCZOS)
            thumb.save(os.path.join(out_folder, f"{picture}-{name}.png"), optimize=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
