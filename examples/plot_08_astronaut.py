"""
A colour painting and E[r, g, b | x, y]
=======================================

A colour picture becomes points (x, y, r, g, b), one per pixel, fitted with 1000 5-D
components. Conditioning every component on the pixel's position gives the expected
colour at (x, y): the mixture's own rendering of the picture.
"""

import matplotlib.pyplot as plt
from skimage import data

from gaussmix.imaging import paint

painting = paint(data.astronaut(), n_components=1000, max_pixels=128 * 128,
                 renders=["samples", "conditional-mean", "components"])
print(painting.model, "fitted on", painting.n_points, "pixels")

fig, axes = plt.subplots(1, 4, figsize=(14, 3.8))
axes[0].imshow(painting.picture)
axes[0].set_title("picture (128 x 128)")
for ax, (name, image) in zip(axes[1:], painting.renders.items()):
    ax.imshow(image)
    ax.set_title(name)
for ax in axes:
    ax.axis("off")
fig.tight_layout()
