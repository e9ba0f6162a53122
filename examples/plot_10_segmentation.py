"""
Foreground and background
=========================

Two colour mixtures, one for the object and one for what surrounds it, started from a box
around the object and refined with a graph cut that keeps neighbouring pixels together. The
coffee, the colour of the table, goes with the background: colour alone cannot tell them
apart.
"""

import matplotlib.pyplot as plt
from skimage import data

from gaussmix import segment

image = data.coffee()[::2, ::2]
mask = segment(image, box=(30, 5, 250, 198))

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
left.imshow(image)
left.add_patch(plt.Rectangle((30, 5), 220, 193, fill=False, color="y", lw=2))
left.set_title("picture and box")
right.imshow(image * mask[..., None])
right.set_title("foreground")
for ax in (left, right):
    ax.axis("off")
fig.tight_layout()
