"""Speakers from mixtures: MFCC features, a universal background model, speaker models adapted
from it, and scores as log-likelihood ratios (Reynolds, Quatieri and Dunn, 2000).

Needs the ``audio`` extra (librosa for the features, soundfile for reading files). Speech to
try it on is synthesised offline by :func:`synthetic_speakers` with ``espeak-ng`` (a Debian
package: ``apt-get install espeak-ng``), several voices at several pitches and speeds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from ._foundations.lazy import require
from ._foundations.validation import check_int, check_real

SAMPLE_RATE = 16_000
# 25 ms windows every 10 ms, 40 mel bands: the usual front end of speaker recognition.
WINDOW, HOP, N_MELS = 400, 160, 40
SILENCE_DB = 30.0


NORMALIZATIONS = (None, "mean", "mean-variance")


def mfcc(audio, sample_rate=None, n_mfcc=20, deltas=False, normalize=None,
         trim_silence=True):
    """Mel-frequency cepstral coefficients of a recording, one row every 10 ms.

    Parameters
    ----------
    audio : str, os.PathLike or ndarray of shape (n_samples,) or (n_samples, n_channels)
        A sound file (WAV, FLAC, OGG ...: what soundfile reads) or samples.
    sample_rate : int, optional
        The samples' rate; required for an array, read from a file.
    n_mfcc : int, default=20
    deltas : bool, default=False
        Append the first and second differences over time (features of 3 * n_mfcc).
    normalize : {None, 'mean', 'mean-variance'}, default=None
        Subtract each coefficient's mean over the recording (and divide by its standard
        deviation): a microphone's or a line's colouring cancels, and so does part of the
        speaker's own timbre, which short clips cannot spare. Recordings of one channel (as
        the synthetic ones) are identified best without (measured: ``benchmarks/features.py``);
        recordings through different microphones need ``'mean'``.
    trim_silence : bool, default=True
        Keep only the parts within 30 dB of the loudest (pauses say nothing of a speaker).

    Returns
    -------
    ndarray of shape (n_frames, n_mfcc) or (n_frames, 3 * n_mfcc)
    """
    librosa = require("librosa", "audio", "MFCC features")
    check_int(n_mfcc, "n_mfcc", 1)
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}.")
    samples, rate = _samples(audio, sample_rate)
    if rate != SAMPLE_RATE:
        samples = librosa.resample(samples, orig_sr=rate, target_sr=SAMPLE_RATE)
    if trim_silence:
        parts = librosa.effects.split(samples, top_db=SILENCE_DB, frame_length=WINDOW * 2,
                                      hop_length=HOP)
        if len(parts):
            samples = np.concatenate([samples[a:b] for a, b in parts])
    if len(samples) < WINDOW:
        raise ValueError(f"The recording holds {len(samples)} samples of sound at "
                         f"{SAMPLE_RATE} Hz; at least {WINDOW} (25 ms) are needed.")
    coefficients = librosa.feature.mfcc(y=samples, sr=SAMPLE_RATE, n_mfcc=n_mfcc,
                                        n_fft=512, win_length=WINDOW, hop_length=HOP,
                                        n_mels=N_MELS)
    if deltas:
        width = min(9, coefficients.shape[1] - (1 - coefficients.shape[1] % 2))
        if width >= 3:
            coefficients = np.concatenate([
                coefficients, librosa.feature.delta(coefficients, width=width),
                librosa.feature.delta(coefficients, width=width, order=2)])
        else:
            coefficients = np.concatenate([coefficients, np.zeros_like(coefficients),
                                           np.zeros_like(coefficients)])
    features = coefficients.T
    if normalize is None:
        return features
    features = features - features.mean(axis=0)
    if normalize == "mean":
        return features
    spread = features.std(axis=0)
    return features / np.where(spread > 0, spread, 1.0)


def _samples(audio, sample_rate):
    if isinstance(audio, (str, os.PathLike)):
        soundfile = require("soundfile", "audio", "Reading sound files")

        path = os.fspath(audio)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No sound file at {path!r}; check the path.")
        try:
            samples, rate = soundfile.read(path, dtype="float64", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            raise ValueError(f"Cannot read {path!r} as sound ({exc}); pass a WAV, FLAC or OGG "
                             "file.") from None
        return samples.mean(axis=1), int(rate)
    if sample_rate is None:
        raise ValueError("Samples need their sample_rate (for example mfcc(x, 16000)).")
    check_int(sample_rate, "sample_rate", 1000)
    samples = np.asarray(audio, dtype=np.float64)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1 or not np.isfinite(samples).all():
        raise ValueError("Samples must be a finite 1-D array (or one column per channel).")
    return samples, int(sample_rate)


class SpeakerModels:
    """A universal background model and speaker models adapted from it.

    Parameters
    ----------
    n_components : int, default=64
        Components of the background model (diagonal covariances).
    relevance_factor : float, default=16.0
        See :meth:`gaussmix.GaussianMixture.adapt`.
    parameters : str, default='m'
        What adaptation moves (means, the usual choice).
    random_state : int, default=0
    **mixture_params
        Other :class:`gaussmix.GaussianMixture` parameters of the background model.

    Attributes
    ----------
    background_ : GaussianMixture
    speakers_ : dict
        Name to adapted GaussianMixture.

    Examples
    --------
    Features are arrays of (frames, features), e.g. from :func:`mfcc`::

        models = SpeakerModels(n_components=64).fit(many_clips)
        models.enroll("ada", clips_of_ada).enroll("bob", clips_of_bob)
        models.identify(clip)              # 'ada' or 'bob'
        models.scores(clip)                # {'ada': 1.9, 'bob': -0.7}: log-likelihood ratios
    """

    def __init__(self, n_components=64, relevance_factor=16.0, parameters="m", random_state=0,
                 **mixture_params):
        self.n_components = n_components
        self.relevance_factor = relevance_factor
        self.parameters = parameters
        self.random_state = random_state
        self.mixture_params = mixture_params
        self.speakers_ = {}

    def fit(self, clips):
        """Fit the background model on the frames of many clips (many speakers).

        Parameters
        ----------
        clips : list of ndarray of shape (n_frames, n_features)
        """
        from .mixture import GaussianMixture

        frames = _stacked(clips)
        params = {"covariance_type": "diag", "max_iter": 200, **self.mixture_params}
        self.background_ = GaussianMixture(self.n_components, random_state=self.random_state,
                                           **params).fit(frames)
        self.speakers_ = {}
        return self

    def enroll(self, name, clips):
        """Adapt the background model to one speaker's clips and keep it under ``name``."""
        self._check_fitted()
        self.speakers_[name] = self.background_.adapt(
            _stacked(clips), relevance_factor=self.relevance_factor,
            parameters=self.parameters)
        return self

    def scores(self, clip):
        """Each enrolled speaker's log-likelihood ratio for ``clip``: the mean over its
        frames of ``log p(x | speaker) - log p(x | background)``; positive favours the
        speaker.

        Returns
        -------
        dict
            Name to score, in the order of enrolment.
        """
        self._check_fitted()
        if not self.speakers_:
            raise ValueError("No speaker is enrolled yet; call enroll(name, clips) first.")
        frames = _stacked([clip])
        background = self.background_.score_samples(frames)
        return {name: float(np.mean(model.score_samples(frames) - background))
                for name, model in self.speakers_.items()}

    def identify(self, clip):
        """The enrolled speaker with the highest score."""
        scores = self.scores(clip)
        return max(scores, key=scores.get)

    def verify(self, clip, name, threshold=0.0):
        """Whether ``clip`` is ``name`` speaking: its score above ``threshold``."""
        if name not in self.speakers_:
            raise ValueError(f"{name!r} is not enrolled; enrolled: {sorted(self.speakers_)}.")
        check_real(threshold, "threshold", -np.inf)
        return self.scores(clip)[name] > threshold

    def _check_fitted(self):
        if not hasattr(self, "background_"):
            raise ValueError("The background model is not fitted; call fit(clips) first, with "
                             "the clips of many speakers.")


def _stacked(clips):
    if isinstance(clips, np.ndarray):
        clips = [clips]
    arrays = [np.asarray(c, dtype=np.float64) for c in clips]
    if not arrays or any(a.ndim != 2 for a in arrays):
        raise ValueError("Clips must be a list of 2-D feature arrays (frames, features), such "
                         "as mfcc(path) gives.")
    return np.concatenate(arrays)


def equal_error_rate(target_scores, impostor_scores):
    """The equal error rate of a verification score: where the share of impostors accepted
    equals the share of targets rejected.

    Parameters
    ----------
    target_scores, impostor_scores : array-like of shape (n,) and (m,)

    Returns
    -------
    rate : float
        In [0, 1], interpolated between the two thresholds where the errors cross.
    threshold : float
    """
    targets = np.sort(np.asarray(target_scores, dtype=float))
    impostors = np.sort(np.asarray(impostor_scores, dtype=float))
    if not len(targets) or not len(impostors):
        raise ValueError("Need at least one target score and one impostor score.")
    thresholds = np.concatenate([targets, impostors])
    thresholds.sort()
    rejected = np.searchsorted(targets, thresholds, side="left") / len(targets)
    accepted = 1 - np.searchsorted(impostors, thresholds, side="left") / len(impostors)
    i = int(np.argmin(np.abs(rejected - accepted)))
    return float((rejected[i] + accepted[i]) / 2), float(thresholds[i])


# -- synthetic speech -------------------------------------------------------------------------

SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
)
BASE_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
               "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m3", "m5", "m7", "f1", "f2", "f3", "f4")


@dataclass(frozen=True)
class Voice:
    """A synthetic speaker: an espeak-ng voice and variant, a pitch and a speed."""

    name: str
    voice: str
    pitch: int
    speed: int

    def say(self, text, path):
        """Write ``text`` spoken in this voice to the WAV file ``path``."""
        command = [_espeak(), "-w", os.fspath(path), "-v", self.voice, "-p", str(self.pitch),
                   "-s", str(self.speed), text]
        subprocess.run(command, check=True, capture_output=True, timeout=60)


def _espeak():
    found = shutil.which("espeak-ng")
    if found is None:
        raise FileNotFoundError("Synthetic speech needs espeak-ng; install it with "
                                "apt-get install espeak-ng (Debian, Ubuntu).")
    return found


def synthetic_voices(n_speakers, seed=0):
    """``n_speakers`` distinct voices: base voices, variants, pitches and speeds drawn
    without repeating a (voice, variant) pair."""
    check_int(n_speakers, "n_speakers", 1)
    pairs = [(b, v) for b in BASE_VOICES for v in VARIANTS]
    if n_speakers > len(pairs):
        raise ValueError(f"At most {len(pairs)} synthetic speakers, got {n_speakers}.")
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(pairs))[:n_speakers]
    return [Voice(f"speaker{i:02d}", f"{pairs[j][0]}+{pairs[j][1]}",
                  int(rng.integers(30, 71)), int(rng.integers(130, 191)))
            for i, j in enumerate(chosen)]


def synthetic_speakers(folder, n_speakers=8, n_enroll=4, n_test=4, seed=0):
    """Write a small speaker corpus: each voice says ``n_enroll`` sentences for enrolment and
    ``n_test`` other sentences for testing, as WAV files under ``folder``.

    Returns
    -------
    dict
        Speaker name to ``{"enroll": [paths], "test": [paths]}``.
    """
    if n_enroll + n_test > len(SENTENCES):
        raise ValueError(f"At most {len(SENTENCES)} sentences per speaker in all.")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    corpus = {}
    for voice in synthetic_voices(n_speakers, seed):
        order = rng.permutation(len(SENTENCES))
        paths = {"enroll": [], "test": []}
        for part, picks in (("enroll", order[:n_enroll]),
                            ("test", order[n_enroll:n_enroll + n_test])):
            for index in picks:
                path = os.path.join(folder, f"{voice.name}-{part}-{index:02d}.wav")
                voice.say(SENTENCES[index], path)
                paths[part].append(path)
        corpus[voice.name] = paths
    return corpus
