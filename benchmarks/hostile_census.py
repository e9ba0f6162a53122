"""Count how hostile inputs end, by family: a right result, one sentence, or anything else.

    python benchmarks/hostile_census.py [--quick]

Families: estimator fits over a grid of scales, offsets, dtypes, weights, covariance types and
component counts; random weight vectors; every ``gaussmix paint`` option against hostile
values; forged model files (from ``tests/test_io.py``); broken pictures. "Right" means finite
parameters and scores (a fit), exit code 0 with its report (paint), a model that loads
(files); "sentence" means a ValueError or exit code 2 whose message is one line. Anything
else (a traceback, NaN, a multi-line message) is printed in full and counted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import sys
import tempfile
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


def run_cli(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        except Exception as exc:  # noqa: BLE001
            return None, f"{type(exc).__name__}: {exc}"
    return code, err.getvalue()


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


def main_census():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the estimator grid")
    args = parser.parse_args()
    census = Census()
    with tempfile.TemporaryDirectory() as folder:
        estimator_grid(census, args.quick)
        random_weights(census, args.quick)
        paint_options(census, folder, args.quick)
        broken_pictures(census, folder)
        forged_models(census, folder)
    print(census.table())


if __name__ == "__main__":
    main_census()
