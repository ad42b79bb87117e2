"""ssm_conformance.triton_cpu: each shim is still needed (the case fails without it, in the Triton
version it lists) and works (the same case runs with it), and one interpreted Triton kernel is
judged by the suite. Skipped where triton is not installed (it is not in the test extra)."""
from __future__ import annotations

import importlib
import importlib.util
import sys

import numpy as np
import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

from ssm_conformance import triton_cpu  # noqa: E402


@pytest.fixture
def interpreter(monkeypatch):
    """TRITON_INTERPRET=1 for kernels decorated in the test; every shim undone afterwards."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    triton_cpu.uninstall()
    yield
    triton_cpu.uninstall()


def _needs_checking(name):
    versions = triton_cpu.SHIMS[name].triton_versions
    if versions and triton.__version__ not in versions:
        pytest.skip(f"shim {name} is checked for triton {versions}, this is {triton.__version__}")


def _masked_by_scalar_comparison():
    @triton.jit
    def kernel(x_ptr, y_ptr, T, N: tl.constexpr):
        offs = tl.arange(0, N)
        mask = (offs < N) & (2 < T)          # a block mask and a scalar comparison
        tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=mask, other=0.0), mask=mask)
    x = torch.arange(8.0)
    y = torch.zeros(8)
    kernel[(1,)](x, y, 3, N=8)
    return x, y


def _loop_variable_cast():
    @triton.jit
    def kernel(x_ptr, y_ptr, N: tl.constexpr):
        offs = tl.arange(0, N)
        for i in range(3):
            row = i.to(tl.int64) * N            # an induction variable is a tensor when compiled
            tl.store(y_ptr + row + offs, tl.load(x_ptr + row + offs) * 2.0)
    x = torch.arange(24.0)
    y = torch.zeros(24)
    kernel[(1,)](x, y, N=8)
    return x, y


def test_bool_splat_is_needed_and_works(interpreter):
    _needs_checking("bool_splat")
    with pytest.raises(Exception, match="mask has unsupported dtype"):
        _masked_by_scalar_comparison()
    triton_cpu.install(["bool_splat"])
    x, y = _masked_by_scalar_comparison()
    assert torch.equal(x, y)


def test_tensor_range_is_needed_and_works(interpreter):
    _needs_checking("tensor_range")
    with pytest.raises(Exception, match="'int' object has no attribute 'to'"):
        _loop_variable_cast()
    triton_cpu.install(["tensor_range"])
    x, y = _loop_variable_cast()
    assert torch.equal(y, 2 * x)


def test_tensor_range_types_like_compiled_triton(interpreter):
    """int32 induction variables, int64 when a bound is int64; tl.range's keywords accepted."""
    from triton.runtime.interpreter import TensorHandle
    values = list(triton_cpu._tensor_range(1, 7, 2))
    assert [int(v.handle.data[0]) for v in values] == [1, 3, 5]
    assert all(v.dtype == tl.int32 for v in values)
    wide = tl.tensor(TensorHandle(np.array([3], dtype=np.int64), tl.int64), tl.int64)
    values = list(triton_cpu._tensor_range(wide, num_stages=2))
    assert [int(v.handle.data[0]) for v in values] == [0, 1, 2]
    assert all(v.dtype == tl.int64 for v in values)


def _to_bf16(x):
    @triton.jit
    def kernel(x_ptr, y_ptr, N: tl.constexpr):
        offs = tl.arange(0, N)
        tl.store(y_ptr + offs, tl.load(x_ptr + offs).to(tl.bfloat16))
    y = torch.empty(x.shape, dtype=torch.bfloat16)
    kernel[(1,)](x, y, N=x.numel())
    return y


def test_bf16_rtne_is_needed_and_rounds_to_nearest_even(interpreter):
    _needs_checking("bf16_rtne")
    x = torch.tensor([1 + 2**-8 + 2**-10, -(1 + 2**-8 + 2**-10), 1 + 2**-8, 1 + 3 * 2**-8,
                      0.127874311, 3e38, float("inf"), -1e-40], dtype=torch.float32)
    assert not torch.equal(_to_bf16(x), x.bfloat16())       # truncated without the shim
    triton_cpu.install(["bf16_rtne"])
    y = _to_bf16(x)
    assert torch.equal(y.view(torch.int16), x.bfloat16().view(torch.int16))   # ties to even too
    assert _to_bf16(torch.tensor([float("nan")] * 2)).isnan().all()


def _autotuned_copy():
    @triton.autotune(configs=[triton.Config({"BLOCK": 4}), triton.Config({"BLOCK": 8})],
                     key=["N"])
    @triton.jit
    def kernel(x_ptr, y_ptr, N, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < N), mask=offs < N)
    x = torch.arange(16.0)
    y = torch.zeros(16)
    kernel[lambda meta: (triton.cdiv(16, meta["BLOCK"]),)](x, y, 16)
    return kernel, x, y


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: nothing to shim")
def test_constant_autotune_is_needed_and_keeps_the_first_config(interpreter):
    with pytest.raises(RuntimeError, match="active drivers"):
        _autotuned_copy()
    triton_cpu.install(["constant_autotune"])
    kernel, x, y = _autotuned_copy()
    assert torch.equal(x, y)
    assert [c.kwargs for c in kernel.cache.values()] == [{"BLOCK": 4}]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: nothing to shim")
def test_cuda_device_is_needed_and_is_a_no_op(interpreter):
    with pytest.raises(TypeError):
        with torch.cuda.device(None):
            pass
    triton_cpu.install(["cuda_device"])
    with torch.cuda.device(None):
        pass
    triton_cpu.uninstall(["cuda_device"])
    with pytest.raises(TypeError):
        with torch.cuda.device(None):
            pass


def test_cuda_stubs_import_and_fail_loudly(interpreter):
    name = "selective_scan_cuda"
    if importlib.util.find_spec(name) is not None:
        pytest.skip(f"{name} is installed here")
    with pytest.raises(ImportError):
        importlib.import_module(name)
    triton_cpu.install(["cuda_stubs"])
    module = importlib.import_module(name)
    with pytest.raises(RuntimeError, match="is a stub"):
        module.fwd
    triton_cpu.uninstall(["cuda_stubs"])
    assert name not in sys.modules


def test_install_rejects_unknown_shims(interpreter):
    with pytest.raises(ValueError, match="unknown shim nope"):
        triton_cpu.install(["nope"])


# --- smoke test: one interpreted Triton kernel judged by the suite ----------------------------------

def test_an_interpreted_triton_kernel_is_judged(tmp_path):
    """tests/subjects/triton_scan.py (a Triton linear scan whose loop needs both interpreter
    shims) conforms, judged by the suite's command line in the budget profile, lengths <= 48."""
    from tests.cli import run_suite
    run = run_suite("--ssm-subject", "linear_scan=tests/subjects/triton_scan.py:linear_scan",
                    "--ssm-without", "complex", "--ssm-max-length", "48",
                    report_dir=tmp_path, profile="budget", timeout=300)
    assert run.status == 0, run.output[-3000:]
    assert run.verdict("triton_scan.py:linear_scan") == ("pass", None)
