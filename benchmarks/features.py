"""Features from mixtures: gaussmix's Fisher vectors against scikit-image's, and MAP adaptation
against a plain numpy implementation of the equations, side by side in one run.

- Fisher vectors: ``gaussmix.features.fisher_vector`` and ``skimage.feature.fisher_vector`` on
  the same model (a diagonal mixture fitted by scikit-learn, copied into gaussmix with
  ``from_params``) and the same descriptors; the largest difference and each one's seconds
  (the best of three), for 10^5 descriptors of 20 features with K=64, and other sizes.
- Adaptation: ``GaussianMixture.adapt`` (means, weights and variances) against Reynolds'
  equations in numpy (responsibilities as an (N, K) array), the largest difference and each
  one's seconds.
- Speakers: 16 synthetic voices (espeak-ng; ``gaussmix.audio.synthetic_speakers``), 4
  sentences each to enrol and 4 others to test; for background models of 16 to 512
  components, the share of test clips identified and the equal error rate of verification
  (every clip scored against every speaker), with MFCCs as ``gaussmix.audio.mfcc`` gives them
  by default and with cepstral mean normalisation.

    python benchmarks/features.py
    python benchmarks/features.py --out docs/benchmarks/features.md
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from report import emit, markdown_table

FISHER_CASES = ((100_000, 20, 64), (10_000, 20, 64), (100_000, 64, 256), (1_000_000, 20, 64))
# Many small sets (one vector each): 1,000 sets of 300 descriptors.
SMALL_SETS = (1_000, 300, 20, 64)


def best_of(function, repeats=5):
    """The least seconds of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def descriptors(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (32, d))
    return centres[rng.integers(0, 32, n)] + rng.normal(0, 1, (n, d))


def fisher_rows():
    from skimage.feature import fisher_vector as theirs
    from sklearn.mixture import GaussianMixture as Theirs

    from gaussmix import GaussianMixture
    from gaussmix.features import fisher_vector as ours

    rows = []
    for n, d, k in FISHER_CASES:
        X = descriptors(n, d)
        reference = Theirs(k, covariance_type="diag", max_iter=10, random_state=0).fit(X[:20_000])
        model = GaussianMixture.from_params(reference.weights_, reference.means_,
                                            reference.covariances_, covariance_type="diag")
        ours(model, X)  # compiles, and both libraries' first call is left untimed
        theirs(X, reference)
        their_seconds, expected = best_of(lambda: theirs(X, reference))
        our_seconds, found = best_of(lambda: ours(model, X))
        scale = np.abs(expected).max()
        rows.append([f"{n:,} × {d}, K={k}", f"{np.abs(found - expected).max() / scale:.1e}",
                     f"{their_seconds:.3f}", f"{our_seconds:.3f}",
                     f"{their_seconds / our_seconds:.1f}x"])
        print(" | ".join(rows[-1]), flush=True)
    n_sets, n, d, k = SMALL_SETS
    X = descriptors(n_sets * n, d)
    sets = [X[i * n:(i + 1) * n] for i in range(n_sets)]
    reference = Theirs(k, covariance_type="diag", max_iter=10, random_state=0).fit(X[:20_000])
    model = GaussianMixture.from_params(reference.weights_, reference.means_,
                                        reference.covariances_, covariance_type="diag")
    ours(model, sets[:10])  # compiles
    their_seconds, expected = best_of(lambda: np.stack([theirs(x, reference) for x in sets]), 2)
    our_seconds, found = best_of(lambda: ours(model, sets), 2)
    rows.append([f"{n_sets:,} sets of {n} × {d}, K={k}",
                 f"{np.abs(found - expected).max() / np.abs(expected).max():.1e}",
                 f"{their_seconds:.3f}", f"{our_seconds:.3f}",
                 f"{their_seconds / our_seconds:.1f}x"])
    print(" | ".join(rows[-1]), flush=True)
    return markdown_table(["descriptors, model", "largest difference (relative)",
                           "s scikit-image", "s gaussmix", "speed-up"], rows)


def reference_adapt(ubm, X, r):
    """Reynolds' equations, diagonal covariances, responsibilities as an (N, K) array."""
    var, mu, w = ubm.covariances_, ubm.means_, ubm.weights_
    log = (-0.5 * (((X[:, None, :] - mu) ** 2) / var).sum(axis=2)
           - 0.5 * np.log(2 * np.pi * var).sum(axis=1) + np.log(w))
    resp = np.exp(log - np.logaddexp.reduce(log, axis=1, keepdims=True))
    n = resp.sum(axis=0)
    a = n / (n + r)
    ex, exx = resp.T @ X / n[:, None], resp.T @ X**2 / n[:, None]
    weights = a * n / len(X) + (1 - a) * w
    means = a[:, None] * ex + (1 - a[:, None]) * mu
    covs = (a[:, None] * (exx + ubm.reg_covar) + (1 - a[:, None]) * (var + mu**2) - means**2)
    return weights / weights.sum(), means, covs


def adaptation_rows():
    from gaussmix import GaussianMixture

    rows = []
    for n, d, k in ((10_000, 20, 64), (100_000, 20, 64)):
        X = descriptors(n, d, seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ubm = GaussianMixture(k, covariance_type="diag", max_iter=10,
                                  random_state=0).fit(descriptors(50_000, d))
        ubm.adapt(X[:1000], parameters="wmv")  # compiles
        their_seconds, expected = best_of(lambda: reference_adapt(ubm, X, 16.0))
        our_seconds, found = best_of(lambda: ubm.adapt(X, 16.0, "wmv"))
        gap = max(np.abs(found.weights_ - expected[0]).max(),
                  np.abs(found.means_ - expected[1]).max(),
                  np.abs(found.covariances_ - expected[2]).max())
        rows.append([f"{n:,} × {d}, K={k}", f"{gap:.1e}", f"{their_seconds:.3f}",
                     f"{our_seconds:.3f}", f"{their_seconds / our_seconds:.1f}x"])
        print(" | ".join(rows[-1]), flush=True)
    return markdown_table(["rows, model", "largest difference", "s numpy equations",
                           "s gaussmix", "speed-up"], rows)


def speaker_rows(n_speakers=16, sizes=(16, 32, 64, 128, 256, 512)):
    import shutil
    import tempfile

    from gaussmix import audio

    if shutil.which("espeak-ng") is None:
        return "Not measured: espeak-ng is not installed (apt-get install espeak-ng)."
    with tempfile.TemporaryDirectory() as folder:
        corpus = audio.synthetic_speakers(folder, n_speakers=n_speakers, n_enroll=4, n_test=4)
        fronts = {"default": {}, "mean-normalised": {"normalize": "mean"}}
        features = {front: {name: {part: [audio.mfcc(p, **options) for p in paths]
                                   for part, paths in parts.items()}
                            for name, parts in corpus.items()}
                    for front, options in fronts.items()}
    rows = []
    for front, by_speaker in features.items():
        names = list(by_speaker)
        for k in sizes:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                models = audio.SpeakerModels(n_components=k).fit(
                    [clip for parts in by_speaker.values() for clip in parts["enroll"]])
            for name in names:
                models.enroll(name, by_speaker[name]["enroll"])
            right, targets, impostors = 0, [], []
            for name in names:
                for clip in by_speaker[name]["test"]:
                    scores = models.scores(clip)
                    right += max(scores, key=scores.get) == name
                    targets.append(scores[name])
                    impostors += [v for other, v in scores.items() if other != name]
            rate, _ = audio.equal_error_rate(targets, impostors)
            rows.append([front, k, f"{right / len(targets):.1%}", f"{rate:.1%}",
                         f"{time.perf_counter() - start:.1f}"])
            print(" | ".join(map(str, rows[-1])), flush=True)
    return (f"{n_speakers} synthetic speakers, {4 * n_speakers} test clips (chance: "
            f"{1 / n_speakers:.1%}):\n\n"
            + markdown_table(["MFCCs", "background components", "identified",
                              "equal error rate", "s to fit, enrol and score"], rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the tables as Markdown here")
    args = parser.parse_args(argv)
    tables = ["Fisher vectors (diagonal covariances), the same model and descriptors:\n\n"
              + fisher_rows(),
              "MAP adaptation of weights, means and variances (relevance factor 16):\n\n"
              + adaptation_rows(),
              "Speaker identification and verification:\n\n" + speaker_rows()]
    import skimage

    emit(tables, args.out, f"scikit-image {skimage.__version__}.")


if __name__ == "__main__":
    main()
