"""Speakers from mixtures, on speech synthesised offline by espeak-ng (skipped without it)."""

import shutil
import warnings

import numpy as np
import pytest

librosa = pytest.importorskip("librosa", reason="the audio extra (librosa) is not installed")
pytest.importorskip("soundfile", reason="the audio extra (soundfile) is not installed")

from gaussmix import audio  # noqa: E402

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install "
                                         "espeak-ng)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("voices")
    paths = audio.synthetic_speakers(folder, n_speakers=6, n_enroll=4, n_test=3)
    return {name: {part: [audio.mfcc(p) for p in files] for part, files in parts.items()}
            for name, parts in paths.items()}


def test_mfcc_of_a_tone_has_normalised_coefficients_and_deltas():
    t = np.arange(16_000) / 16_000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    assert audio.mfcc(tone, sample_rate=16_000).shape == (101, 20)
    features = audio.mfcc(tone, sample_rate=16_000, deltas=True, normalize="mean-variance")
    assert features.shape == (101, 60)
    np.testing.assert_allclose(features.mean(axis=0), 0, atol=1e-10)
    spread = features.std(axis=0)
    assert np.all((np.abs(spread - 1) < 1e-8) | (spread == 0))
    np.testing.assert_allclose(audio.mfcc(tone, 16_000, normalize="mean").mean(axis=0), 0,
                               atol=1e-10)
    resampled = audio.mfcc(tone[::2], sample_rate=8_000)
    assert resampled.shape[1] == 20 and abs(resampled.shape[0] - 101) <= 1


def test_silence_is_trimmed_and_files_are_read(tmp_path):
    import soundfile

    rng = np.random.default_rng(0)
    speechy = 0.2 * rng.normal(size=8000)
    padded = np.concatenate([np.zeros(16_000), speechy, np.zeros(16_000)])
    soundfile.write(tmp_path / "x.wav", np.stack([padded, padded], axis=1), 16_000)
    trimmed = audio.mfcc(tmp_path / "x.wav")
    assert trimmed.shape[0] < 70  # half a second of sound, not two and a half
    assert audio.mfcc(tmp_path / "x.wav", trim_silence=False).shape[0] > 240


@pytest.mark.parametrize("bad, words", [((np.zeros(10), 16_000), "at least"),
                                        ((np.zeros(1000), None), "sample_rate"),
                                        ((np.full(1000, np.nan), 16_000), "finite")])
def test_bad_audio_is_one_sentence(bad, words):
    with pytest.raises(ValueError, match=words):
        audio.mfcc(bad[0], sample_rate=bad[1])
    with pytest.raises(ValueError, match="normalize"):
        audio.mfcc(np.zeros(1000), 16_000, normalize="cepstral")


def test_a_file_that_is_not_sound_is_refused(tmp_path):
    (tmp_path / "x.wav").write_text("not sound")
    with pytest.raises(ValueError, match="as sound"):
        audio.mfcc(tmp_path / "x.wav")
    with pytest.raises(FileNotFoundError):
        audio.mfcc(tmp_path / "missing.wav")


@needs_espeak
def test_synthetic_speakers_say_different_sentences_for_enrolment_and_test(tmp_path):
    paths = audio.synthetic_speakers(tmp_path, n_speakers=3, n_enroll=2, n_test=2)
    assert len(paths) == 3
    for parts in paths.values():
        enrol = {p.rsplit("-", 1)[1] for p in parts["enroll"]}
        test = {p.rsplit("-", 1)[1] for p in parts["test"]}
        assert len(enrol) == 2 and len(test) == 2 and not enrol & test
    voices = audio.synthetic_voices(20)
    assert len({(v.voice, v.pitch, v.speed) for v in voices}) == 20


def test_speakers_are_identified_and_verified(corpus):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = audio.SpeakerModels(n_components=16).fit(
            [clip for parts in corpus.values() for clip in parts["enroll"]])
    for name, parts in corpus.items():
        models.enroll(name, parts["enroll"])
    right, targets, impostors = 0, [], []
    for name, parts in corpus.items():
        for clip in parts["test"]:
            scores = models.scores(clip)
            right += models.identify(clip) == name
            targets.append(scores[name])
            impostors += [s for other, s in scores.items() if other != name]
    assert right >= 0.8 * 3 * len(corpus)  # chance is 1 in 6
    rate, threshold = audio.equal_error_rate(targets, impostors)
    assert rate < 0.15
    name = next(iter(corpus))
    assert models.verify(corpus[name]["test"][0], name, threshold=min(targets) - 1e-9)


def test_equal_error_rate_of_known_scores():
    assert audio.equal_error_rate([2, 3, 4], [0, 1]) == (0.0, 2.0)
    rate, _ = audio.equal_error_rate(np.arange(10), np.arange(10))
    assert 0.4 <= rate <= 0.6
    with pytest.raises(ValueError):
        audio.equal_error_rate([], [1.0])


def test_speaker_models_refuse_use_before_fit_and_unknown_names():
    models = audio.SpeakerModels(n_components=2)
    with pytest.raises(ValueError, match="fit"):
        models.enroll("a", [np.zeros((10, 3))])
    rng = np.random.default_rng(0)
    models.fit([rng.normal(size=(200, 3))])
    with pytest.raises(ValueError, match="enrolled"):
        models.scores(rng.normal(size=(20, 3)))
    models.enroll("a", [rng.normal(size=(50, 3))])
    with pytest.raises(ValueError, match="not enrolled"):
        models.verify(rng.normal(size=(20, 3)), "b")
    with pytest.raises(ValueError, match="2-D"):
        models.enroll("c", [np.zeros(10)])
