"""numba's threading layer (``backends.layer``): under every layer gaussmix supports, a fork
after a fit does not hang its children, and threads score and fit at once without aborting
the process. Real processes: each layer is fixed at a process's first kernel."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")

from gaussmix._kernels import threading_layer as layer

# Fits in the parent, then in forked children (a Pool, as Linux starts it by default before
# Python 3.14) and in threads: each result must match the parent's own.
SCRIPT = textwrap.dedent("""
    import multiprocessing, os, sys, threading, warnings
    import numpy as np
    from gaussmix import GaussianMixture
    from gaussmix._kernels import threading_layer as layer

    X = np.random.RandomState(0).rand(20000, 2)

    def fit(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return GaussianMixture(30, backend="numba", max_iter=4, random_state=seed).fit(X)

    def child_score(seed):
        return fit(seed).score(X)

    if __name__ == "__main__":
        import numba
        models = [fit(seed) for seed in range(3)]
        assert numba.threading_layer() == layer.chosen_layer() == sys.argv[1], (
            numba.threading_layer(), layer.chosen_layer())
        expected = [m.score(X) for m in models]
        with multiprocessing.get_context("fork").Pool(2) as pool:
            got = pool.map_async(child_score, range(3)).get(timeout=240)
        np.testing.assert_allclose(got, expected, rtol=1e-9)

        reference = models[0].score_samples(X)
        results = {}
        def score(i):
            results[i] = models[0].score_samples(X)
        def refit(i):
            results[i] = fit(i - 8).score(X)
        threads = [threading.Thread(target=score, args=(i,)) for i in range(8)]
        threads += [threading.Thread(target=refit, args=(i,)) for i in (8, 9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
        assert all(np.array_equal(results[i], reference) for i in range(8))
        np.testing.assert_allclose([results[8], results[9]], expected[:2], rtol=1e-9)
        print("ok")
""")


def _available(name):
    if name == "omp":
        try:
            from numba.np.ufunc import omppool  # noqa: F401
        except ImportError:
            return False
        return True
    return name != "tbb" or layer._load_tbb()


@pytest.mark.parametrize("name", layer.LAYERS)
def test_fork_and_threads_under_each_layer(tmp_path, name):
    if not _available(name):
        pytest.skip(f"numba's {name} layer cannot load on this machine")
    script = tmp_path / "layer_check.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, NUMBA_THREADING_LAYER=name, GAUSSMIX_COMPILE="foreground")
    done = subprocess.run([sys.executable, str(script), name], env=env, capture_output=True,
                          text=True, timeout=540)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_tbb_is_chosen_where_installed():
    if not _available("tbb"):
        pytest.skip("TBB is not installed")
    code = ("import os; os.environ.pop('NUMBA_THREADING_LAYER', None)\n"
            "from gaussmix._data.backends import layer; print(layer.configure())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "tbb", done.stderr[-2000:]


def test_named_selection_resolves_to_a_layer_numba_accepts(monkeypatch):
    # 'threadsafe' means TBB or OpenMP, whichever loads first: never workqueue.
    import numba

    monkeypatch.setattr(layer, "_configured", None)
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "threadsafe")
    chosen = layer.configure()
    assert chosen in ("tbb", "omp")
    assert numba.config.THREADING_LAYER == chosen
