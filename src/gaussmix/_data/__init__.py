"""Layer 4, data: the input adapters (arrays, memory maps, ``.npy`` paths, chunk functions,
Dask arrays, torch tensors, array-API arrays) and the sources a fit walks, missingness
patterns, and the choice of the E-step that runs on them. They know nothing of the loop."""
