"""A Triton linear scan (role ``linear_scan``) for the interpreter smoke test
(tests/test_triton_cpu.py): one program per block of 4 rows, h_t = a_t h_{t-1} + b_t in fp32,
stored in b's dtype. Its loop uses both interpreter shims of ssm_conformance.triton_cpu (a
scalar comparison in a mask, ``t.to(tl.int64)``), so importing this module installs them."""
from __future__ import annotations

from ssm_conformance import triton_cpu

triton_cpu.install()

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def _scan_kernel(a_ptr, b_ptr, h_ptr, L, ROWS, BLOCK: tl.constexpr):
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = rows < ROWS
    h = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(L):
        at = tl.load(a_ptr + rows * L + t, mask=live & (t < L), other=0.0).to(tl.float32)
        bt = tl.load(b_ptr + rows * L + t, mask=live, other=0.0).to(tl.float32)
        h = at * h + bt
        tl.store(h_ptr + rows * L + t.to(tl.int64), h.to(h_ptr.dtype.element_ty), mask=live)


def linear_scan(a, b):
    if a.is_complex() or b.is_complex():
        raise TypeError("linear_scan: this Triton kernel is real-only (--ssm-without complex)")
    shape = a.shape
    a2 = a.reshape(-1, shape[-1]).contiguous()
    b2 = b.reshape(-1, shape[-1]).contiguous()
    h = torch.empty_like(b2)
    rows = a2.shape[0]
    _scan_kernel[(triton.cdiv(rows, 4),)](a2, b2, h, shape[-1], rows, BLOCK=4)
    return h.reshape(shape)
