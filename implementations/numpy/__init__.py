"""Our NumPy/SciPy implementations of the contract's roles (float64 in, float64 out).

Modules are imported on demand (``implementations.numpy.discretize``, ``...convolution``, ...);
nothing here imports torch.
"""
