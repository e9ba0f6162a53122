"""Layer 3, kernels: the numba code (the fused, pruned E-step on tiles, rows with holes,
k-means) taking arrays and returning arrays or ``Stats``, numba's threading layer, and the
stamp that says the kernels are compiled. Never a data source, the fit or an estimator."""
