import contextlib
import json
import os
import signal
import stat
import zipfile

import numpy as np
import pytest

import gaussmix
from gaussmix import GaussianMixture, NotFittedError, load
from gaussmix import io as gio

from .conftest import make_blobs

ATTRS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_is_bit_exact(tmp_path, covariance_type, dtype):
    X = make_blobs().astype(dtype)
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0, tol=1e-4).fit(X)
    path = tmp_path / "model.npz"
    gm.save(path)
    back = load(path)
    assert isinstance(back, GaussianMixture) and back.covariance_type == covariance_type
    for name in ATTRS:
        a, b = getattr(gm, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert back.get_params() == gm.get_params()
    for name in ("converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_reseeded_",
                 "n_features_in_"):
        assert getattr(back, name) == getattr(gm, name)
    np.testing.assert_array_equal(back.score_samples(X), gm.score_samples(X))
    np.testing.assert_array_equal(back.predict_proba(X), gm.predict_proba(X))
    np.testing.assert_array_equal(back.sample(20)[0], gm.sample(20)[0])


def test_round_trip_keeps_init_arrays_feature_names_and_minus_infinity(tmp_path):
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(make_blobs()[:, :2], columns=["x", "y"])
    init = np.array([[0.0, 0.0], [6.0, 0.0]])
    gm = GaussianMixture(2, means_init=init, max_iter=0).fit(X)
    gm.save(tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.means_init, init)
    np.testing.assert_array_equal(back.feature_names_in_, ["x", "y"])
    assert back.lower_bound_ == -np.inf


def test_models_from_params_and_algebra_save_too(tmp_path):
    gm = GaussianMixture.from_params([0.3, 0.7], [[0.0, 1.0], [2.0, 3.0]], [1.0, 2.0],
                                     covariance_type="spherical")
    part = gm.condition([0], [1.0])
    part.save(tmp_path / "c.npz")
    np.testing.assert_array_equal(load(tmp_path / "c.npz").means_, part.means_)


def test_save_is_atomic(tmp_path, monkeypatch):
    gm = GaussianMixture(2, random_state=0).fit(make_blobs())
    path = tmp_path / "model.npz"
    gm.save(path)
    original = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(gio.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        GaussianMixture(3, random_state=0).fit(make_blobs()).save(path)
    assert path.read_bytes() == original  # the old model is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temporary left
    with pytest.raises(OSError):
        gm.save(tmp_path / "new.npz")
    assert not (tmp_path / "new.npz").exists()


def test_saving_an_unfitted_model_is_refused(tmp_path):
    with pytest.raises(NotFittedError):
        GaussianMixture().save(tmp_path / "m.npz")


def write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def metadata(**changes):
    meta = {"format": "gaussmix-mixture", "version": 1, "covariance_type": "spherical",
            "n_components": 1, "n_features": 1, "params": {}, "fitted": {}}
    meta.update(changes)
    return np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


def good_arrays():
    return dict(weights=np.ones(1), means=np.zeros((1, 1)), covariances=np.ones(1),
                precisions=np.ones(1), precisions_cholesky=np.ones(1))


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda p: p.write_bytes(b"hello, not a model"), "not a gaussmix model file"),
        (lambda p: write_npz(p, a=np.ones(3)), "no gaussmix.json inside"),
        (lambda p: write_npz(p, **{"gaussmix.json": metadata(format="other")}), "unknown format"),
        (lambda p: write_npz(p, **{"gaussmix.json": metadata(version=2)}, **good_arrays()),
         r"newer gaussmix \(format version 2; this one reads up to 1\); upgrade gaussmix"),
        (lambda p: write_npz(p, **{"gaussmix.json": metadata()}), "'weights' is missing"),
        (lambda p: write_npz(p, **{"gaussmix.json": metadata(n_features=2)}, **good_arrays()),
         r"'means' has shape \(1, 1\)"),
        (lambda p: write_npz(p, **{"gaussmix.json": np.frombuffer(b"{oops", np.uint8)}),
         "gaussmix.json is corrupt"),
        (lambda p: write_npz(p, **{"gaussmix.json": metadata()},
                             **{**good_arrays(), "weights": np.array([np.nan])}),
         "NaN or infinity"),
        (lambda p: write_npz(p, **{"gaussmix.json": metadata()},
                             **{**good_arrays(), "means": np.array([[{}]], dtype=object)}),
         "pickled objects"),
    ],
    ids=["not-zip", "foreign-npz", "foreign-json", "newer", "missing-array", "bad-shape",
         "bad-json", "nan", "pickle"],
)
def test_bad_files_are_refused_with_one_sentence(tmp_path, make, pattern):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(ValueError, match=pattern) as info:
        load(path)
    assert str(info.value).startswith(f"Cannot load {str(path)!r}: ")


def test_truncated_file_is_refused(tmp_path):
    gm = GaussianMixture(2, random_state=0).fit(make_blobs())
    gm.save(tmp_path / "m.npz")
    data = (tmp_path / "m.npz").read_bytes()
    for cut in (len(data) // 3, len(data) - 30):
        (tmp_path / "t.npz").write_bytes(data[:cut])
        with pytest.raises(ValueError, match="truncated or corrupt"):
            load(tmp_path / "t.npz")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model file"):
        load(tmp_path / "nothing.npz")


def test_format_is_a_plain_npz_with_json(tmp_path):
    GaussianMixture(2, random_state=0).fit(make_blobs()).save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        names = set(z.namelist())
    assert {"gaussmix.json.npy", "weights.npy", "means.npy"} <= names
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        meta = json.loads(bytes(f["gaussmix.json"]).decode())
    assert meta["format"] == "gaussmix-mixture" and meta["version"] == 1
    assert meta["gaussmix_version"] == gaussmix.__version__
    assert not any(name.startswith(".tmp-") for name in os.listdir(tmp_path))


def test_io_reads_a_plain_state_and_never_imports_the_estimator(tmp_path):
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(gio))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"mixture", "_distribution", None}, imported
    gm = GaussianMixture(2, random_state=0).fit(make_blobs())
    gm.save(tmp_path / "m.npz")
    state = gio.load_state(tmp_path / "m.npz")
    assert isinstance(state, gio.ModelState) and state.fitted["n_iter_"] == gm.n_iter_
    np.testing.assert_array_equal(state.arrays["means"], gm.means_)
    assert state.params["n_components"] == 2 and state.covariance_type == "full"


def test_paths_that_cannot_name_a_model_file_are_refused(tmp_path):
    gm = GaussianMixture(1).fit(make_blobs())
    with pytest.raises(ValueError, match="is a folder; pass a file name"):
        gm.save(tmp_path)
    with pytest.raises(ValueError, match="The path is empty"):
        gm.save("")
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        gm.save(tmp_path / "missing" / "m.npz")
    with pytest.raises(ValueError, match="it is a folder, not a model file"):
        load(tmp_path)
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def within(seconds):
    """Fail (instead of hanging the suite) when the block takes longer than ``seconds``."""
    def expire(*_):
        raise TimeoutError(f"blocked for over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_files_that_are_not_regular_are_refused_not_replaced_or_waited_on(tmp_path):
    gm = GaussianMixture(1).fit(make_blobs())
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with within(20):
        with pytest.raises(ValueError, match="not a regular file"):
            load(fifo)  # nobody writes to it: reading would block forever
        with pytest.raises(ValueError, match="not a regular file"):
            gm.save(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a pipe
    before = os.stat("/dev/null")
    with pytest.raises(ValueError, match="not a regular file"):
        gm.save("/dev/null")  # renaming over it would replace the device with a file
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.stat("/dev/null").st_rdev == \
        before.st_rdev


def test_bytes_paths_save_and_load(tmp_path):
    gm = GaussianMixture(2, random_state=0).fit(make_blobs())
    path = os.fsencode(tmp_path / "m.npz")
    gm.save(path)
    np.testing.assert_array_equal(load(path).means_, gm.means_)


@pytest.mark.parametrize("random_state", [np.random.RandomState(0), np.random])
def test_settings_that_are_not_values_are_named_and_not_saved(tmp_path, random_state):
    from gaussmix import BayesianGaussianMixture

    X = make_blobs()
    for cls in (GaussianMixture, BayesianGaussianMixture):
        model = cls(2, random_state=random_state, callback=lambda *a: None, max_iter=20)
        with pytest.warns(UserWarning, match="callback, random_state are not saved"):
            model.fit(X).save(tmp_path / "m.npz")
        loaded = load(tmp_path / "m.npz")
        assert loaded.random_state is None and loaded.callback is None
        np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_a_loaded_stream_continues_as_the_saved_one(tmp_path, covariance_type):
    """The running statistics of partial_fit are saved: the next chunks move a loaded model
    exactly as they move the one that was saved; n_missing_ is kept too."""
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.randn(1500, 2), rng.randn(1500, 2) + 5])
    rng.shuffle(X)
    X[::13, 1] = np.nan
    saved = GaussianMixture(3, covariance_type=covariance_type, random_state=0)
    for start in range(0, 1500, 300):
        saved.partial_fit(X[start:start + 300])
    saved.save(tmp_path / "stream.npz")
    loaded = load(tmp_path / "stream.npz")
    assert loaded.n_missing_ == saved.n_missing_ and loaded.n_steps_ == saved.n_steps_
    for start in range(1500, 3000, 300):
        saved.partial_fit(X[start:start + 300])
        loaded.partial_fit(X[start:start + 300])
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(saved, name))


def saved_members(tmp_path, covariance_type="full", **fit):
    """The members of a freshly saved model (metadata decoded) and the model."""
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0, **fit)
    gm.fit(make_blobs())
    gm.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz", allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    meta = json.loads(bytes(members.pop("gaussmix.json")).decode())
    return members, meta, gm


def write_forged(path, members, meta):
    encoded = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    write_npz(path, **{"gaussmix.json": encoded}, **members)


def scaled(name, factor):
    return lambda m, meta: m.update({name: m[name] * factor})


def replaced(name, value):
    return lambda m, meta: m.update({name: np.asarray(value, dtype=m[name].dtype)})


def negated_last_eigenvalue(m, meta):
    c = m["covariances"].copy()
    vals, vecs = np.linalg.eigh(c[0])
    vals[0] = -vals[0]
    c[0] = (vecs * vals) @ vecs.T
    m["covariances"] = c


FORGERIES = {
    "weights-not-summing-to-one": (replaced("weights", [0.9, 0.9]), "must sum to 1"),
    "zero-weight": (replaced("weights", [0.0, 1.0]), "weights must be positive"),
    "negative-weight": (replaced("weights", [-0.5, 1.5]), "weights must be positive"),
    "zero-precision-factors": (scaled("precisions_cholesky", 0.0),
                               "upper triangular with a positive diagonal"),
    "lower-triangular-factors": (
        lambda m, meta: m.update(precisions_cholesky=np.swapaxes(m["precisions_cholesky"], 1, 2)),
        "upper triangular"),
    "covariances-not-definite": (negated_last_eigenvalue, "not symmetric positive definite"),
    "covariances-doubled": (scaled("covariances", 2.0), "covariances do not match"),
    "precisions-doubled": (scaled("precisions", 2.0), "precisions do not match"),
    "mixed-dtypes": (lambda m, meta: m.update(weights=m["weights"].astype(np.float32)),
                     "share one dtype"),
    "wrong-number-of-feature-names": (lambda m, meta: meta.update(feature_names=["a"]),
                                      "feature_names must be 3 distinct strings"),
    "repeated-feature-names": (lambda m, meta: meta.update(feature_names=["a", "a", "b"]),
                               "feature_names must be 3 distinct strings"),
    "lower-bound-text": (lambda m, meta: meta["fitted"].update(lower_bound_="x"),
                         "lower_bound_ is 'x', which no fit produces"),
    "negative-n-iter": (lambda m, meta: meta["fitted"].update(n_iter_=-3), "n_iter_ is -3"),
    "fitted-a-list": (lambda m, meta: meta.update(fitted=[1, 2]), "'fitted'\\) is not a JSON object"),
    "converged-text": (lambda m, meta: meta["fitted"].update(converged_="yes"), "converged_ is 'yes'"),
    "negative-reg-covar": (lambda m, meta: meta["params"].update(reg_covar=-1.0),
                           r"settings are invalid \(reg_covar must be a real number >= 0"),
    "learning-decay-text": (lambda m, meta: meta["params"].update(learning_decay="x"),
                            "settings are invalid"),
    "zero-components": (lambda m, meta: meta.update(n_components=0),
                        "declares 0 components of 3 features"),
    "components-disagree": (lambda m, meta: meta["params"].update(n_components=3),
                            "disagree with its arrays"),
    "means-init-wrong-shape": (lambda m, meta: m.update(init_means=np.zeros((2, 4))),
                               "'init_means' has shape"),
    "weights-init-not-proportions": (lambda m, meta: m.update(init_weights=np.array([2.0, 0.5])),
                                     "settings are invalid"),
}


@pytest.mark.parametrize("name", FORGERIES)
def test_forged_models_are_refused_with_one_sentence(tmp_path, name):
    forge, pattern = FORGERIES[name]
    members, meta, _ = saved_members(tmp_path)
    members["init_weights"] = np.array([0.5, 0.5])
    forge(members, meta)
    path = tmp_path / "forged.npz"
    write_forged(path, members, meta)
    with pytest.raises(ValueError, match=pattern) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"Cannot load {str(path)!r}: ") and message.count("\n") == 0


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_forged_vector_covariances_are_refused(tmp_path, covariance_type):
    members, meta, _ = saved_members(tmp_path, covariance_type)
    for forge, pattern in ((scaled("precisions_cholesky", -1.0), "must be positive"),
                           (scaled("covariances", 2.0), "covariances do not match")):
        forged = dict(members)
        forge(forged, meta)
        write_forged(tmp_path / "f.npz", forged, meta)
        with pytest.raises(ValueError, match=pattern):
            load(tmp_path / "f.npz")


def test_a_forged_header_costs_no_memory(tmp_path):
    import tracemalloc

    members, meta, _ = saved_members(tmp_path)
    path = tmp_path / "huge.npz"
    write_forged(path, members, meta)
    header = {"descr": "<f8", "fortran_order": False, "shape": (2, 10**9)}
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as archive:
        with archive.open("means.npy", "w", force_zip64=True) as f:  # the last one wins
            np.lib.format.write_array_header_1_0(f, header)
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"'means' has shape \(2, 1000000000\)"):
        load(path)
    assert tracemalloc.get_traced_memory()[1] < 20 * 2**20
    tracemalloc.stop()


def test_unknown_members_are_never_decompressed(tmp_path):
    import tracemalloc

    members, meta, gm = saved_members(tmp_path)
    path = tmp_path / "bomb.npz"
    write_forged(path, members, meta)
    block = bytes(2**24)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("extra.npy", "w", force_zip64=True) as f:
            for _ in range(16):  # 256 MiB of zeros, about 256 kB compressed
                f.write(block)
    del block
    assert os.path.getsize(path) < 2**21
    tracemalloc.start()
    back = load(path)
    assert tracemalloc.get_traced_memory()[1] < 20 * 2**20
    tracemalloc.stop()
    np.testing.assert_array_equal(back.means_, gm.means_)


def test_a_model_saved_after_changing_its_covariance_type_loads_as_fitted(tmp_path):
    gm = GaussianMixture(2, random_state=0).fit(make_blobs())
    gm.set_params(covariance_type="diag")
    np.testing.assert_allclose(gm.score_samples(make_blobs()[:5]),
                               gm.set_params(covariance_type="full")
                               .score_samples(make_blobs()[:5]))
    gm.set_params(covariance_type="diag").save(tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    assert back.covariance_type == "full" and back.covariances_.shape == (2, 3, 3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ill_conditioned_fits_still_load(tmp_path, dtype, covariance_type):
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3000, 1))
    X = np.hstack([t, t * (1 + 1e-6) + 1e-7 * rng.normal(size=(3000, 1)),
                   1e4 + rng.normal(size=(3000, 1))]).astype(dtype)
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0,
                         reg_covar=0.0).fit(X)
    gm.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(load(tmp_path / "m.npz").means_, gm.means_)
