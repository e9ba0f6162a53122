"""Hostile input across the package: every case ends in a right result or one sentence.

Each family draws its cases (hypothesis strategies, generated broken files, processes killed
mid-write) and checks the promise the README makes about it: no traceback, no NaN, nothing
half-written. The slower cases are marked ``slow``.
"""

import contextlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gaussmix import GaussianMixture, load
from gaussmix._foundations.files import STALE_SECONDS, TEMPORARY_PREFIX, remove_stale_temporaries
from gaussmix.cli import main
from gaussmix.exceptions import ConvergenceWarning, RegularizationWarning

from .conftest import make_blobs
from .processes import kill_during_second_run, whole_run_report


def one_sentence(message):
    """A message a user can act on: one line, no traceback, ends with a full stop."""
    return "\n" not in message.strip() and "Traceback" not in message and \
        message.strip().endswith((".", ")"))


def quiet_fit(model, X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, RegularizationWarning))
        return model.fit(X, **kwargs)


# ---------------------------------------------------------------------------------------------
# Estimator inputs: scales, offsets, dtypes, weights

SCALES = st.sampled_from([1e-300, 1e-150, 1e-20, 1e-8, 1.0, 1e8, 1e20, 1e100, 1e134, 1e136,
                          1e160, 1e300])
WEIGHT_SCALES = st.sampled_from([None, 0.0, 1e-300, 1e-20, 1.0, 1e15, 1e20, 1e21, 1e307])


@given(scale=SCALES, offset=st.sampled_from([0.0, 1e4, -1e8, 1e200]),
       dtype=st.sampled_from([np.float64, np.float32]), weight_scale=WEIGHT_SCALES,
       covariance_type=st.sampled_from(["full", "tied", "diag", "spherical"]),
       k=st.integers(1, 4))
def test_any_scale_offset_and_weight_fits_or_is_refused(scale, offset, dtype, weight_scale,
                                                        covariance_type, k):
    with np.errstate(over="ignore", invalid="ignore"):
        X = (make_blobs(n_per=30) * scale + offset).astype(dtype)
    w = None if weight_scale is None else np.linspace(0.5, 2.0, len(X)) * weight_scale
    model = GaussianMixture(k, covariance_type=covariance_type, random_state=0, max_iter=20)
    try:
        quiet_fit(model, X, sample_weight=w)
    except ValueError as exc:
        assert one_sentence(str(exc)), str(exc)
        return
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.isfinite(getattr(model, name)).all(), name
    assert np.isfinite(model.lower_bound_)
    assert np.isfinite(model.score_samples(X[:10])).all()


@given(weights=st.lists(st.sampled_from([0.0, 1e-300, 1e-20, 1.0, 3.0, 1e20, 1e21, np.nan,
                                          np.inf, -1.0]), min_size=90, max_size=90))
def test_any_weights_fit_or_are_refused(weights):
    X = make_blobs(n_per=30)
    model = GaussianMixture(2, random_state=0, max_iter=10)
    try:
        quiet_fit(model, X, sample_weight=np.array(weights))
    except ValueError as exc:
        assert one_sentence(str(exc)), str(exc)
        return
    assert np.isfinite(model.means_).all() and np.isfinite(model.lower_bound_)


@pytest.mark.parametrize("X", [
    np.zeros((0, 2)), np.zeros((5, 0)), np.array([["a", "b"]] * 5, dtype=object),
    np.array([[1.0, np.nan]] * 5), np.full((5, 2), np.inf), np.ones(5), np.ones((2, 2, 2)),
], ids=["no-rows", "no-columns", "strings", "nan", "inf", "1-d", "3-d"])
def test_malformed_arrays_get_one_sentence(X):
    with pytest.raises(ValueError) as info:
        GaussianMixture(1).fit(X)
    assert one_sentence(str(info.value)), str(info.value)


# ---------------------------------------------------------------------------------------------
# The command line: any option value, exit 0 or one sentence with exit 2

@pytest.fixture(scope="module")
def small_picture(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("pictures") / "small.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8)).save(path)
    return str(path)


NUMBERS = st.sampled_from(["0", "-1", "1e-300", "0.001", "0.6", "1", "1000", "1e300", "inf",
                           "nan", "x", "99999999999", "2"])


@given(option=st.sampled_from(["--sharpen", "--color-scale", "--peak", "--threshold", "--seed",
                               "-k", "--samples", "--max-pixels", "--max-iter", "--tone"]),
       value=NUMBERS)
def test_any_paint_option_paints_or_gets_one_sentence(small_picture, tmp_path_factory, option,
                                                      value):
    out = tmp_path_factory.mktemp("out")
    if option == "--tone":
        value = f"{value}:0,1:1"
    argv = ["paint", small_picture, "--out", str(out), "--quiet", "--renders",
            "samples,density,contour,ellipses", "--max-iter", "3", "-k", "3", option, value]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own refusal
            code = exit_.code
    err = err.getvalue()
    assert code in (0, 2), err
    if code == 2:
        assert one_sentence(err), err
    else:
        assert (out / "report.json").exists()


@pytest.mark.parametrize("argv", [["figures", "--seed", "-1"], ["figures", "--seed", "2e9"],
                                  ["demo", "--seed", "99999999999"]])
def test_other_commands_refuse_bad_seeds(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out", str(tmp_path)])
    assert exit_.value.code == 2 and one_sentence(capsys.readouterr().err)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + bytes(40), b"GIF89a" + bytes(7),
                                     b"not a picture at all"],
                         ids=["empty", "truncated-png", "truncated-gif", "text"])
def test_broken_pictures_get_one_sentence(content, tmp_path, capsys):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    assert main(["paint", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert one_sentence(capsys.readouterr().err)


# ---------------------------------------------------------------------------------------------
# Processes killed in the middle of a write

def run_and_kill(script, after_seconds, cwd):
    """Start ``python -c script`` in ``cwd``, SIGKILL it after ``after_seconds``."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(after_seconds)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return process.pid


SAVE_FOREVER = """
    import numpy as np
    from gaussmix import GaussianMixture
    rng = np.random.default_rng(0)
    gm = GaussianMixture.from_params(np.full(3000, 1 / 3000), rng.normal(size=(3000, 12)),
                                     np.tile(np.eye(12), (3000, 1, 1)))
    open("ready", "w").close()
    while True:
        gm.save("model.npz")
"""


@pytest.mark.slow
def test_save_killed_mid_write_never_leaves_half_a_model(tmp_path):
    leftovers = set()
    for delay in (2.0, 2.3, 2.7):
        pid = run_and_kill(SAVE_FOREVER, delay, tmp_path)
        if (tmp_path / "model.npz").exists():
            assert load(tmp_path / "model.npz").means_.shape == (3000, 12)
        new = {p.name for p in tmp_path.iterdir() if p.name.startswith(TEMPORARY_PREFIX)}
        assert all(f"-{pid}-" in name for name in new - leftovers)  # named by their process
        leftovers |= new
    assert leftovers, "no kill landed mid-write: the test proves nothing"
    old = time.time() - 2 * STALE_SECONDS
    for path in tmp_path.iterdir():
        os.utime(path, (old, old))
    GaussianMixture(1).fit(make_blobs()).save(tmp_path / "other.npz")  # any later write
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMPORARY_PREFIX)]


PAINT_TWICE = """
    import sys
    from gaussmix.cli import main
    main(["paint", sys.argv[1], "--out", "run", "--quiet", "-k", "4", "--seed", "0"])
    open("first-done", "w").close()
    main(["paint", sys.argv[1], "--out", "run", "--quiet", "-k", "6", "--seed", "1"])
"""


@pytest.mark.slow
@pytest.mark.parametrize("extra_delay", [0.05, 0.2, 0.5])
def test_paint_killed_mid_run_leaves_a_report_only_of_a_whole_run(tmp_path, extra_delay):
    from PIL import Image

    from .imaging.pictures import disc_and_bar

    Image.fromarray(disc_and_bar(96, 128)).save(tmp_path / "p.png")
    kill_during_second_run(PAINT_TWICE, tmp_path / "p.png", tmp_path, extra_delay)
    report = whole_run_report(tmp_path / "run")
    if report is not None:
        assert load(tmp_path / "run" / "model.npz").n_components == report["n_components"]


def test_only_stale_temporaries_of_finished_processes_are_removed(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout.strip()
    names = {
        "dead-old": f"{TEMPORARY_PREFIX}{finished}-abc-model.npz",
        "dead-young": f"{TEMPORARY_PREFIX}{finished}-def-model.npz",
        "alive-old": f"{TEMPORARY_PREFIX}{os.getpid()}-ghi-model.npz",
        "someone-else": ".tmp-abc-model.npz",
        "folder": f"{TEMPORARY_PREFIX}{finished}-jkl-run",
    }
    for key, name in names.items():
        path = tmp_path / name
        path.mkdir() if key == "folder" else path.write_bytes(b"x")
    old = time.time() - 2 * STALE_SECONDS
    for key in ("dead-old", "alive-old", "someone-else", "folder"):
        os.utime(tmp_path / names[key], (old, old))
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        names[k] for k in ("dead-young", "alive-old", "someone-else"))


# ---------------------------------------------------------------------------------------------
# Streams, chunk functions and Dask

def test_a_chunk_function_that_changes_between_passes_is_refused():
    X = make_blobs()
    calls = []

    def chunks():
        calls.append(1)
        yield X[: 200 + len(calls)]

    with pytest.raises(ValueError, match="yielded 201 rows on its first pass and 202 on a "
                                         "later one; it must yield the same rows"):
        GaussianMixture(2, max_iter=3).fit(chunks)


def test_dask_reports_the_global_row_and_takes_object_numbers():
    da = pytest.importorskip("dask.array")
    X = make_blobs()
    bad = X.copy()
    bad[243, 1] = -np.inf
    with pytest.raises(ValueError, match=r"infinity \(inf\) in 1 row \(first at row 243\)"):
        GaussianMixture(2).fit(da.from_array(bad, chunks=(50, 3)))
    numbers = GaussianMixture(2, random_state=0).fit(da.from_array(X.astype(object), chunks=(50, 3)))
    plain = GaussianMixture(2, random_state=0).fit(da.from_array(X, chunks=(50, 3)))
    np.testing.assert_allclose(numbers.means_, plain.means_)
    with pytest.raises(ValueError, match="non-numeric values"):
        GaussianMixture(2).fit(da.from_array(np.array([["a"] * 3] * 10, dtype=object),
                                             chunks=(5, 3)))


# ---------------------------------------------------------------------------------------------
# The studio's doors: any Host and Origin a page or client can send

HOST_PARTS = st.sampled_from(["127.0.0.1", "localhost", "[::1]", "::1", "evil.example",
                              "127.0.0.1.evil.example", "localhost.", "LOCALHOST", "[::2]",
                              "10.0.0.7", "", "[", "]", ":", "a" * 200, "xn--80ak6aa92e.com",
                              "127.1", "0x7f.0.0.1", "studio.lan"])
PORTS = st.sampled_from(["", ":8765", ":0", ":99999", "::", ":x"])


@given(host=st.one_of(st.none(), st.builds(lambda h, p: h + p, HOST_PARTS, PORTS),
                      st.text(max_size=40)),
       origin=st.one_of(st.none(), st.sampled_from(["null", "http://evil.example",
                                                    "http://127.0.0.1:8765", "file://"]),
                        st.text(max_size=40)),
       method=st.sampled_from(["GET", "HEAD", "POST", "DELETE", "PUT", "OPTIONS"]),
       listen=st.sampled_from(["127.0.0.1", "0.0.0.0", "::", "studio.lan"]))
def test_the_doors_pass_only_the_servers_own_names_and_pages(host, origin, method, listen):
    pytest.importorskip("starlette")
    import ipaddress

    from gaussmix.studio.doors import Doors, host_name

    # Headers travel as latin-1 bytes: other characters arrive replaced.
    host, origin = (None if v is None else v.encode("latin-1", "replace").decode("latin-1")
                    for v in (host, origin))
    headers = [(name.encode(), value.encode("latin-1"))
               for name, value in (("host", host), ("origin", origin)) if value is not None]
    doors = Doors(None, listen)
    sentence = doors.refusal({"type": "http", "method": method, "headers": headers})
    if sentence is not None:
        assert one_sentence(sentence), sentence
        return
    # Passed: the Host names this server (or is an IP address where it listens on all)...
    if host is not None:
        name = host_name(host).rstrip(".")
        own = name in ("127.0.0.1", "localhost", "::1", listen)
        if listen in ("0.0.0.0", "::") and not own:
            ipaddress.ip_address(name)  # raises for anything but an address
        else:
            assert own, (host, listen)
    # ... and a change comes from the page's own origin or from a client that names none.
    if method not in ("GET", "HEAD", "OPTIONS") and origin is not None:
        assert origin.lower() == f"http://{host}".lower()
