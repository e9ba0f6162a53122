"""
Painting the horse with 500 Gaussians
=====================================

The dark pixels of a black-and-white picture are points (x, y); a mixture of 500 Gaussians
fitted to them paints the picture back: samples drawn from it, its density, each
component's region.
"""

import matplotlib.pyplot as plt
from skimage import data

from gaussmix.imaging import paint

painting = paint(data.horse(), n_components=500,
                 renders=["samples", "density-mapped", "components"])
print(painting.model, "fitted on", painting.n_points, "dark pixels")

fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
for ax, (name, image) in zip(axes, painting.renders.items()):
    ax.imshow(image, cmap="gray")
    ax.set_title(name)
    ax.axis("off")
fig.tight_layout()
