"""
Who is speaking: a background model and adapted speakers
========================================================

Eight synthetic voices (espeak-ng: different voices, pitches and speeds) each say four
sentences to enrol and three other sentences to test. A universal background model (a
32-component diagonal mixture of every enrolment frame's MFCCs) is adapted to each speaker
(means only, relevance factor 16); a test clip is scored by the mean log-likelihood ratio of
its frames under each speaker against the background, and the highest score names it.
"""

import shutil
import tempfile

import matplotlib.pyplot as plt
import numpy as np

from gaussmix import audio

if shutil.which("espeak-ng") is None:  # the docs build installs it; a reader may not have it
    raise SystemExit("This example synthesises speech with espeak-ng: apt-get install espeak-ng")

with tempfile.TemporaryDirectory() as folder:
    corpus = audio.synthetic_speakers(folder, n_speakers=8, n_enroll=4, n_test=3)
    features = {name: {part: [audio.mfcc(path) for path in paths]
                       for part, paths in parts.items()} for name, parts in corpus.items()}

models = audio.SpeakerModels(n_components=32).fit(
    [clip for parts in features.values() for clip in parts["enroll"]])
for name, parts in features.items():
    models.enroll(name, parts["enroll"])

names = list(features)
scores = np.array([[models.scores(clip)[other] for other in names]
                   for name in names for clip in features[name]["test"]])
truth = np.repeat(np.arange(len(names)), 3)
accuracy = (scores.argmax(axis=1) == truth).mean()
targets = scores[np.arange(len(truth)), truth]
impostors = scores[np.arange(len(names)) != truth[:, None]]
rate, threshold = audio.equal_error_rate(targets, impostors)
print(f"identification: {accuracy:.0%} of {len(truth)} clips; verification: equal error "
      f"rate {rate:.1%} at a threshold of {threshold:.2f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
axes[0].imshow(scores, aspect="auto", cmap="viridis")
axes[0].set_xticks(range(len(names)), [n[-2:] for n in names])
axes[0].set_yticks(np.arange(len(truth))[::3] + 1, [n[-2:] for n in names])
axes[0].set_xlabel("enrolled speaker")
axes[0].set_ylabel("test clips of speaker")
axes[0].set_title("log-likelihood ratio of each test clip")
bins = np.linspace(scores.min(), scores.max(), 30)
axes[1].hist(impostors, bins, alpha=0.7, label="other speakers")
axes[1].hist(targets, bins, alpha=0.7, label="the speaker")
axes[1].axvline(threshold, color="black", lw=1, ls="--", label="equal error threshold")
axes[1].set_xlabel("log-likelihood ratio")
axes[1].legend()
fig.tight_layout()
