"""A Dask fit of data larger than the workers' memory, generated lazily.

10^8 rows x 5 features (4 GB as float64) are generated block by block from a fixed seed,
never stored: each EM pass regenerates them on the workers, whose memory is limited to
1 GiB each. Prints the time of every pass and rows per second per worker.

Usage::

    python benchmarks/dask_large.py                  # 10^8 rows, 2 workers
    python benchmarks/dask_large.py --rows 2e7       # smaller
    python benchmarks/dask_large.py --scheduler tcp://host:8786   # an existing cluster
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

CENTRES = np.array([[0, 0, 0, 0, 0], [5, 0, 0, 2, 0], [0, 5, 0, 0, 2], [5, 5, 3, 0, 0],
                    [0, 0, 5, 5, 5], [-4, 2, 0, 3, -3], [2, -4, 4, -2, 0], [-3, -3, -3, 0, 4]],
                   dtype=float)


def block(seed, n_rows):
    """One block of mixture data: the same rows whenever it is recomputed."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, len(CENTRES), n_rows)
    return CENTRES[labels] + rng.standard_normal((n_rows, 5)) * (0.5 + 0.1 * labels[:, None])


def lazy_data(n_rows, block_rows):
    import dask
    import dask.array as da

    sizes = [block_rows] * (n_rows // block_rows) + ([n_rows % block_rows] if n_rows % block_rows
                                                     else [])
    parts = [da.from_delayed(dask.delayed(block)(i, n), shape=(n, 5), dtype=np.float64)
             for i, n in enumerate(sizes)]
    return da.concatenate(parts)


def main(argv=None):
    from distributed import Client, LocalCluster

    from gaussmix import GaussianMixture

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=1e8)
    parser.add_argument("--block-rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1GiB")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--scheduler", default=None, help="address of an existing cluster")
    args = parser.parse_args(argv)
    n_rows = int(args.rows)
    warnings.simplefilter("ignore")
    cluster = None
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                               memory_limit=args.memory_limit, dashboard_address=None)
        client = Client(cluster)
    workers = len(client.scheduler_info()["workers"])
    X = lazy_data(n_rows, args.block_rows)
    print(f"{n_rows:,} rows x 5 features = {X.nbytes / 2**30:.1f} GiB generated lazily; "
          f"{workers} workers with {args.memory_limit} each", flush=True)
    passes = []
    last = [time.perf_counter()]

    def tick(progress):
        now = time.perf_counter()
        passes.append(now - last[0])
        last[0] = now
        print(f"  EM pass {progress.iteration}: {passes[-1]:.1f} s, "
              f"{n_rows / passes[-1] / workers:,.0f} rows/s/worker, "
              f"log-likelihood {progress.lower_bound:.4f}", flush=True)

    start = time.perf_counter()
    gm = GaussianMixture(8, max_iter=args.iterations, tol=0, random_state=0, callback=tick)
    last[0] = time.perf_counter()
    gm.fit(X)
    total = time.perf_counter() - start
    per_pass = np.median(passes)
    print(f"fit done in {total:.0f} s ({args.iterations} EM passes, plus measuring and "
          f"initialisation); median pass {per_pass:.1f} s = {n_rows / per_pass / workers:,.0f} "
          "rows/s/worker")
    client.close()
    if cluster is not None:
        cluster.close()


if __name__ == "__main__":
    main()
