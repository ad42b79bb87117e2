"""Our own SSM kernels, the suite's first subjects: NumPy, torch and CuPy (raw CUDA) backends."""
