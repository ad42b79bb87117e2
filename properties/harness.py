"""The subject under test: one subject of one role, in one dtype on one device.

A property test draws a case, calls ``sut.call(case)`` (the checked call of subjects.py), turns
the raw output into arrays with ``sut.outputs`` (structure, shape, dtype and finiteness checks) and
hands them with the oracle's references to ``sut.judge``, which applies the tolerance model,
records the error/tolerance ratio for the report, and fails with a minimal reproduction.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from properties.options import RUN
from properties.report import RECORDER
from properties.roles import Role
from properties.subjects import Subject, SubjectFailure
from properties.tolerance import tolerance

# The property being run, set by the plugin around each test call (tests run one at a time).
CURRENT_PROPERTY = {"name": None}


def format_value(value) -> str:
    """An input as Python source that reproduces it exactly (shortest round-trip digits)."""
    if hasattr(value, "detach"):  # torch tensor
        arr = value.detach().cpu().double().numpy() if value.dtype.is_floating_point else \
            value.detach().cpu().numpy()
        return f"torch.tensor({format_value(arr)}, dtype=torch.{str(value.dtype).split('.')[-1]})"
    if isinstance(value, np.ndarray):
        body = np.array2string(value, separator=", ", floatmode="unique",
                               threshold=sys.maxsize, max_line_width=100)
        return f"np.array({body}, dtype=np.{value.dtype})"
    return repr(value)


@dataclass(frozen=True)
class Output:
    """What the role promises for one returned array."""

    name: str
    shape: tuple
    kind: str = "real"  # "real" or "complex"


@dataclass
class SubjectUnderTest:
    subject: Subject
    role: Role
    dtype: str
    device: str = "cpu"

    def __str__(self):
        return f"{self.subject.name} [{self.dtype}]"

    # -- calling ---------------------------------------------------------------------------------
    def describe(self, case) -> str:
        args = case.args()
        lines = ["import numpy as np"] + (["import torch"] if self.role.backend == "torch" else [])
        lines += [f"{name} = {format_value(value)}" for name, value in args.items()]
        fn = self.subject.target.rpartition(":")[2]
        lines.append(f"out = {fn}({', '.join(args)})   # {fn} = {self.subject.target}")
        return "\n".join(lines)

    def call(self, case):
        """The checked call; failures carry the reproduction of ``case``."""
        self._case = case
        try:
            out, _ = self.subject.call(case.args(), describe=lambda: self.describe(case),
                                       timeout=RUN.call_timeout_s, mutates=self.role.mutates)
            return out
        except SubjectFailure as failure:
            caught = failure
        self._fail(caught)

    def _fail(self, failure: SubjectFailure):
        """Record and re-raise ``failure`` with the reproduction, from this one line and with no
        exception context, so Hypothesis sees one origin for every failure of a kind (a replay
        that fails the same way is not taken for a flaky test)."""
        RECORDER.observe(self, CURRENT_PROPERTY["name"], self._case, ratio=np.inf,
                         abs_err=np.inf, rel_err=np.inf, describe=self.describe)
        raise SubjectFailure(failure.kind, f"{failure.message}\n{self._repro(self._case)}")

    # -- output checks ---------------------------------------------------------------------------
    def outputs(self, raw, spec: list[Output]) -> list[np.ndarray]:
        """Check the returned structure, shapes and dtypes; return float64/complex128 arrays."""
        try:
            return self._outputs(raw, spec)
        except SubjectFailure as failure:
            caught = failure
        self._fail(caught)

    def _outputs(self, raw, spec: list[Output]) -> list[np.ndarray]:
        if len(spec) > 1:
            if not isinstance(raw, (tuple, list)) or len(raw) != len(spec):
                raise SubjectFailure(
                    "wrong_structure",
                    f"returned {type(raw).__name__}"
                    f"{'' if not isinstance(raw, (tuple, list)) else f' of length {len(raw)}'}"
                    f", expected a tuple ({', '.join(o.name for o in spec)})")
            items = list(raw)
        else:
            items = [raw]
        arrays = []
        for item, want in zip(items, spec):
            arr = self._to_numpy(item, want)
            if arr.shape != tuple(want.shape):
                raise SubjectFailure("wrong_shape", f"returned {want.name} of shape "
                                     f"{arr.shape}, expected {tuple(want.shape)}")
            arrays.append(arr.astype(np.complex128 if want.kind == "complex" else np.float64))
        return arrays

    def _to_numpy(self, item, want: Output) -> np.ndarray:
        if self.role.backend == "torch":
            import torch
            if not isinstance(item, torch.Tensor):
                raise SubjectFailure("wrong_type", f"returned {want.name} as "
                                     f"{type(item).__name__}, expected a torch.Tensor")
            expected = getattr(torch, self.dtype)
            if want.kind == "complex":
                expected = {torch.float32: torch.complex64,
                            torch.float64: torch.complex128}.get(expected, expected)
            if item.dtype != expected:
                raise SubjectFailure("wrong_dtype", f"returned {want.name} of dtype "
                                     f"{item.dtype}, expected {expected}")
            if item.device.type != self.device:
                raise SubjectFailure("wrong_device", f"returned {want.name} on "
                                     f"{item.device}, expected {self.device}")
            item = item.detach().cpu()
            item = item.to(torch.complex128 if item.is_complex() else torch.float64)
            return item.numpy()
        try:
            arr = np.asarray(item)
        except Exception as exc:  # noqa: BLE001
            raise SubjectFailure("wrong_type", f"returned {want.name} that is not array-like: "
                                 f"{type(exc).__name__}: {exc}") from None
        expected = np.complex128 if want.kind == "complex" else np.float64
        if arr.dtype != expected:
            raise SubjectFailure("wrong_dtype", f"returned {want.name} of dtype {arr.dtype}, "
                                 f"expected {np.dtype(expected)} (NumPy roles are tested in "
                                 f"float64)")
        return arr

    # -- the verdict -----------------------------------------------------------------------------
    def judge(self, case, checks):
        """checks: list of (name, output array, Reference, terms). Fails on the first output whose
        largest error/tolerance ratio exceeds 1, after recording every output's figures."""
        worst = None
        for name, out, ref, terms in checks:
            expected = ref.value
            finite_ref = np.isfinite(expected)
            bad = finite_ref & ~np.isfinite(out)
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                RECORDER.observe(self, CURRENT_PROPERTY["name"], case, ratio=np.inf,
                                 abs_err=np.inf, rel_err=np.inf, describe=self.describe)
                raise SubjectFailure(
                    "non_finite",
                    f"returned {out[index]} in {name}{list(index)} where the oracle is finite "
                    f"({expected[index]!r})\n{self._repro(case)}")
            tol = tolerance(ref, terms, self.dtype)
            err = np.abs(out - expected)
            err = np.where(finite_ref, err, np.where(out == expected, 0.0, np.inf))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(err == 0, 0.0, err / tol)
                rel = np.where(err == 0, 0.0, err / np.abs(expected))
            if ratio.size == 0:
                continue
            flat = int(np.argmax(ratio))
            index = np.unravel_index(flat, ratio.shape)
            entry = (float(ratio.max()), name, tuple(int(i) for i in index), out[index],
                     expected[index], tol[index], float(err.max()), float(np.max(rel)))
            if worst is None or entry[0] > worst[0]:
                worst = entry
        if worst is None:
            return
        ratio, name, index, got, want, tol_at, abs_err, rel_err = worst
        RECORDER.observe(self, CURRENT_PROPERTY["name"], case, ratio=ratio, abs_err=abs_err,
                         rel_err=rel_err, describe=self.describe)
        if not ratio <= 1.0:
            raise SubjectFailure(
                "inaccurate",
                f"error exceeds the tolerance: {name}{list(index)} = {got!r}, oracle {want!r}, "
                f"|error| = {abs(got - want):.3e} > tolerance {tol_at:.3e} "
                f"(error/tolerance = {ratio:.3g})\n{self._repro(case)}")

    def _repro(self, case) -> str:
        return (f"role {self.role.name}, subject {self.subject.name}, dtype {self.dtype}, "
                f"device {self.device}\nreproduction:\n{self.describe(case)}")


_ORACLE_CACHE: dict = {}
_ORACLE_CACHE_LIMIT = 4096


def _key(value):
    if isinstance(value, np.ndarray):
        return ("nd", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (tuple, list)):
        return tuple(_key(v) for v in value)
    return ("py", type(value).__name__, repr(value))


def oracle(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` memoized on the exact input bytes: a derandomized run draws the same
    inputs for every subject of a role, so the (slow) oracle runs once per input, not per subject."""
    key = (fn.__module__, fn.__qualname__, _key(args), _key(sorted(kwargs.items())))
    if key not in _ORACLE_CACHE:
        if len(_ORACLE_CACHE) >= _ORACLE_CACHE_LIMIT:
            _ORACLE_CACHE.pop(next(iter(_ORACLE_CACHE)))
        _ORACLE_CACHE[key] = fn(*args, **kwargs)
    return _ORACLE_CACHE[key]
