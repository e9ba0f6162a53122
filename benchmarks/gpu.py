"""gaussmix on a GPU, side by side in one run: the torch E-step in float32 and float64 against
the numba path on the machine's CPU cores, and TorchGMM and pomegranate on the same GPU when
they are installed.

For each workload (5-D rows with K=1000 at 10^5 ... 10^8 rows, the horse's dark pixels with
K=500, a 512x512 colour picture with K=1000) and each library:

- per-iteration time: EM (``tol=0``) from the same initial parameters for two iteration
  counts, differenced, so that set-up and initialisation count for neither;
- whole fit: default settings (k-means initialisation, tol=1e-3), one seed;
- peak device memory during the fit (``torch.cuda.max_memory_allocated``);
- final mean log-likelihood of the data.

Everything printed is also written to ``$OUT/gpu.txt`` (or ``--out DIR``). Usage::

    python benchmarks/gpu.py                       # on a machine with CUDA, about 6 minutes
    python benchmarks/gpu.py --quick --device cpu  # small sizes on the CPU: a smoke test
    python benchmarks/gpu.py --rows 1e6,1e7        # only some of the synthetic sizes
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
import traceback
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
K_SYNTHETIC = 1000
D_SYNTHETIC = 5
LOW, HIGH = 2, 7
REG_COVAR = 1e-6


class Tee:
    """Print to stdout and to a file."""

    def __init__(self, path):
        self.file = open(path, "w") if path else None

    def __call__(self, text=""):
        print(text, flush=True)
        if self.file:
            self.file.write(text + "\n")
            self.file.flush()


def synthetic(n_rows, seed=0):
    """``n_rows`` 5-D rows from 1000 well-spread Gaussian clusters (float32)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-100, 100, (K_SYNTHETIC, D_SYNTHETIC)).astype(np.float32)
    labels = rng.integers(0, K_SYNTHETIC, n_rows)
    x = np.empty((n_rows, D_SYNTHETIC), dtype=np.float32)
    step = 10_000_000
    for s in range(0, n_rows, step):
        lab = labels[s:s + step]
        x[s:s + len(lab)] = centres[lab] + rng.standard_normal(
            (len(lab), D_SYNTHETIC), dtype=np.float32) * 2.0
    return x


def start_for(X, k, seed=0):
    """Random rows as means, equal weights, 1% of the data's variance (full covariances)."""
    rng = np.random.RandomState(seed)
    means = np.asarray(X[rng.choice(len(X), k, replace=False)], dtype=np.float64)
    sample = np.asarray(X[rng.choice(len(X), min(len(X), 100_000), replace=False)],
                        dtype=np.float64)
    precision = np.eye(X.shape[1]) / (0.01 * sample.var(axis=0).mean())
    return dict(weights_init=np.full(k, 1.0 / k), means_init=means,
                precisions_init=np.tile(precision, (k, 1, 1)))


def synchronise(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def peak_memory(device, out):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        out["peak_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20


def gaussmix_run(X, k, start, iterations, backend=None):
    from gaussmix import GaussianMixture

    kw = {} if start is None else start
    model = GaussianMixture(k, reg_covar=REG_COVAR, backend=backend, random_state=0,
                            **({"max_iter": iterations, "tol": 0} if iterations else {}), **kw)
    began = time.perf_counter()
    model.fit(X)
    return time.perf_counter() - began, model


def measure_gaussmix(X, k, start, device, backend=None):
    """(s/iter, whole-fit s, iterations, peak MiB, mean log-lik.) for gaussmix on X."""
    gaussmix_run(X, k, start, 1, backend)  # kernels compiled, caches warm
    synchronise(device)
    low = min(gaussmix_run(X, k, start, LOW, backend)[0] for _ in range(2))
    high = min(gaussmix_run(X, k, start, HIGH, backend)[0] for _ in range(2))
    memory = {}
    with peak_memory(device, memory):
        seconds, model = gaussmix_run(X, k, None, None, backend)
    log_lik = float(model.score(X))
    return dict(per_iter=(high - low) / (HIGH - LOW), fit=seconds, n_iter=model.n_iter_,
                peak_mib=memory.get("peak_mib"), log_lik=log_lik)


def measure_peer(run, device, n_iter_of, log_lik_of):
    """The same figures for a peer library: ``run(iterations, tol)`` fits one model and
    returns (seconds, model)."""
    low = run(LOW, 0.0)[0]
    high = run(HIGH, 0.0)[0]
    memory = {}
    with peak_memory(device, memory):
        seconds, model = run(100, 1e-3)
    return dict(per_iter=(high - low) / (HIGH - LOW), fit=seconds, n_iter=n_iter_of(model),
                peak_mib=memory.get("peak_mib"), log_lik=log_lik_of(model))


def timed(fit, device):
    began = time.perf_counter()
    model = fit()
    synchronise(device)
    return time.perf_counter() - began, model


def measure_torchgmm(X, k, device):
    import torch
    from torchgmm.bayes import GaussianMixture as TorchGMM

    accelerator = "gpu" if device.type == "cuda" else "cpu"
    precision = 64 if X.dtype == torch.float64 else 32

    def run(epochs, tol):
        params = {"accelerator": accelerator, "devices": 1, "max_epochs": epochs,
                  "precision": precision, "enable_progress_bar": False,
                  "enable_model_summary": False, "logger": False}
        model = TorchGMM(k, covariance_type="full", convergence_tolerance=tol,
                         covariance_regularization=REG_COVAR, trainer_params=params)
        return timed(lambda: model.fit(X), device)

    return measure_peer(run, device, lambda m: m.num_iter_, lambda m: -float(m.nll_))


def measure_pomegranate(X, k, device):
    import torch
    from pomegranate.distributions import Normal
    from pomegranate.gmm import GeneralMixtureModel

    def run(iterations, tol):
        model = GeneralMixtureModel([Normal(covariance_type="full") for _ in range(k)],
                                    max_iter=iterations, tol=tol, verbose=False)
        if device.type == "cuda":
            model = model.cuda()
        return timed(lambda: model.fit(X), device)

    def log_lik(model):
        with torch.no_grad():
            return float(model.log_probability(X).mean())

    return measure_peer(run, device, lambda m: None, log_lik)


def row(tee, workload, library, result):
    if result is None:
        tee(f"| {workload} | {library} | - | - | - | - | - |")
        return
    peak = "-" if result["peak_mib"] is None else f"{result['peak_mib']:.0f}"
    n_iter = "-" if result["n_iter"] is None else str(result["n_iter"])
    tee(f"| {workload} | {library} | {result['per_iter'] * 1e3:.2f} | {result['fit']:.2f} | "
        f"{n_iter} | {peak} | {result['log_lik']:.5f} |")


def attempt(tee, label, function):
    try:
        return function()
    except ImportError as exc:
        tee(f"  ({label}: not installed: {exc})")
    except Exception:  # a peer failing must not stop the run; its traceback is the record
        tee(f"  ({label} failed:)")
        for line in traceback.format_exc().splitlines()[-6:]:
            tee("    " + line)
    return None


def workloads(args):
    sys.path.insert(0, HERE)
    import workloads as pictures

    sizes = [int(float(r)) for r in args.rows.split(",")] if args.rows else (
        [10_000, 100_000] if args.quick else [10**5, 10**6, 10**7, 10**8])
    for n in sizes:
        yield f"{n:.0e} x 5-D, K={K_SYNTHETIC}", (lambda n=n: synthetic(n)), K_SYNTHETIC
    if not args.rows:
        k = 50 if args.quick else 500
        yield f"horse 2-D, K={k}", pictures.horse_dark_pixels, k
        size, k = (64, 100) if args.quick else (512, 1000)
        yield (f"astronaut {size}x{size} 5-D, K={k}",
               lambda: pictures.astronaut_pixels(size=size), k)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--rows", default=None, help="comma-separated synthetic sizes only")
    parser.add_argument("--no-peers", action="store_true", help="gaussmix only")
    parser.add_argument("--no-cpu", action="store_true", help="skip the numba CPU rows")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu.txt")
    args = parser.parse_args(argv)
    import torch

    warnings.simplefilter("ignore")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("No CUDA device: pass --device cpu for a smoke test on the CPU.")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    tee = Tee(os.path.join(args.out, "gpu.txt") if args.out else None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    import gaussmix

    tee(f"device: {name}; torch {torch.__version__}; gaussmix {gaussmix.__version__}; "
        f"CPU cores: {os.cpu_count()}; TF32 matmul: {torch.backends.cuda.matmul.allow_tf32}")
    tee()
    tee("| workload | library | ms/iter | whole fit s | iterations | peak device MiB | "
        "mean log-lik. |")
    tee("|---|---|---|---|---|---|---|")
    for label, load, k in workloads(args):
        X = load()
        start = start_for(X, k)
        for dtype in (torch.float32, torch.float64):
            tensor = torch.as_tensor(np.asarray(X), dtype=dtype).to(device)
            kind = str(dtype).replace("torch.", "")
            result = attempt(tee, f"gaussmix {kind}", lambda t=tensor: measure_gaussmix(
                t, k, start, device, backend="torch"))
            row(tee, label, f"gaussmix torch {kind}", result)
            if not args.no_peers:
                row(tee, label, f"TorchGMM {kind}", attempt(
                    tee, "TorchGMM", lambda t=tensor: measure_torchgmm(t, k, device)))
                row(tee, label, f"pomegranate {kind}", attempt(
                    tee, "pomegranate", lambda t=tensor: measure_pomegranate(t, k, device)))
            del tensor
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if not args.no_cpu and len(X) <= 10**7:
            cpu = attempt(tee, "gaussmix numba", lambda: measure_gaussmix(
                np.asarray(X, dtype=np.float32), k, start, torch.device("cpu")))
            row(tee, label, f"gaussmix numba float32, {os.cpu_count()} CPU cores", cpu)


if __name__ == "__main__":
    main()
