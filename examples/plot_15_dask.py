"""
A fit on a Dask cluster
=======================

A Dask array is fitted where its blocks live: each E-step runs per block on the workers and
only the statistics (a few numbers per component) travel. Here a local cluster of two
workers; any ``distributed`` cluster works the same way.
"""

import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
from dask.distributed import Client, LocalCluster

from gaussmix import GaussianMixture

with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                  dashboard_address=None) as cluster, Client(cluster):
    X = da.random.RandomState(0).standard_t(4, size=(400_000, 2), chunks=(50_000, 2))
    X = X + da.where(da.random.RandomState(1).random((400_000, 1), chunks=(50_000, 1)) < 0.5,
                     6.0, 0.0)
    gm = GaussianMixture(4, random_state=0).fit(X)
    labels = gm.predict(X[:5000]).compute()  # lazy: a dask array until computed
    sample = X[:5000].compute()

print("means:\n", np.round(gm.means_, 2))
fig, ax = plt.subplots(figsize=(5, 4))
ax.scatter(*sample.T, s=2, c=labels, cmap="viridis")
ax.set_title("5,000 of 400,000 rows, labelled by the mixture")
fig.tight_layout()
