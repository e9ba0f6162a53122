"""
Moving objects in video: a mixture per pixel, and a tracker
===========================================================

A ``BackgroundModel`` keeps a small Gaussian mixture of every pixel's values over time (the
method of OpenCV's ``BackgroundSubtractorMOG2``) and marks what it cannot explain: moving
objects (255) and their shadows (127). ``track`` cuts each mask into objects and follows them
from frame to frame with stable ids. The scene is synthetic (two objects crossing over a
photograph, casting shadows, with sensor noise), so the truth is known.
"""

import matplotlib.pyplot as plt
import numpy as np

from gaussmix.video import BackgroundModel, Tracker, scenes
from gaussmix.video.tracking import follow

scene = scenes.shadows(n_frames=160, size=(180, 240))
model, tracker = BackgroundModel(), Tracker()
shown_at = 100
masks = []
for index, (mask, shown) in enumerate(follow(scene.frames, model, tracker)):
    masks.append(mask)
    if index == shown_at:
        frame_mask, frame_shown = mask, shown

fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
axes[0].imshow(scene.frames[shown_at])
axes[0].set_title(f"frame {shown_at}")
axes[1].imshow(frame_mask, cmap="gray", vmin=0, vmax=255)
axes[1].set_title("mask: objects white, shadows grey")
axes[2].imshow(model.background_image())
for found, style in zip(tracker.tracks(), ("-", "--", ":", "-.")):
    x, y = found.positions.T  # the two objects travel the same line, in opposite ways
    axes[2].plot(x, y, style, lw=4 if style == "-" else 2, label=f"track {found.id}: "
                 f"frames {found.frames[0]}-{found.frames[-1]}")
for track, detection in frame_shown:
    top, left, bottom, right = detection.box
    axes[0].add_patch(plt.Rectangle((left, top), right - left, bottom - top, fill=False,
                                    color="yellow", lw=1.5))
    axes[0].text(left, top - 3, str(track.id), color="yellow")
axes[2].set_title("learned background and the tracks")
axes[2].legend(loc="lower right", fontsize=8)
for ax in axes:
    ax.set_axis_off()
fig.tight_layout()

# %%
# How well the masks match the truth, from frame 20 on (cast shadows are not objects):
found = np.stack(masks)[20:] == 255
truth = scene.truth[20:] == 255
precision = (found & truth).sum() / found.sum()
recall = (found & truth).sum() / truth.sum()
print(f"precision {precision:.3f}, recall {recall:.3f}, "
      f"F-measure {2 * precision * recall / (precision + recall):.3f}")
