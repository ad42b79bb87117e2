"""Our torch implementations of the contract's roles.

Modules are imported on demand (``implementations.torch.discretize``, ``...convolution``, ...), so
importing this package does not import torch. The LTI roles compute in float64 on the CPU and
return NumPy arrays, as the contract's "NumPy arrays in, array-likes out" allows.
"""
