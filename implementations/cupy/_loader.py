"""Compile the ``.cu`` files beside this module with NVRTC and load them as ``cupy.RawModule``.

Why not ``cupy.RawModule(code=...)`` directly: CuPy appends ``-ftz=true`` to every NVRTC
compilation it runs itself (``cupy/cuda/compiler.py``), and NVRTC lets the last occurrence of an
option win, so denormals would be flushed to zero -- a kernel fed a subnormal input (Hypothesis draws
them) would then differ from the oracle by 100 %.  We therefore call NVRTC ourselves with one fixed
set of options (:data:`NVRTC_OPTIONS`: IEEE division and square root, denormals kept, FMA
contraction allowed as in every CUDA build of PyTorch), write the cubin (or PTX) to a cache
directory and load it with ``cupy.RawModule(path=...)``.

The kernels include no CUDA header (see ``ssm_common.cuh``), so no CUDA include path is needed:
only ``libnvrtc`` (``pip install nvidia-cuda-nvrtc`` or a CUDA toolkit) and a driver.

Nothing here imports CuPy at module import time.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent
COMMON_HEADER = "ssm_common.cuh"

# Options given to NVRTC (and, spelled the same way, to nvcc by tests/test_cupy_compile.py).
NVRTC_OPTIONS = (
    "-std=c++17",
    "-ftz=false",        # keep subnormals (CuPy's own RawModule path forces -ftz=true)
    "-prec-div=true",    # IEEE round-to-nearest division
    "-prec-sqrt=true",   # IEEE round-to-nearest square root
    "-fmad=true",        # allow a*b+c -> fma, as nvcc's default and PyTorch's CUDA kernels
)

_DEFAULT_SMEM = 48 * 1024  # dynamic shared memory usable without opting in


def cu_files() -> list[str]:
    """Every kernel source of this package (the compile test compiles each of them)."""
    return sorted(p.name for p in KERNEL_DIR.glob("*.cu"))


def read_source(name: str) -> str:
    return (KERNEL_DIR / name).read_text()


def compile_source(name: str, arch: int, *, ptx: bool = False) -> tuple[bytes, str]:
    """Compile ``name`` (a .cu file of this package) with NVRTC for ``sm_<arch>``.

    Returns ``(binary, log)``: a cubin, or PTX text for ``compute_<arch>`` when ``ptx`` is true, and
    NVRTC's log (empty when there was no warning).  Needs only libnvrtc, no GPU.
    """
    from cupy_backends.cuda.libs import nvrtc

    source = read_source(name)
    header = read_source(COMMON_HEADER)
    prog = nvrtc.createProgram(source, name, (header.encode(),), (COMMON_HEADER.encode(),))
    options = list(NVRTC_OPTIONS) + [f"-arch={'compute' if ptx else 'sm'}_{arch}"]
    try:
        try:
            nvrtc.compileProgram(prog, options)
        except nvrtc.NVRTCError as exc:
            raise RuntimeError(f"NVRTC could not compile {name}:\n{nvrtc.getProgramLog(prog)}") from exc
        log = nvrtc.getProgramLog(prog)
        binary = nvrtc.getPTX(prog) if ptx else nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return binary, log


def _target_arch(device_id: int) -> tuple[int, bool]:
    """(arch, ptx): a cubin for the device's own architecture when NVRTC knows it, else PTX for the
    newest architecture NVRTC knows that the device can run (the driver JIT-compiles it)."""
    import cupy
    from cupy_backends.cuda.libs import nvrtc

    cc = int(cupy.cuda.Device(device_id).compute_capability)
    archs = tuple(int(a) for a in nvrtc.getSupportedArchs())
    if cc in archs:
        return cc, False
    older = [a for a in archs if a <= cc]
    if not older:
        raise RuntimeError(f"NVRTC supports none of the architectures <= sm_{cc} (it knows {archs})")
    return max(older), True


def _cache_dir() -> Path:
    root = os.environ.get("SSM_CUPY_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ssm_conformance_cupy"


@functools.lru_cache(maxsize=None)
def module(name: str, device_id: int):
    """The ``cupy.RawModule`` of kernel file ``name`` on device ``device_id`` (compiled once per
    process and cached on disk, keyed by the source text, options, architecture and NVRTC)."""
    import cupy
    from cupy_backends.cuda.libs import nvrtc

    arch, ptx = _target_arch(device_id)
    key = "\0".join([read_source(name), read_source(COMMON_HEADER), *NVRTC_OPTIONS, str(arch),
                     str(ptx), repr(nvrtc.getVersion())])
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    path = _cache_dir() / f"{Path(name).stem}-sm{arch}-{digest}.{'ptx' if ptx else 'cubin'}"
    if not path.exists():
        binary, _log = compile_source(name, arch, ptx=ptx)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(binary)
        os.replace(tmp, path)  # atomic: concurrent processes never load a half-written file
    with cupy.cuda.Device(device_id):
        return cupy.RawModule(path=str(path))


@functools.lru_cache(maxsize=None)
def function(name: str, entry: str, device_id: int):
    import cupy

    with cupy.cuda.Device(device_id):
        return module(name, device_id).get_function(entry)


def launch(name: str, entry: str, grid: int, block: int, args: tuple, shared_mem: int = 0) -> None:
    """Launch ``entry`` of ``name`` on the current device and current CuPy stream (1-D grid)."""
    import cupy

    if grid <= 0:
        return
    if grid > 2**31 - 1:
        raise ValueError(f"{entry}: problem too large for one launch ({grid} blocks > 2^31 - 1)")
    device_id = cupy.cuda.Device().id
    kernel = function(name, entry, device_id)
    if shared_mem > _DEFAULT_SMEM:
        limit = cupy.cuda.Device(device_id).attributes["MaxSharedMemoryPerBlockOptin"]
        if shared_mem > limit:
            raise ValueError(f"{entry}: needs {shared_mem} bytes of shared memory, the device "
                             f"allows {limit} per block")
        if kernel.max_dynamic_shared_size_bytes < shared_mem:
            kernel.max_dynamic_shared_size_bytes = shared_mem
    kernel((int(grid),), (int(block),), args, shared_mem=int(shared_mem))
