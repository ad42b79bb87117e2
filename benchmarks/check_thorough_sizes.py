"""The ``thorough`` profile's largest long inputs, judged: each bundled torch kernel of a sequence
role through the suite's own ``matches_oracle`` and ``vjp_matches_oracle`` (the property
functions themselves, float32) on one case whose largest tensors hold 2^20 elements (l = 2^17;
attention: 2^14 keys of width 64). Prints the length judged, the largest error/tolerance, the
time and the peak memory: what one long draw of ``--hypothesis-profile thorough`` costs.

    OMP_NUM_THREADS=1 python benchmarks/check_thorough_sizes.py [ROLE ...]
"""
from __future__ import annotations

import importlib
import resource
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssm_conformance.properties import harness  # noqa: E402
from ssm_conformance.properties.options import RUN  # noqa: E402
from ssm_conformance.properties.report import RECORDER  # noqa: E402
from ssm_conformance.properties.roles import ROLES  # noqa: E402
from ssm_conformance.properties.strategies.attention import make_case  # noqa: E402
from ssm_conformance.properties.strategies.conv1d import conv1d_case_from_seed  # noqa: E402
from ssm_conformance.properties.strategies.scans import scan_case_from_seed  # noqa: E402
from ssm_conformance.properties.strategies.selective import selective_case_from_seed  # noqa: E402
from ssm_conformance.properties.strategies.ssd import ssd_case_from_seed  # noqa: E402
from ssm_conformance.properties.subjects import Subject  # noqa: E402

L = 1 << 17
# role -> (bundled kernel, property module, property function prefix, case: 2^20-element tensors)
JOBS = {
    "ssd": ("implementations.torch.ssd:ssd", "test_ssd", "test_ssd", lambda: ssd_case_from_seed(
        7, b=1, l=L, h=2, p=4, g=1, n=8, chunk_size=256, softplus=True, D=True, z=True,
        dt_bias=True, initial_states=True, final_states=True)),
    "selective_scan": ("implementations.torch.mamba:selective_scan", "test_selective_scan",
                       "test_selective_scan", lambda: selective_case_from_seed(
                           7, b=1, d=8, l=L, n=8, D=True, z=True, delta_bias=True,
                           last_state=True)),
    "causal_conv1d": ("implementations.torch.mamba:causal_conv1d", "test_causal_conv1d",
                      "test_causal_conv1d", lambda: conv1d_case_from_seed(
                          7, b=1, d=8, l=L, w=4, bias=True, activation="silu")),
    "linear_scan": ("implementations.torch.scan:linear_scan", "test_scan", "test_linear_scan",
                    lambda: scan_case_from_seed(7, (8, L))),
    "attention": ("implementations.torch.attention:attention", "test_attention", "test_attention",
                  lambda: make_case((1, 1, 8, 1 << 14, 64), True, None, "typical", 7)),
}


def main(roles):
    warnings.simplefilter("ignore")   # Hypothesis: assume() outside a test (the generators)
    RUN.grad = True
    for role in roles:
        target, module_name, prefix, make = JOBS[role]
        module = importlib.import_module(f"ssm_conformance.properties.{module_name}")
        kernel_module, _, fn = target.partition(":")
        kernel = getattr(importlib.import_module(f"ssm_conformance.{kernel_module}"), fn)
        sut = harness.SubjectUnderTest(Subject(role, target, kernel, bundled=True), ROLES[role],
                                       "float32")
        case = make()
        for prop in ("matches_oracle", "vjp_matches_oracle"):
            harness.CURRENT_PROPERTY["name"] = prop
            start = time.perf_counter()
            getattr(module, f"{prefix}_{prop}").hypothesis.inner_test(sut=sut, case=case)
            entry = RECORDER.entry(sut, prop)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(f"{role:15s} {prop:19s} length {entry.longest_length:7d}  "
                  f"err/tol {entry.max_ratio:.3g}  {time.perf_counter() - start:5.1f} s  "
                  f"peak {peak:.1f} GiB", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(JOBS))
