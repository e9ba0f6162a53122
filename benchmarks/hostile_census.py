"""Count how hostile inputs end, by family: a right result, one sentence, or anything else.

    python benchmarks/hostile_census.py [--quick]

Families: estimator fits over a grid of scales, offsets, dtypes, weights, covariance types and
component counts; random weight vectors; every ``gaussmix paint`` option against hostile
values; forged model files (from ``tests/test_io.py``); broken pictures; settings that are not
values through save and load; pipes, devices and folders where files are expected;
segmentation strengths; odd calls (tensors, empty queries, bytes paths, duplicate columns,
more components than rows, wide data); forks and threads under each threading layer; the
studio's doors through a real server. "Right" means finite parameters and scores (a fit), exit
code 0 with its report (paint), a model that loads (files), the answer the request deserves
(the studio); "sentence" means a ValueError or exit code 2 (an HTTP error for the studio) whose
message is one line. Anything else (a traceback, NaN, a hang, a warning that leaks, a
multi-line message) is printed in full and counted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from gaussmix import GaussianMixture, load  # noqa: E402
from gaussmix.cli import main  # noqa: E402
from tests.conftest import make_blobs  # noqa: E402

SCALES = [1e-300, 1e-150, 1e-20, 1e-8, 1.0, 1e8, 1e20, 1e100, 1e134, 1e136, 1e160, 1e300]
OFFSETS = [0.0, 1e4, -1e8, 1e200]
WEIGHT_SCALES = [None, 0.0, 1e-300, 1e-20, 1.0, 1e15, 1e20, 1e21, 1e307]
COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def one_line(message):
    return "\n" not in message.strip() and "Traceback" not in message


class Census:
    def __init__(self):
        self.counts = {}

    def add(self, family, outcome, detail=""):
        row = self.counts.setdefault(family, {"right": 0, "sentence": 0, "other": 0})
        row[outcome] += 1
        if outcome == "other":
            print(f"[{family}] OTHER: {detail}")

    def table(self):
        lines = [f"{'family':<28}{'cases':>7}{'right':>7}{'sentence':>10}{'other':>7}"]
        for family, row in self.counts.items():
            lines.append(f"{family:<28}{sum(row.values()):>7}{row['right']:>7}"
                         f"{row['sentence']:>10}{row['other']:>7}")
        return "\n".join(lines)


def fit_case(census, family, X, w, **params):
    model = GaussianMixture(random_state=0, max_iter=20, **params)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            model.fit(X, sample_weight=w)
            scores = model.score_samples(X[:10])
    except ValueError as exc:
        census.add(family, "sentence" if one_line(str(exc)) else "other", repr(exc))
        return
    except Exception as exc:  # noqa: BLE001 - counting what escapes is the point
        census.add(family, "other", f"{params} {type(exc).__name__}: {exc}")
        return
    finite = all(np.isfinite(getattr(model, n)).all()
                 for n in ("weights_", "means_", "covariances_", "precisions_cholesky_"))
    finite = finite and np.isfinite(model.lower_bound_) and np.isfinite(scores).all()
    census.add(family, "right" if finite else "other", f"non-finite fit {params}")


def estimator_grid(census, quick):
    base = make_blobs(n_per=30)
    grid = itertools.product(SCALES, OFFSETS, (np.float64, np.float32), WEIGHT_SCALES,
                             COVARIANCE_TYPES, (1, 3))
    for i, (scale, offset, dtype, weight_scale, cov, k) in enumerate(grid):
        if quick and i % 10:
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            X = (base * scale + offset).astype(dtype)
        w = None if weight_scale is None else np.linspace(0.5, 2.0, len(X)) * weight_scale
        fit_case(census, "fit: scale/offset/weights", X, w, n_components=k,
                 covariance_type=cov)


def random_weights(census, quick):
    rng = np.random.default_rng(0)
    values = np.array([0.0, 1e-300, 1e-20, 1.0, 3.0, 1e20, 1e21, np.nan, np.inf, -1.0])
    X = make_blobs(n_per=30)
    valid = values[:7]  # half the cases hold only acceptable or huge weights
    for i in range(40 if quick else 300):
        w = (rng.choice(valid, size=len(X), p=[0.2, 0.05, 0.05, 0.4, 0.25, 0.04, 0.01])
             if i % 2 else rng.choice(values, size=len(X)))
        fit_case(census, "fit: random weights", X, w, n_components=2)


PAINT_VALUES = ["0", "-1", "1e-300", "0.001", "0.6", "1", "1000", "1e300", "inf", "nan", "x",
                "99999999999", "2"]
PAINT_OPTIONS = ["--sharpen", "--color-scale", "--peak", "--threshold", "--seed", "-k",
                 "--samples", "--max-pixels", "--max-iter", "--tone"]


run_cli_last = [None]  # the last run's (code, stderr), for calls made in a thread


def run_cli(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        except Exception as exc:  # noqa: BLE001
            code, err = None, io.StringIO(f"{type(exc).__name__}: {exc}")
    run_cli_last[0] = (code, err.getvalue())
    return run_cli_last[0]


def paint_options(census, folder, quick):
    from PIL import Image

    picture = os.path.join(folder, "small.png")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8)).save(picture)
    for mode in (["color"] if quick else ["color", "bw"]):
        for option, value in itertools.product(PAINT_OPTIONS, PAINT_VALUES):
            shown = f"{value}:0,1:1" if option == "--tone" else value
            out = tempfile.mkdtemp(dir=folder)
            code, err = run_cli(["paint", picture, "--out", out, "--quiet", "--mode", mode,
                                 "--max-iter", "3", "-k", "3", option, shown])
            if code == 0 and os.path.exists(os.path.join(out, "report.json")):
                census.add("cli: paint options", "right")
            elif code == 2 and one_line(err):
                census.add("cli: paint options", "sentence")
            else:
                census.add("cli: paint options", "other", f"{option} {shown}: {code} {err}")


def broken_pictures(census, folder):
    from PIL import Image

    good = os.path.join(folder, "good.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8) + 128).save(good)
    data = open(good, "rb").read()
    cases = {"empty": b"", "text": b"not a picture", "gif-header": b"GIF89a" + bytes(7)}
    for cut in (8, 16, 33, len(data) // 2, len(data) - 12):
        cases[f"truncated-{cut}"] = data[:cut]
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    cases["corrupt-byte"] = bytes(flipped)
    for size in ((1, 1), (1, 40), (2, 2)):
        path = os.path.join(folder, f"tiny-{size[0]}x{size[1]}.png")
        Image.fromarray(np.zeros(size, np.uint8)).save(path)
        cases[f"tiny-{size}"] = open(path, "rb").read()
    for name, content in cases.items():
        path = os.path.join(folder, f"{name}.png")
        with open(path, "wb") as f:
            f.write(content)
        code, err = run_cli(["paint", path, "--out", os.path.join(folder, "o-" + name),
                             "--quiet", "-k", "1", "--max-iter", "2"])
        outcome = "right" if code == 0 else "sentence" if code == 2 and one_line(err) else "other"
        census.add("cli: broken pictures", outcome, f"{name}: {code} {err}")


def forged_models(census, folder):
    from tests import test_io

    for name, (forge, _) in test_io.FORGERIES.items():
        members, meta, _ = test_io.saved_members(_Path(folder))
        members["init_weights"] = np.array([0.5, 0.5])
        forge(members, meta)
        path = os.path.join(folder, f"forged-{name}.npz")
        test_io.write_forged(path, members, meta)
        try:
            load(path)
            census.add("load: forged models", "other", f"{name} loaded")
        except ValueError as exc:
            census.add("load: forged models", "sentence" if one_line(str(exc)) else "other",
                       str(exc))
    members, meta, gm = test_io.saved_members(_Path(folder))
    path = os.path.join(folder, "good.npz")
    gm.save(path)
    data = open(path, "rb").read()
    for cut in range(0, len(data), max(1, len(data) // 60)):
        with open(path + ".cut", "wb") as f:
            f.write(data[:cut])
        try:
            load(path + ".cut")
            census.add("load: truncated models", "other", f"cut at {cut} loaded")
        except ValueError as exc:
            census.add("load: truncated models", "sentence" if one_line(str(exc)) else "other",
                       str(exc))
        except Exception as exc:  # noqa: BLE001
            census.add("load: truncated models", "other", f"{type(exc).__name__}: {exc}")


class _Path(str):
    """A folder name that joins with ``/`` as the tests' tmp_path does."""

    def __truediv__(self, other):
        return _Path(os.path.join(self, other))


def outcome_of(call, timeout=60.0):
    """("right", "") when ``call`` returns, ("sentence", message) for a one-line ValueError,
    ("other", what) for anything else: another exception, a multi-line message, a warning,
    or no end within ``timeout`` seconds (a hang)."""
    result = {}

    def run():
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                result["value"] = call()
            leaked = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
            result["outcome"] = ("other", f"warnings {leaked}") if leaked else ("right", "")
        except ValueError as exc:
            result["outcome"] = ("sentence" if one_line(str(exc)) else "other", str(exc))
        except Exception as exc:  # noqa: BLE001
            result["outcome"] = ("other", f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return result.get("outcome", ("other", f"no end after {timeout:g} s"))


def cli_outcome(argv, timeout=120.0):
    """:func:`outcome_of` for a command line: exit code 0 is right, 2 with one line is a
    sentence; anything else, a leaked warning or a hang is other."""
    outcome = outcome_of(lambda: run_cli(argv), timeout)
    if outcome[0] != "right":
        return outcome
    code, err = run_cli_last[0]
    if code == 0:
        return ("right", "")
    return ("sentence", err) if code == 2 and one_line(err) else ("other", f"{code} {err}")


def add(census, family, outcome, name):
    census.add(family, outcome[0], f"{name}: {outcome[1]}")


def settings_through_files(census, folder):
    """Settings that are not values (a RandomState, numpy's random module, a Generator, a
    callback): fitted, saved, loaded, scored as the saved model scores."""
    from gaussmix import BayesianGaussianMixture

    X = make_blobs(n_per=30)
    settings = {"RandomState": {"random_state": np.random.RandomState(0)},
                "np.random": {"random_state": np.random},
                "callback": {"random_state": 0, "callback": lambda *a: None},
                "seed": {"random_state": 3}}
    for (name, extra), cls in itertools.product(settings.items(),
                                                (GaussianMixture, BayesianGaussianMixture)):
        path = os.path.join(folder, f"settings-{name}-{cls.__name__}.npz")

        def round_trip(cls=cls, extra=extra, path=path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = cls(2, max_iter=10, **extra).fit(X)
                model.save(path)
                loaded = load(path)
            if not np.allclose(loaded.score_samples(X), model.score_samples(X), rtol=1e-12):
                raise RuntimeError("the loaded model scores differently")

        add(census, "save/load: settings", outcome_of(round_trip), f"{cls.__name__} {name}")


def not_regular_files(census, folder):
    """Pipes nobody writes to, devices and folders where a file is expected: refused at once
    (a hang or a replaced device is 'other')."""
    import stat

    from PIL import Image

    fifo = os.path.join(folder, "pipe")
    os.mkfifo(fifo)
    picture = os.path.join(folder, "fine.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8) + 128).save(picture)
    model = GaussianMixture(2, random_state=0, max_iter=5).fit(make_blobs(n_per=30))
    device = os.stat("/dev/null")
    out = os.path.join(folder, "o")
    for target in (fifo, "/dev/null", folder):
        add(census, "files: not regular", outcome_of(lambda t=target: load(t), 20),
            f"load {target}")
        add(census, "files: not regular", outcome_of(lambda t=target: model.save(t), 20),
            f"save {target}")
        for argv in (["paint", target, "--out", out],
                     ["paint", picture, "--mask", target, "--out", out],
                     ["segment", target, "--box", "1,1,5,5", "--out", out]):
            add(census, "files: not regular", cli_outcome(argv, 30), " ".join(argv))
    same = os.stat("/dev/null")
    if not (stat.S_ISCHR(same.st_mode) and same.st_rdev == device.st_rdev):
        census.add("files: not regular", "other", "/dev/null was replaced")
    if not stat.S_ISFIFO(os.stat(fifo).st_mode):
        census.add("files: not regular", "other", "the pipe was replaced")


def segment_strengths(census, folder):
    """``gaussmix segment --strength`` for every coherence against hostile values (no
    overflow, no leaked warning)."""
    from PIL import Image

    picture = os.path.join(folder, "object.png")
    y, x = np.mgrid[:40, :40]
    pixels = np.where(((x - 20) ** 2 + (y - 20) ** 2 < 120)[..., None], [200, 40, 40],
                      [60, 120, 60]) + np.random.default_rng(0).normal(0, 8, (40, 40, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(picture)
    for coherence, value in itertools.product(("graphcut", "smooth", "none"),
                                              ("0", "1", "1e30", "1e300", "inf", "nan", "-1",
                                               "x")):
        argv = ["segment", picture, "--box", "8,8,32,32", "--coherence", coherence,
                "--strength", value, "--out", os.path.join(folder, f"seg-{coherence}")]
        add(census, "cli: segment strengths", cli_outcome(argv), " ".join(argv[4:8]))


def odd_calls(census):
    """Calls on the edge of the API: tensors with holes, empty queries, bytes paths,
    duplicate column names, more components than rows, wide data."""
    from gaussmix import GaussianMixtureImputer

    X = make_blobs(n_per=30)
    model = GaussianMixture(3, random_state=0, max_iter=10).fit(X)
    holes = X.copy()
    holes[::7, 1] = np.nan
    cases = {
        "conditional_mean of no rows": lambda: model.conditional_mean([0], np.empty((0, 1))),
        "save to a bytes path": lambda: model.save(os.fsencode(
            os.path.join(tempfile.mkdtemp(), "m.npz"))),
        "imputer, 50 components, 10 rows": lambda: GaussianMixtureImputer(
            n_components=50).fit(holes[:10]),
    }
    with contextlib.suppress(ImportError):
        import torch

        cases["impute a CPU tensor with holes"] = lambda: model.impute(torch.tensor(holes))
    with contextlib.suppress(ImportError):
        import pandas as pd

        frame = pd.DataFrame(X, columns=["a", "a", "b"])
        cases["duplicate column names"] = lambda: GaussianMixture(2).fit(frame)
    for d in (200, 600):
        cases[f"wide data, D={d}"] = lambda d=d: wide_case(d)
    for name, call in cases.items():
        add(census, "api: odd calls", outcome_of(call, 300), name)


def wide_case(n_features):
    """A wide fit equals scikit-learn's from the same start."""
    from sklearn.mixture import GaussianMixture as Theirs

    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, n_features)) + 3.0 * rng.randint(0, 2, (300, 1))
    settings = dict(n_components=2, weights_init=[0.5, 0.5], means_init=X[:2] + 0.1,
                    precisions_init=np.tile(np.eye(n_features), (2, 1, 1)), reg_covar=1e-3,
                    max_iter=5, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = GaussianMixture(**settings).fit(X), Theirs(**settings).fit(X)
    if not np.isclose(ours.score(X), theirs.score(X), rtol=1e-9):
        raise RuntimeError(f"score {ours.score(X)} against scikit-learn's {theirs.score(X)}")


def forks_and_threads(census):
    """Under each threading layer that loads: a fork Pool after fits, and 8 scoring and 2
    fitting threads at once (``tests/backends/test_layer.py``'s script), in a process."""
    from gaussmix._kernels import threading_layer as layer
    from tests.kernels import test_threading_layer as test_layer

    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "layer_check.py")
        with open(script, "w") as f:
            f.write(test_layer.SCRIPT)
        for name in layer.LAYERS:
            if not test_layer._available(name):
                continue
            env = dict(os.environ, NUMBA_THREADING_LAYER=name, GAUSSMIX_COMPILE="foreground")
            try:
                done = subprocess.run([sys.executable, script, name], env=env, timeout=540,
                                      capture_output=True, text=True)
            except subprocess.TimeoutExpired:
                census.add("processes: fork and threads", "other", f"{name}: hung")
                continue
            ok = done.returncode == 0 and done.stdout.strip().endswith("ok")
            census.add("processes: fork and threads", "right" if ok else "other",
                       f"{name}: {done.returncode} {done.stderr[-500:]}")


def studio_doors(census):
    """Requests a hostile page or client can make, through a real server on 127.0.0.1: each
    must get its status and one sentence (or be served, for the legitimate ones)."""
    from gaussmix.studio.app import create_app
    from tests.studio import test_app
    from tests.studio import test_serve
    from tests.studio.servers import running_server

    app = create_app(max_upload_bytes=200_000, max_queued=1, upload_idle_seconds=1.0,
                     upload_seconds=3.0)
    with running_server(app) as port:
        def expect(name, status, method, path, body=None, headers=None):
            answers = []
            outcome = outcome_of(lambda: answers.append(
                test_serve.ask(port, method, path, body, headers)), 60)
            if outcome[0] != "right":
                return add(census, "studio: doors", outcome, name)
            got, answer, _ = answers[0]
            if got != status:
                return census.add("studio: doors", "other", f"{name}: {got} {answer}")
            if status < 400:
                return census.add("studio: doors", "right")
            good = isinstance(answer, dict) and one_line(answer.get("error", "\n"))
            return census.add("studio: doors", "sentence" if good else "other",
                              f"{name}: {answer}")

        form = {"Content-Type": "application/x-www-form-urlencoded"}
        body, headers = test_serve.png_upload()
        for host, status in (("evil.example", 403), ("127.0.0.1.evil.example", 403),
                             ("localhost.", 200), ("[::2]:1", 403), ("", 403),
                             ("a" * 300, 403), (f"127.0.0.1:{port}", 200)):
            expect(f"Host {host[:24]!r}", status, "GET", "/api/samples",
                   headers={"Host": host})
        for extra in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                      {"Origin": f"http://localhost:{port}"}, {"Sec-Fetch-Site": "cross-site"},
                      {"Sec-Fetch-Site": "same-site"}):
            expect(f"POST {extra}", 403, "POST", "/api/jobs", body, {**headers, **extra})
            expect(f"DELETE {extra}", 403, "DELETE", "/api/jobs/x", None, extra)
        big, big_headers = test_serve.multipart(b"\0" * 600_000)
        expect("upload over the limit", 413, "POST", "/api/jobs", big, big_headers)
        expect("a truncated picture", 415, "POST", "/api/jobs",
               *test_serve.multipart(test_app.png()[:-300]))
        knots = ",".join(f"{x:.6f}:{x:.6f}" for x in np.linspace(0, 1, 10_000))
        expect("a 10,000-knot tone", 404, "GET", f"/api/jobs/x/renders/d.png?tone={knots}")
        expect("a long fit", 202, "POST", "/api/jobs",
               b"sample=astronaut&k=300&max_iter=1000", form)
        expect("queued", 202, "POST", "/api/jobs", b"sample=horse", form)
        expect("a full queue", 429, "POST", "/api/jobs", b"sample=horse", form)
        for job in list(app.state.store.jobs):
            test_serve.ask(port, "DELETE", f"/api/jobs/{job}")
        if any(job.picture is not None for job in app.state.store.jobs.values()):
            census.add("studio: doors", "other", "a cancelled job still holds its upload")


def main_census():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the estimator grid, "
                        "and no fork and thread processes")
    parser.add_argument("--only", default=None, help="comma-separated family functions "
                        "(e.g. studio_doors,odd_calls)")
    args = parser.parse_args()
    census = Census()
    with tempfile.TemporaryDirectory() as folder:
        families = {
            "estimator_grid": lambda: estimator_grid(census, args.quick),
            "random_weights": lambda: random_weights(census, args.quick),
            "paint_options": lambda: paint_options(census, folder, args.quick),
            "broken_pictures": lambda: broken_pictures(census, folder),
            "forged_models": lambda: forged_models(census, folder),
            "settings_through_files": lambda: settings_through_files(census, folder),
            "not_regular_files": lambda: not_regular_files(census, folder),
            "segment_strengths": lambda: segment_strengths(census, folder),
            "odd_calls": lambda: odd_calls(census),
            "studio_doors": lambda: studio_doors(census),
            "forks_and_threads": lambda: None if args.quick else forks_and_threads(census),
        }
        chosen = families if args.only is None else args.only.split(",")
        for name in chosen:
            families[name]()
    print(census.table())


if __name__ == "__main__":
    main_census()
