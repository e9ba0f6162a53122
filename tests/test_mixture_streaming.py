"""Data that never sits in memory whole: memory maps, .npy paths, chunk functions, and
stepwise EM with partial_fit."""

import tracemalloc
import warnings

import numpy as np
import pytest

from gaussmix import GaussianMixture
from gaussmix._data.chunks import ArrayChunks
from gaussmix.exceptions import ConvergenceWarning

from .conftest import COVARIANCE_TYPES, assert_same_fit, identity_start, make_blobs


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_memmap_fit_equals_the_in_memory_fit(tmp_path, covariance_type, backend):
    X = make_blobs(n_per=300)
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    kw = dict(covariance_type=covariance_type, max_iter=20, tol=0, backend=backend,
              chunk_size=128, **identity_start(X, 4, covariance_type))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GaussianMixture(4, **kw).fit(X)
        streamed = GaussianMixture(4, **kw).fit(mm)
        from_path = GaussianMixture(4, **kw).fit(str(tmp_path / "x.npy"))
    assert_same_fit(streamed, ref)
    assert_same_fit(from_path, ref)
    assert streamed.n_features_in_ == 3


def chunk_function(X, weights=None, size=97):
    def chunks():
        for s in range(0, len(X), size):
            if weights is None:
                yield X[s:s + size]
            else:
                yield X[s:s + size], weights[s:s + size]
    return chunks


def test_chunk_function_with_weights_equals_the_weighted_fit():
    X = make_blobs(n_per=200)
    w = np.random.RandomState(1).uniform(0, 2, len(X))
    kw = dict(max_iter=15, tol=0, **identity_start(X, 3, "full"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GaussianMixture(3, **kw).fit(X, sample_weight=w)
        streamed = GaussianMixture(3, **kw).fit(chunk_function(X, w))
    assert_same_fit(streamed, ref)


def test_streams_initialise_from_a_sample_and_fit_well(tmp_path):
    X = np.concatenate([make_blobs(n_per=2000, seed=s) + 10 * s for s in range(3)])
    np.save(tmp_path / "x.npy", X)
    batch = GaussianMixture(9, random_state=0).fit(X)
    streamed = GaussianMixture(9, random_state=0, chunk_size=1000).fit(tmp_path / "x.npy")
    assert streamed.score(X) >= batch.score(X) - 0.02 * abs(batch.score(X))
    labels = GaussianMixture(9, random_state=0).fit_predict(chunk_function(X, size=1500))
    assert labels.shape == (len(X),) and labels.max() < 9


def test_small_streams_with_the_default_start_equal_the_in_memory_fit(tmp_path):
    # A sample that would hold every row is every row, drawn without the RNG.
    X = make_blobs(n_per=300)
    np.save(tmp_path / "x.npy", X)
    ref = GaussianMixture(5, random_state=0).fit(X)
    assert_same_fit(GaussianMixture(5, random_state=0).fit(str(tmp_path / "x.npy")), ref,
                    rtol=1e-12)
    assert_same_fit(GaussianMixture(5, random_state=0).fit(lambda: iter([X[:450], X[450:]])),
                    ref, rtol=1e-12)


def test_stream_memory_does_not_grow_with_rows(tmp_path):
    rng = np.random.RandomState(0)
    sizes = {"small": 40_000, "large": 160_000}
    peaks = {}
    for name, n in sizes.items():
        np.save(tmp_path / f"{name}.npy", rng.rand(n, 2))
        mm = np.load(tmp_path / f"{name}.npy", mmap_mode="r")
        gm = GaussianMixture(50, max_iter=2, tol=0, chunk_size=4000, random_state=0)
        tracemalloc.start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(mm)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # Four times the rows; the bounded initialisation sample dominates, not the data.
    assert peaks["large"] - peaks["small"] < 2 * 2**20
    assert peaks["large"] < 160_000 * 2 * 8  # less than the data itself


def test_stream_memory_is_bounded_for_every_seed(tmp_path):
    """The initialisation sample of a stream is bounded whatever the seed draws."""
    n = 600_000
    np.save(tmp_path / "x.npy", np.random.RandomState(0).rand(n, 2))
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    with warnings.catch_warnings():  # kernels loaded before measuring
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianMixture(50, max_iter=1, chunk_size=4000).fit(mm[:5000])
    peaks = []
    for seed in range(20):
        gm = GaussianMixture(50, max_iter=1, tol=0, chunk_size=4000, random_state=seed)
        tracemalloc.start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(mm)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert max(peaks) < n * 2 * 8 / 2, peaks  # below half of the data, for every seed


def test_stream_samples_are_uniform_exact_sized_and_in_stream_order():
    from gaussmix._data.streams import StreamData, stream_sample

    x = np.arange(10_000, dtype=np.float64).reshape(-1, 1)
    w = np.ones(len(x))
    w[::10] = 0.0  # zero-weight rows are never drawn
    source = ArrayChunks(x, w, np.zeros(1), 777)
    data = StreamData(n_rows=len(x), n_positive=int((w > 0).sum()), n_features=1,
                      dtype=np.dtype(np.float64), total_weight=float(w.sum()),
                      shift=np.zeros(1), variance=np.ones(1), source=source)
    counts = np.zeros(len(x))
    for seed in range(40):
        sample = stream_sample(data, 500, np.random.RandomState(seed))
        values = sample.X[:, 0]
        assert len(values) == 500 and (np.diff(values) > 0).all()
        assert (values % 10 != 0).all()
        counts[values.astype(int)] += 1
    everything = stream_sample(data, 9000, np.random.RandomState(0))
    np.testing.assert_array_equal(everything.X[:, 0], x[w > 0, 0])
    by_decile = counts.reshape(10, -1).sum(axis=1)
    assert by_decile.min() > 0.8 * by_decile.mean()  # no part of the stream is favoured


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: (lambda: [np.ones((5, 2)), np.ones((5, 3))]), "chunk 1 has 3 features"),
        (lambda: (lambda: [np.full((5, 2), np.inf)]),
         r"chunk 0 contains infinity \(inf\) in 5 rows"),
        (lambda: (lambda: [np.full((5, 2), np.nan)]), "Feature 0 has no observed entry"),
        (lambda: (lambda: [(np.ones((5, 2)), -np.ones(5))]), "must be finite and non-negative"),
        (lambda: (lambda: []), "yielded no rows"),
        (lambda: (lambda: 42), "must return an iterable of chunks"),
    ],
)
def test_bad_streams_are_refused_with_one_sentence(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        GaussianMixture(1).fit(make())


def test_stream_arguments(tmp_path):
    X = make_blobs()
    with pytest.raises(ValueError, match="yield \\(rows, weights\\) pairs instead"):
        GaussianMixture(2).fit(chunk_function(X), sample_weight=np.ones(len(X)))
    with pytest.raises(FileNotFoundError, match="No data file"):
        GaussianMixture(2).fit(tmp_path / "missing.npy")
    (tmp_path / "bad.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="is not a .npy file"):
        GaussianMixture(2).fit(tmp_path / "bad.npy")
    with pytest.raises(ValueError, match="n_components=500 is larger"):
        GaussianMixture(500).fit(chunk_function(X))


# --------------------------------------------------------------------------------------------
# partial_fit


def stream_of_chunks(n_chunks=40, size=300, seed=0):
    rng = np.random.RandomState(seed)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 6.0, 3.0]])
    for _ in range(n_chunks):
        labels = rng.randint(0, 3, size)
        yield centres[labels] + rng.randn(size, 3) * 0.7


def test_partial_fit_converges_to_the_batch_fit():
    chunks = list(stream_of_chunks())
    gm = GaussianMixture(3, random_state=0)
    for chunk in chunks:
        gm.partial_fit(chunk)
    batch = GaussianMixture(3, random_state=0).fit(np.concatenate(chunks))
    order, ref = np.argsort(gm.means_[:, 0] + gm.means_[:, 1]), np.argsort(
        batch.means_[:, 0] + batch.means_[:, 1])
    np.testing.assert_allclose(gm.means_[order], batch.means_[ref], atol=0.1)
    np.testing.assert_allclose(gm.weights_[order], batch.weights_[ref], atol=0.03)
    assert gm.n_steps_ == len(chunks)
    assert np.isfinite(gm.lower_bound_) and len(gm.lower_bounds_) >= len(chunks) - 1


def test_partial_fit_continues_after_fit_and_fit_restarts_the_stream():
    chunks = list(stream_of_chunks(5))
    gm = GaussianMixture(3, random_state=0).fit(chunks[0])
    before = gm.means_.copy()
    gm.partial_fit(chunks[1])
    assert gm.n_steps_ == 1 and np.array_equal(gm.means_, before)  # first step: statistics only
    gm.partial_fit(chunks[2])
    assert gm.n_steps_ == 2 and not np.array_equal(gm.means_, before)
    gm.fit(chunks[3])
    assert not hasattr(gm, "n_steps_")


def test_partial_fit_checks_its_input():
    gm = GaussianMixture(2, random_state=0).partial_fit(np.random.RandomState(0).randn(50, 3))
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3"):
        gm.partial_fit(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="learning_decay must lie in"):
        GaussianMixture(2, learning_decay=0.3).partial_fit(np.random.RandomState(0).randn(50, 3))
    with pytest.raises(ValueError, match="learning_decay must be a real number"):
        GaussianMixture(2, learning_decay="x").partial_fit(np.random.RandomState(0).randn(50, 3))


def every_input_kind(X, tmp_path):
    """The same rows as each kind of input ``fit`` takes (name, input)."""
    np.save(tmp_path / "rows.npy", X)
    kinds = [("array", X), ("memmap", np.load(tmp_path / "rows.npy", mmap_mode="r")),
             ("path", str(tmp_path / "rows.npy")), ("chunks", chunk_function(X, size=250))]
    try:
        import dask.array as da

        kinds.append(("dask", da.from_array(X, chunks=(400, 3))))
    except ImportError:  # pragma: no cover - dask is a test dependency
        pass
    try:
        import torch

        kinds.append(("tensor", torch.tensor(X)))
    except ImportError:  # pragma: no cover
        pass
    return kinds


def test_fit_predict_and_scores_on_every_input_fit_takes(tmp_path):
    X = make_blobs(n_per=400)
    for name, data in every_input_kind(X, tmp_path):
        gm = GaussianMixture(3, random_state=0)
        labels = np.asarray(gm.fit_predict(data))
        assert labels.shape == (len(X),), name
        np.testing.assert_array_equal(labels, gm.predict(X), err_msg=name)
        np.testing.assert_allclose(np.asarray(gm.score_samples(data)), gm.score_samples(X),
                                   rtol=1e-12, err_msg=name)
        assert gm.score(data) == pytest.approx(gm.score(X), rel=1e-12), name
        assert gm.bic(data) == pytest.approx(gm.bic(X), rel=1e-12), name
        assert gm.aic(data) == pytest.approx(gm.aic(X), rel=1e-12), name


def test_partial_fit_takes_every_input_fit_takes(tmp_path):
    chunks = list(stream_of_chunks(3))
    ref = GaussianMixture(3, random_state=0).fit(chunks[0])
    ref.partial_fit(chunks[1])
    ref.partial_fit(chunks[2])
    for name, data in every_input_kind(chunks[2], tmp_path):
        gm = GaussianMixture(3, random_state=0).fit(chunks[0])
        gm.partial_fit(chunks[1])
        gm.partial_fit(data)
        assert gm.n_steps_ == 2, name
        assert_same_fit(gm, ref, rtol=1e-9)


def test_a_first_partial_fit_on_a_path_fits_the_file(tmp_path):
    X = make_blobs(n_per=300)
    np.save(tmp_path / "x.npy", X)
    gm = GaussianMixture(3, random_state=0).partial_fit(str(tmp_path / "x.npy"))
    assert gm.n_steps_ == 1
    assert_same_fit(gm, GaussianMixture(3, random_state=0).fit(X), rtol=1e-9)


def test_files_that_are_not_npy_arrays_are_refused_with_one_sentence(tmp_path):
    (tmp_path / "empty.npy").write_bytes(b"")
    np.savez(tmp_path / "a.npz", x=np.ones((10, 2)))
    (tmp_path / "text.npy").write_text("hello\n")
    np.save(tmp_path / "objects.npy", np.array([[1, "a"]], dtype=object))
    np.save(tmp_path / "cut.npy", np.ones((1000, 2)))
    with open(tmp_path / "cut.npy", "r+b") as f:
        f.truncate(200)
    cases = [("empty.npy", "is empty"), ("a.npz", "is a .npz archive"),
             ("text.npy", "is not a .npy file"), ("objects.npy", "truncated, or holds objects"),
             ("cut.npy", "truncated, or holds objects"), (".", "is a folder")]
    for name, pattern in cases:
        with pytest.raises(ValueError, match=pattern) as info:
            GaussianMixture(1).fit(tmp_path / name)
        assert "allow_pickle" not in str(info.value)


def test_scoring_a_stream_that_yields_nothing_is_refused_with_one_sentence():
    gm = GaussianMixture(2, random_state=0).fit(make_blobs())
    with pytest.raises(ValueError, match="yielded no rows"):
        gm.predict(lambda: iter([]))
