"""Run Triton kernels written for a GPU on a CPU, under Triton's interpreter (TRITON_INTERPRET=1).

Triton's interpreter executes a ``@triton.jit`` kernel as NumPy code, one program instance at a
time, so a kernel can be judged by the suite on a machine without a GPU (slowly: ~10^3-10^4 times
slower than compiled). Kernels of mamba-ssm and fla-core do not run there as shipped, for six
reasons this module removes; nothing here changes what a kernel computes:

``cuda_stubs``
    mamba-ssm and causal-conv1d import their compiled CUDA extensions (``selective_scan_cuda``,
    ``causal_conv1d_cuda``) at import time, even for their Triton and reference paths. Where such a
    module cannot be imported, a stub module is put in ``sys.modules``; touching any attribute
    of it raises ``RuntimeError`` naming the extension (so a path that needs the CUDA code fails
    loudly, never silently). Any Triton version.
``cuda_device``
    Triton wrappers enter ``torch.cuda.device(x.device.index)``; for a CPU tensor the index is
    None and a CPU-only torch raises ``TypeError``. While no GPU is visible, ``torch.cuda.device``
    becomes a no-op context manager. Any Triton version.
``constant_autotune``
    ``triton.autotune`` times every config on the device. Under the interpreter timing is
    meaningless and costs one interpreted run per config; the benchmark returns a constant, so
    the autotuner keeps the first (pruned) config without running any. Triton 3.x
    (``Autotuner._bench``).
``bool_splat``
    Interpreter bug: a comparison's TensorHandle keeps its operands' dtype (int32 / int64) as
    its label while its data is bool, and ``create_splat`` makes the splatted block in the
    label's dtype. So ``mask & (i < T)`` with a scalar comparison is an int32/int64 block, and
    ``tl.load(..., mask=...)`` raises ``ValueError: mask has unsupported dtype``. Compiled
    Triton splats an i1. The shim splats in the result type's element dtype. Checked needed in
    Triton 3.9.0.
``tensor_range``
    Interpreter bug: in ``for i in range(...)`` (or ``tl.range``) the loop variable is a Python
    int, where compiled Triton gives an int32 tensor (int64 when a bound is int64), so
    ``i.to(tl.int64)`` raises ``AttributeError: 'int' object has no attribute 'to'``. The shim
    rewrites those loops (in the interpreter's AST pass) to iterate over scalar tensors of the
    compiled type. ``tl.static_range`` keeps Python ints (compiled Triton gives constexprs).
    Checked needed in Triton 3.9.0.
``bf16_rtne``
    Interpreter bug: ``x.to(tl.bfloat16)`` from float32 truncates (rounds toward zero) where
    compiled Triton rounds to nearest even (``1 + 2^-8 + 2^-10`` becomes 1.0, not 1.0078125), so
    every bf16 store of an interpreted kernel carries up to one bf16 ulp instead of half: a
    correct bf16 kernel fails the suite's bound (fla's fused_recurrent_hgrn: ratio 1.84). The
    shim rounds to nearest even, as torch's ``.bfloat16()``. Checked needed in Triton 3.9.0.

Usage, before the kernel's package is imported (``triton.jit`` decides at decoration time whether
a kernel is interpreted)::

    from ssm_conformance import triton_cpu
    triton_cpu.install()          # sets TRITON_INTERPRET=1 and applies every shim
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

``install(names)`` applies a subset; ``uninstall()`` undoes everything it applied (the tests use
it to show that each interpreter shim is still needed). A shim whose listed Triton versions do
not include the installed one is still applied, with a ``UserWarning`` saying it was not checked
there: run tests/test_triton_cpu.py to see whether the bug it works around is still present.
"""
from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
import sys
import types
import warnings
from dataclasses import dataclass
from typing import Callable

CUDA_EXTENSIONS = ("selective_scan_cuda", "causal_conv1d_cuda")


@dataclass(frozen=True)
class Shim:
    name: str
    triton_versions: tuple  # versions in which it was checked to be needed; () = any version
    apply: Callable[[], Callable[[], None]]  # applies the shim, returns its undo


_UNDO: dict[str, Callable[[], None]] = {}


# --- cuda_stubs ----------------------------------------------------------------------------------

class _StubExtension(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise RuntimeError(f"{self.__name__}.{attr}: the CUDA extension {self.__name__} is a stub "
                           f"(ssm_conformance.triton_cpu: no GPU build here); this path needs it")


def _cuda_stubs():
    added = []
    for name in CUDA_EXTENSIONS:
        if name in sys.modules:
            continue
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            sys.modules[name] = _StubExtension(name)
            added.append(name)

    def undo():
        for name in added:
            if isinstance(sys.modules.get(name), _StubExtension):
                del sys.modules[name]
    return undo


# --- cuda_device ---------------------------------------------------------------------------------

def _cuda_device():
    import torch
    if torch.cuda.is_available():
        return lambda: None
    original = torch.cuda.device

    def device(index=None):
        """No GPU visible: nothing to select (ssm_conformance.triton_cpu)."""
        return contextlib.nullcontext()

    torch.cuda.device = device

    def undo():
        torch.cuda.device = original
    return undo


# --- constant_autotune ---------------------------------------------------------------------------

def _constant_autotune():
    from triton.runtime.autotuner import Autotuner
    original = Autotuner.__dict__["_bench"]

    def _bench(self, *args, config, **meta):
        """A constant time for every config: min() then keeps the first (no kernel is run)."""
        return [0.0, 0.0, 0.0]

    Autotuner._bench = _bench

    def undo():
        Autotuner._bench = original
    return undo


# --- bool_splat ----------------------------------------------------------------------------------

def _bool_splat():
    import numpy as np
    from triton.runtime import interpreter
    builder = interpreter.InterpreterBuilder
    original = builder.__dict__["create_splat"]

    def create_splat(self, ret_ty, arg):
        # the block's element type is ret_ty's (int1 for a comparison), not arg's label
        value = arg.data[0] if isinstance(arg.dtype, interpreter.tl.block_type) else arg.data
        np_dtype = interpreter._get_np_dtype(ret_ty)
        return interpreter.TensorHandle(np.full(ret_ty.shape, value, dtype=np_dtype), ret_ty.scalar)

    builder.create_splat = create_splat
    _forget_rewritten()

    def undo():
        builder.create_splat = original
        _forget_rewritten()
    return undo


# --- bf16_rtne -----------------------------------------------------------------------------------

def _bf16_rtne():
    import numpy as np
    from triton.runtime import interpreter
    tl = interpreter.tl
    builder = interpreter.InterpreterBuilder
    original = builder.__dict__["cast_impl"]

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            # round to nearest, ties to even (LLVM's fptrunc, torch's .bfloat16()); NaN kept NaN
            bits = np.ascontiguousarray(src.data, dtype=np.float32).view(np.uint32)
            rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
                       >> np.uint32(16)).astype(np.uint16)
            nan = np.isnan(src.data)
            rounded[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
            return interpreter.TensorHandle(rounded, dst_type.scalar)
        return original(self, src, dst_type)

    builder.cast_impl = cast_impl

    def undo():
        builder.cast_impl = original
    return undo


# --- tensor_range --------------------------------------------------------------------------------

_RANGE_HELPER = "_ssm_triton_cpu_tensor_range"


def _tensor_range(*bounds, **kwargs):
    """Iterate like ``range`` (or ``tl.range``: extra keywords such as num_stages are hints
    with no meaning here), yielding scalar tensors typed as compiled Triton types an induction
    variable: int64 if a bound is an int64 tensor, else int32."""
    import numpy as np
    from triton.runtime import interpreter
    tl = interpreter.tl
    step = kwargs.get("step")
    if step is not None:
        bounds = bounds + (step,)
    wide = any(isinstance(b, tl.tensor) and b.dtype in (tl.int64, tl.uint64) for b in bounds)
    ty, np_dtype = (tl.int64, np.int64) if wide else (tl.int32, np.int32)
    plain = [int(b.handle.data.item()) if isinstance(b, tl.tensor)
             else int(b.value) if isinstance(b, tl.constexpr) else int(b) for b in bounds]
    for value in range(*plain):
        yield tl.tensor(interpreter.TensorHandle(np.array([value], dtype=np_dtype), ty), ty)


def _is_loop_range(func: ast.expr) -> bool:
    """``range(...)``, ``tl.range(...)``, ``triton.language.range(...)`` -- not static_range."""
    if isinstance(func, ast.Name):
        return func.id == "range"
    return isinstance(func, ast.Attribute) and func.attr == "range"


def _tensor_range_shim():
    from triton.runtime import interpreter
    base = interpreter.ASTTransformer

    class RangeTransformer(base):
        def visit_For(self, node):
            node = self.generic_visit(node)
            if isinstance(node.iter, ast.Call) and _is_loop_range(node.iter.func):
                node.iter = ast.copy_location(
                    ast.Call(func=ast.Name(id=_RANGE_HELPER, ctx=ast.Load()),
                             args=node.iter.args, keywords=node.iter.keywords), node.iter)
            return node

    rewriter = interpreter.FunctionRewriter
    original = rewriter.__dict__["ast_transformer"]
    rewriter.ast_transformer = RangeTransformer()
    # the rewriter copies the interpreter module's globals into each kernel's globals
    interpreter.__dict__[_RANGE_HELPER] = _tensor_range
    _forget_rewritten()

    def undo():
        rewriter.ast_transformer = original
        _forget_rewritten()
    return undo


def _forget_rewritten():
    """Kernels already rewritten by the interpreter are rewritten again on their next call."""
    from triton.runtime import interpreter
    interpreter.InterpretedFunction.rewritten_fn.clear()


SHIMS = {s.name: s for s in (
    Shim("cuda_stubs", (), _cuda_stubs),
    Shim("cuda_device", (), _cuda_device),
    Shim("constant_autotune", (), _constant_autotune),
    Shim("bool_splat", ("3.9.0",), _bool_splat),
    Shim("tensor_range", ("3.9.0",), _tensor_range_shim),
    Shim("bf16_rtne", ("3.9.0",), _bf16_rtne),
)}


def install(names=None) -> tuple[str, ...]:
    """Set TRITON_INTERPRET=1 and apply the named shims (default: all); returns the names
    applied now (already applied ones are skipped). Unknown names raise ValueError; a missing
    triton raises ImportError for the shims that need it."""
    names = tuple(SHIMS) if names is None else tuple(names)
    unknown = [n for n in names if n not in SHIMS]
    if unknown:
        raise ValueError(f"unknown shim {', '.join(unknown)}; shims: {', '.join(SHIMS)}")
    os.environ["TRITON_INTERPRET"] = "1"
    applied = []
    for name in names:
        if name in _UNDO:
            continue
        shim = SHIMS[name]
        if shim.triton_versions:
            import triton
            if triton.__version__ not in shim.triton_versions:
                warnings.warn(f"ssm_conformance.triton_cpu: shim {name} was checked for triton "
                              f"{', '.join(shim.triton_versions)}, not {triton.__version__}; "
                              f"run tests/test_triton_cpu.py to see whether it is still needed",
                              UserWarning, stacklevel=2)
        _UNDO[name] = shim.apply()
        applied.append(name)
    return tuple(applied)


def uninstall(names=None) -> None:
    """Undo the named applied shims (default: all). TRITON_INTERPRET is left as it is."""
    for name in list(_UNDO) if names is None else list(names):
        undo = _UNDO.pop(name, None)
        if undo is not None:
            undo()


def installed() -> tuple[str, ...]:
    return tuple(_UNDO)
