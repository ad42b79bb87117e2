"""Arguments in, results out: CuPy arrays and torch CUDA tensors (zero-copy through DLPack) and,
for the linear time-invariant roles, NumPy arrays (copied to the device and back).

* A torch tensor is detached and exchanged with ``cupy.from_dlpack``: no copy.  bfloat16, which
  CuPy has no dtype for, travels as an int16 view of the same memory; we remember that it is
  bfloat16 and hand results back with ``torch.from_dlpack(...).view(torch.bfloat16)``.
* Kernels take contiguous row-major arrays.  A non-contiguous argument is copied once into a
  contiguous array (``cupy.ascontiguousarray``); an argument that the role updates in place (the
  decode state) is never copied -- its strides go to the kernel.
* Small "weight" arguments (A, D, biases, constant B/C, conv weights) are converted to the
  kernel's accumulation type (float32, or float64 for float64 inputs), which is a small copy.
* When any argument is a torch tensor, kernels run on torch's current stream of that device.
"""
from __future__ import annotations

import contextlib

STORAGE = ("float32", "float16", "bfloat16", "float64")  # activation dtypes of the kernels
SUFFIX = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64"}
_REAL_OF = {"complex64": "float32", "complex128": "float64"}
_COMPLEX_OF = {"float32": "complex64", "float64": "complex128"}
_KNOWN = STORAGE + tuple(_REAL_OF)


def acc_dtype(storage: str) -> str:
    """Accumulation dtype of a storage dtype: float64 for float64, float32 otherwise."""
    return "float64" if storage == "float64" else "float32"


def _is_torch(x) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch") and type(x).__name__ in ("Tensor", "Parameter")


class Arg:
    """One array argument on the device: ``data`` is a cupy.ndarray (int16 view for bfloat16),
    ``dtype`` the logical dtype name, ``kind`` 'torch', 'cupy' or 'numpy' (where it came from)."""

    __slots__ = ("name", "data", "dtype", "kind")

    def __init__(self, name, data, dtype, kind):
        self.name, self.data, self.dtype, self.kind = name, data, dtype, kind

    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def device(self):
        return self.data.device.id

    @property
    def is_complex(self):
        return self.dtype in _REAL_OF


def _cupy():
    try:
        import cupy
    except ImportError as exc:
        raise ImportError("ssm_conformance.implementations.cupy needs CuPy (e.g. pip install cupy-cuda13x "
                          "nvidia-cuda-nvrtc) and a CUDA GPU") from exc
    return cupy


def arg(x, name: str, *, host_ok: bool = False) -> Arg:
    """Wrap one array argument (see the module docstring).  Raises TypeError naming ``name``."""
    cupy = _cupy()

    if _is_torch(x):
        import torch

        if x.device.type != "cuda":
            raise TypeError(f"{name} must be a CUDA tensor or a CuPy array (got a torch tensor on "
                            f"device {x.device})")
        x = x.detach()
        if x.is_conj():
            x = x.resolve_conj()
        if x.is_neg():
            x = x.resolve_neg()
        dtype = str(x.dtype).replace("torch.", "")
        if dtype not in _KNOWN:
            raise TypeError(f"{name} has dtype {x.dtype}; expected one of {_KNOWN}")
        view = x.view(torch.int16) if dtype == "bfloat16" else x
        return Arg(name, cupy.from_dlpack(view), dtype, "torch")
    if isinstance(x, cupy.ndarray):
        dtype = str(x.dtype)
        if dtype not in _KNOWN:
            raise TypeError(f"{name} has dtype {x.dtype}; expected one of {_KNOWN}")
        return Arg(name, x, dtype, "cupy")
    if host_ok:
        import numpy as np

        a = np.asarray(x)
        if a.dtype.kind in "iub":
            a = a.astype(np.float64)
        dtype = str(a.dtype)
        if dtype not in _KNOWN:
            raise TypeError(f"{name} has dtype {a.dtype}; expected one of {_KNOWN}")
        return Arg(name, cupy.asarray(a), dtype, "numpy")
    raise TypeError(f"{name} must be a CuPy array or a torch CUDA tensor (got {type(x).__name__})")


def optional(x, name: str, **kw) -> Arg | None:
    return None if x is None else arg(x, name, **kw)


def same_device(*args: Arg | None) -> int:
    present = [a for a in args if a is not None]
    dev = present[0].device
    for a in present[1:]:
        if a.device != dev:
            raise ValueError(f"{a.name} is on CUDA device {a.device}, {present[0].name} on {dev}: "
                             "all arguments must be on one device")
    return dev


@contextlib.contextmanager
def on_device(*args: Arg | None):
    """Current device = the arguments' device; current stream = torch's current stream there when
    any argument is a torch tensor (so our kernels are ordered after the producers of the inputs)."""
    import cupy

    dev = same_device(*args)
    with cupy.cuda.Device(dev):
        if any(a is not None and a.kind == "torch" for a in args):
            import torch

            tstream = torch.cuda.current_stream(dev)
            if hasattr(cupy.cuda.Stream, "from_external") and hasattr(tstream, "__cuda_stream__"):
                stream = cupy.cuda.Stream.from_external(tstream)  # CuPy >= 14
            else:
                stream = cupy.cuda.ExternalStream(tstream.cuda_stream, dev)
            with stream:
                yield dev
        else:
            yield dev


def check_shape(a: Arg, expected: tuple, what: str) -> None:
    if a.shape != tuple(expected):
        raise ValueError(f"{a.name} must have shape {what} = {tuple(expected)} (got {a.shape})")


def check_storage(a: Arg, dtype: str | None = None) -> None:
    """``a`` must hold activations: a real float dtype, equal to ``dtype`` when given."""
    if a.dtype not in STORAGE:
        raise TypeError(f"{a.name} must be float32, float16, bfloat16 or float64 (got {a.dtype})")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{a.name} must have the dtype of the main input, {dtype} (got {a.dtype})")


def contiguous(a: Arg):
    """The cupy array of ``a``, copied to C order when it is not (documented copy)."""
    import cupy

    return a.data if a.data.flags.c_contiguous else cupy.ascontiguousarray(a.data)


def bf16_bits_to_float32(bits):
    import cupy

    return (bits.view(cupy.uint16).astype(cupy.uint32) << 16).view(cupy.float32)


def float32_to_bf16_bits(x):
    """Round float32 -> bfloat16 to nearest even (NaN stays NaN), as torch does; int16 result."""
    import cupy

    u = cupy.ascontiguousarray(x, dtype=cupy.float32).view(cupy.uint32)
    rounded = (u + (cupy.uint32(0x7FFF) + ((u >> 16) & cupy.uint32(1)))) >> 16
    nan = cupy.isnan(x)
    out = cupy.where(nan, cupy.uint32(0x7FC0), rounded).astype(cupy.uint16)
    return out.view(cupy.int16)


def compute(a: Arg, acc: str, *, complex_: bool = False):
    """A contiguous cupy copy (or view) of ``a`` in the accumulation dtype ``acc`` (float32 or
    float64), or its complex counterpart when ``complex_``; real input to a complex target gets a
    zero imaginary part.  Complex input to a real target is a TypeError."""
    data = a.data
    if a.dtype == "bfloat16":
        data = bf16_bits_to_float32(data)
    if a.is_complex and not complex_:
        raise TypeError(f"{a.name} must be real (got {a.dtype})")
    target = _COMPLEX_OF[acc] if complex_ else acc
    import cupy

    return cupy.ascontiguousarray(data.astype(target, copy=False))


def empty(shape, dtype: str):
    """A fresh cupy array for a kernel to fill; bfloat16 as int16 storage."""
    import cupy

    return cupy.empty(tuple(int(s) for s in shape), dtype=cupy.int16 if dtype == "bfloat16" else dtype)


def cast(data, from_dtype: str, to_dtype: str):
    """Convert a cupy array between logical dtypes (bfloat16 as int16 storage)."""
    if from_dtype == to_dtype:
        return data
    if from_dtype == "bfloat16":
        data = bf16_bits_to_float32(data)
    if to_dtype == "bfloat16":
        return float32_to_bf16_bits(data.real if data.dtype.kind == "c" else data)
    return data.astype(to_dtype)


def give(data, dtype: str, kind: str):
    """Hand a cupy result back in the caller's framework: torch (zero-copy), cupy, or NumPy."""
    if kind == "torch":
        import torch

        t = torch.from_dlpack(data)
        return t.view(torch.bfloat16) if dtype == "bfloat16" else t
    if kind == "numpy":
        import cupy

        return cupy.asnumpy(data)
    return data


def ptr_or_null(data):
    """Kernel argument for an optional array: the array, or a null pointer."""
    import numpy as np

    return np.uint64(0) if data is None else data


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()
