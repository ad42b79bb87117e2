"""A stand-in for mamba-ssm's ``selective_scan_ref`` where its sources are not installed (they are
not on this machine): the same behaviour on strided inputs, for the opt-out meta-test of the
feature ``non_contiguous`` (issue 13, item 2).

How upstream behaves (read in state-spaces/mamba, mamba_ssm/ops/selective_scan_interface.py, not
copied): for complex A, a variable B (b, n, 2l) or (b, g, n, 2l) holds (Re, Im) interleaved along
the last axis, and the reference views it as complex with

    torch.view_as_complex(rearrange(B.float(), "... (L two) -> ... L two", two=2))

(C alike). ``rearrange`` splits the last axis by a *view* (strides (2s, s) for a last stride s),
``.float()`` keeps a dense layout's strides, and ``view_as_complex`` requires the new last axis
to have stride 1: "Tensor must have a last dimension with stride 1". So any B or C whose last
(time) axis is not the fastest -- the suite's "reversed" and "time_outermost" layouts -- raises
RuntimeError; contiguous inputs and real A never reach that line.

``selective_scan_view_as_complex`` takes that same step on B and C (torch's own
``view_as_complex`` of the same view, so it raises exactly where upstream does), then computes
the scan as selective_correct.selective_scan_loop does. It conforms with
``--ssm-without non_contiguous`` and fails (``raised``) without it.
"""
from __future__ import annotations

import torch

from tests.subjects import selective_correct


def selective_scan_view_as_complex(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                                   delta_softplus=False, return_last_state=False):
    if A.is_complex():
        for X in (B, C):
            if X.dim() >= 3:  # variable or grouped: interleaved (Re, Im), viewed as complex
                torch.view_as_complex(X.float().unflatten(-1, (-1, 2)))
    return selective_correct.selective_scan_loop(u, delta, A, B, C, D, z, delta_bias,
                                                 delta_softplus, return_last_state)
