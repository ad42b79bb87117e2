"""Every CUDA source of implementations/cupy compiles for sm_90 without a single diagnostic, and
every entry point its Python wrapper launches exists in the generated PTX.

No GPU is needed: nvcc compiles each .cu to a cubin (front end, cicc and ptxas all run, so register
spills are reported too: ``-Xptxas -warn-spills``) with the options the run-time loader gives NVRTC
(``_loader.NVRTC_OPTIONS``), keeping the intermediate PTX to read the entry points from.  nvcc exits
0 on warnings, so any output on stderr fails the test as well.  Where libnvrtc is present (GPU
machines) the exact run-time path, ``_loader.compile_source``, is checked the same way.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import ssm_conformance.implementations.cupy as icu
from ssm_conformance.implementations.cupy import _loader

NVCC = shutil.which("nvcc")
ARCH = 90
FILES = _loader.cu_files()
ENTRY = icu.entry_points()

_ENTRY_RE = re.compile(r"^\s*\.visible\s+\.entry\s+(\w+)\s*\(", re.M)
# Arithmetic that flushes subnormals (what -ftz=true / fast math emit).  The math library's own
# ex2.approx.ftz / rcp.approx.ftz inside expf & co. are range-reduced and excluded by this pattern.
_FTZ_RE = re.compile(r"\b(?:add|sub|mul|fma|div|sqrt|min|max|setp|cvt|neg|abs)(?:\.\w+)*\.ftz\b")


def _nvcc(name: str, work: Path):
    """Compile one file; return (returncode, stderr, ptx text)."""
    keep = work / Path(name).stem
    keep.mkdir()
    cmd = [NVCC, "-cubin", f"-arch=sm_{ARCH}", *_loader.NVRTC_OPTIONS,
           "-Werror", "all-warnings", "-Xptxas", "-warn-spills",
           "--keep", "--keep-dir", str(keep), "-o", str(keep / "out.cubin"),
           str(_loader.KERNEL_DIR / name)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    ptx_files = list(keep.glob("*.ptx"))
    ptx = ptx_files[0].read_text() if ptx_files else ""
    return proc.returncode, (proc.stdout + proc.stderr).strip(), ptx


@pytest.fixture(scope="module")
def nvcc_results(tmp_path_factory):
    if NVCC is None:
        pytest.skip("nvcc not on PATH: CUDA sources cannot be compiled here")
    work = tmp_path_factory.mktemp("nvcc")
    with ThreadPoolExecutor(max_workers=2) as pool:  # the machine is shared: 2 compilations at once
        futures = {name: pool.submit(_nvcc, name, work) for name in FILES}
        return {name: f.result() for name, f in futures.items()}


def test_every_source_has_a_wrapper():
    # every .cu is launched by a wrapper module, and every wrapper names an existing .cu
    assert sorted(ENTRY) == FILES


@pytest.mark.parametrize("name", FILES)
def test_nvcc_compiles_cleanly(nvcc_results, name):
    rc, output, ptx = nvcc_results[name]
    assert rc == 0, f"nvcc failed on {name}:\n{output}"
    assert output == "", f"nvcc printed diagnostics for {name}:\n{output}"
    found = set(_ENTRY_RE.findall(ptx))
    expected = set(ENTRY[name])
    assert expected <= found, f"{name}: entry points missing from the PTX: {sorted(expected - found)}"
    assert found <= expected, f"{name}: entry points no wrapper launches: {sorted(found - expected)}"
    flushing = sorted(set(_FTZ_RE.findall(ptx)))
    assert not flushing, f"{name}: arithmetic flushes subnormals to zero: {flushing[:5]}"


def _nvrtc_version():
    try:
        from cupy_backends.cuda.libs import nvrtc

        return nvrtc.getVersion()
    except Exception:
        return None


@pytest.mark.skipif(_nvrtc_version() is None, reason="libnvrtc not loadable (CuPy's run-time compiler)")
@pytest.mark.parametrize("name", FILES)
def test_nvrtc_compiles_cleanly(name):
    ptx, log = _loader.compile_source(name, ARCH, ptx=True)
    assert log.strip() == "", f"NVRTC diagnostics for {name}:\n{log}"
    found = set(_ENTRY_RE.findall(ptx.decode()))
    assert set(ENTRY[name]) <= found, f"{name}: missing {sorted(set(ENTRY[name]) - found)}"
    assert not _FTZ_RE.search(ptx.decode()), f"{name}: NVRTC output flushes subnormals"
