"""The subject under test: one subject of one role, in one dtype on one device.

A property test draws a case, calls ``sut.call(case)`` (the checked call of subjects.py), turns
the raw output into arrays with ``sut.outputs`` (structure, shape, dtype and finiteness checks) and
hands them with the oracle's references to ``sut.judge``, which applies the tolerance model,
records the error/tolerance ratio for the report, and fails with a minimal reproduction.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import numpy as np
from hypothesis import assume

from ssm_conformance.oracle.reference import Reference
from ssm_conformance.properties import diagnosis, precision
from ssm_conformance.properties.options import RUN, admits, enabled, forced
from ssm_conformance.properties.report import RECORDER
from ssm_conformance.properties.roles import Role
from ssm_conformance.properties.subjects import Subject, SubjectFailure
from ssm_conformance.properties.tolerance import tolerance

FINITE_MAX = {"float64": float(np.finfo(np.float64).max),
              "float32": float(np.finfo(np.float32).max),
              "bfloat16": 3.3895313892515355e38, "float16": 65504.0}

# The property being run, set by the plugin around each test call (tests run one at a time).
CURRENT_PROPERTY = {"name": None}


def format_value(value) -> str:
    """An input as Python source that reproduces it exactly (shortest round-trip digits)."""
    if hasattr(value, "detach"):  # torch tensor
        arr = value.detach().cpu().double().numpy() if value.dtype.is_floating_point else \
            value.detach().cpu().numpy()
        device = "" if value.device.type == "cpu" else f", device={str(value.device)!r}"
        return (f"torch.tensor({format_value(arr)}, "
                f"dtype=torch.{str(value.dtype).split('.')[-1]}{device})")
    if isinstance(value, np.ndarray):
        if value.size > 1024:  # array2string is superlinear; Python's float repr is exact too
            return f"np.array({value.tolist()!r}, dtype=np.{value.dtype})"
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
    dtype: str | None = None  # torch roles: None = the dtype under test; "float32" for fp32 outputs


@dataclass
class SubjectUnderTest:
    subject: Subject
    role: Role
    dtype: str
    device: str = "cpu"

    def __str__(self):
        return f"{self.subject.name} [{self.dtype}]"

    # -- inputs --------------------------------------------------------------------------------
    def round_case(self, case):
        """``case`` with its float arguments rounded to the dtype under test, for NumPy roles
        judged in float32 (--ssm-numpy-dtype): the oracle then reads exactly the binary numbers
        the subject receives (rounding the inputs is not the subject's error). Arrays stay
        float64/complex128 holding float32/complex64 values; sizes and flags are unchanged. An
        input that overflows float32 is no valid input of it (the example is discarded). Torch
        roles and float64 return ``case`` itself."""
        if self.role.backend != "numpy" or self.dtype == "float64":
            return case
        rounded = {}
        for name, value in case.args().items():
            if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
                single = np.complex64 if value.dtype.kind == "c" else np.float32
                with np.errstate(over="ignore"):
                    rounded[name] = value.astype(single).astype(value.dtype)
                assume(bool(np.all(np.isfinite(rounded[name]))))
            elif isinstance(value, float):
                with np.errstate(over="ignore"):
                    rounded[name] = float(np.float32(value))
                assume(np.isfinite(rounded[name]))
        return dataclasses.replace(case, **rounded) if rounded else case

    def relaid(self, case, layout: str, relayout):
        """A copy of ``case`` whose inputs are the same values as ``case``'s in another layout:
        ``relayout(tensor)`` for each argument (the non_contiguous properties). The inputs'
        memo is filled with them, so ``exact`` (hence the oracle's inputs) is unchanged."""
        other = case.replace()
        other.info["layout"] = layout
        other.features = case.features | {"non_contiguous"}
        other.__dict__["_prepared"] = {("_inputs", self.dtype, self.device):
                                       {k: relayout(v) for k, v in self.inputs(case).items()}}
        return other

    def inputs(self, case) -> dict:
        """The arguments as the subject receives them. NumPy roles: the case's float64 arrays
        (float32/complex64 arrays when judged in float32: call ``round_case`` first).
        Torch roles: tensors on the device, activations rounded to the dtype under test, the
        case's ``fp32`` arguments (mamba-ssm's fp32 weights) in float32; complex arrays become
        complex128 for float64 and complex64 otherwise (torch has no complex half types).
        Non-array arguments (sizes, flags, None) pass unchanged. Memoized on the case."""
        key = ("_inputs", self.dtype, self.device)
        cache = case.__dict__.setdefault("_prepared", {})
        if key not in cache:
            args = case.args()
            if self.role.backend == "numpy" and self.dtype == "float32":
                args = {name: (value.astype(np.complex64 if value.dtype.kind == "c"
                                            else np.float32)
                               if isinstance(value, np.ndarray) and value.dtype.kind in "fc"
                               else value)
                        for name, value in args.items()}
            if self.role.backend == "torch":
                args = {name: self._tensor(value, name in getattr(case, "fp32", ()))
                        for name, value in args.items()}
                # an input that overflows the dtype under test is not a valid input of it
                if not all(bool(v.isfinite().all()) for v in args.values()
                           if hasattr(v, "isfinite")):
                    assume(False)
            cache[key] = args
        return cache[key]

    def _tensor(self, value, fp32: bool):
        import torch
        if not isinstance(value, np.ndarray):
            return value
        if value.dtype == bool:   # a mask (rg_lru's reset) stays boolean
            return torch.from_numpy(np.ascontiguousarray(value)).to(device=self.device)
        if np.iscomplexobj(value):
            dtype = torch.complex128 if self.dtype == "float64" and not fp32 else torch.complex64
        else:
            dtype = torch.float32 if fp32 else getattr(torch, self.dtype)
        return torch.from_numpy(np.ascontiguousarray(value)).to(device=self.device, dtype=dtype)

    def exact(self, case) -> dict:
        """The inputs the subject receives, as float64/complex128 arrays: what the oracle must be
        evaluated on (rounding the inputs to the dtype under test is not the subject's error)."""
        return {name: _float64(value) if hasattr(value, "detach") else value
                for name, value in self.inputs(case).items()}

    def rounded(self, array: np.ndarray) -> np.ndarray:
        """``array`` rounded to the dtype under test (complex: complex64, complex128 in float64),
        as float64/complex128: e.g. a cotangent as the subject's backward receives it."""
        return _float64(self._tensor(np.asarray(array), fp32=False))

    # -- calling ---------------------------------------------------------------------------------
    def describe(self, case, vjp=None) -> str:
        """The reproduction of ``case``: its inputs as Python source and the call; ``vjp`` (or
        the vector-Jacobian product last made on ``case``): (wrt, cotangent), and the source
        also gives the cotangent and the backward call."""
        vjp = vjp if vjp is not None else self._vjp_of(case)
        args = self.inputs(case)
        fn = self.subject.target.rpartition(":")[2]
        rebuild = getattr(case, "rebuild", None)
        if rebuild:  # a long input: the generator call that rebuilds it, not a million numbers
            module, call = rebuild
            lines = ["from ssm_conformance.properties.harness import subject_inputs",
                     f"from {module} import {call.partition('(')[0]}",
                     f"case = {call}",
                     f"args = subject_inputs(case, {self.role.name!r}, {self.dtype!r}, "
                     f"{self.device!r})   # the tensors exactly as the subject received them",
                     f"{', '.join(args)} = args.values()"]
        else:
            lines = ["import numpy as np"] + (["import torch"] if self.role.backend == "torch"
                                              else [])
            lines += [f"{name} = {format_value(value)}" for name, value in args.items()]
        call = getattr(case, "call_lines", None)  # a case that is many calls (decode steps)
        if call is not None:
            lines += call(fn, self.dtype, self.device)
            lines[-1] += f"   # {fn} = {self.subject.target}"
        else:
            lines.append(f"out = {fn}({', '.join(args)})   # {fn} = {self.subject.target}")
        if vjp is not None:
            lines[-1:] = self._backward_lines(case, fn, list(args), *vjp)
        return "\n".join(lines)

    def _backward_lines(self, case, fn, names, wrt, cotangent) -> list[str]:
        """The backward call of ``call_vjp`` as Python source: leaves requiring grad, the call,
        the cotangent (in the first output's dtype, as the subject's backward receives it) and
        torch.autograd.grad."""
        leaves = [n for n in names if n in wrt]
        long = getattr(case, "rebuild", None) and getattr(case, "cotangent", None) is not None \
            and np.array_equal(cotangent, self.rounded(case.cotangent))
        values = "case.cotangent" if long else format_value(np.asarray(cotangent))
        return ["import numpy as np", "import torch"] + [
                f"{n} = {n}.detach().clone().requires_grad_(True)" for n in leaves] + [
                f"out = {fn}({', '.join(names)})   # {fn} = {self.subject.target}",
                "first = out[0] if isinstance(out, (tuple, list)) else out",
                f"cot = torch.from_numpy({values}).to(device=first.device, dtype=first.dtype)"
                "   # the cotangent",
                f"grads = torch.autograd.grad(first, ({', '.join(leaves)},), cot, "
                f"allow_unused=True)   # d<first, cot>/d({', '.join(leaves)})"]

    def last_vjp(self):
        """(wrt, cotangent) of the vector-Jacobian product last made on the current case (the
        precision panel pulls the same cotangent back), or None."""
        return self._vjp_of(getattr(self, "_case", None))

    def _vjp_of(self, case):
        last = getattr(self, "_vjp", None)
        return last[1] if last is not None and last[0] is case else None

    def admit(self, case) -> None:
        """The safety net of --ssm-without / --ssm-with (properties/options.py): an example with a
        left-out feature, or without a forced one of the role, is discarded (the strategies build
        none; Hypothesis's health check would name a strategy that did, and an explicit example
        outside the input space is skipped). ``non_contiguous`` is a layout a property applies,
        not part of the drawn case: forced, only the properties named non_contiguous run."""
        features = set(getattr(case, "features", ()))
        if forced("non_contiguous") and "non_contiguous" in self.role.features and \
                CURRENT_PROPERTY["name"] != "non_contiguous":
            import pytest
            pytest.skip("--ssm-with non_contiguous: only the non_contiguous properties run "
                        "(this one passes contiguous inputs)")
        if not admits(features | ({"non_contiguous"} & RUN.with_), self.role.features):
            assume(False)

    def call(self, case):
        """The checked call; failures carry the reproduction of ``case``."""
        self.admit(case)
        self._case = case
        self._vjp = None
        try:
            out, mutated = self.subject.call(self.inputs(case),
                                             describe=lambda: self.describe(case),
                                             timeout=RUN.call_timeout_s,
                                             mutates=self.role.mutates)
            self.mutated = mutated  # the in-place results of roles that must mutate an input
            return out
        except SubjectFailure as failure:
            caught = failure
        self.fail(caught)

    def call_steps(self, case, steps: list, watched: dict) -> list:
        """The subject called on each argument mapping of ``steps`` in one worker thread
        (``Subject.call_steps``: a long decode sequence); failures carry the reproduction of
        ``case``."""
        self.admit(case)
        self._case = case
        try:
            return self.subject.call_steps(steps, watched=watched,
                                           describe=lambda: self.describe(case),
                                           timeout=RUN.call_timeout_s)
        except SubjectFailure as failure:
            caught = failure
        self.fail(caught)

    def call_vjp(self, case, wrt, cotangent: np.ndarray):
        """The checked call of a vector-Jacobian product: the ``wrt`` inputs become leaf tensors
        requiring grad, the subject runs, and ``cotangent`` (float64, the shape of its first
        output) is pulled back through that output. Returns (first output, {name: gradient});
        an input the output does not depend on gets a zero gradient. A subject whose output
        has no autograd graph, or whose backward raises, fails as ``no_backward``."""
        import torch

        from ssm_conformance.properties.subjects import NoBackward

        self.admit(case)
        names = list(self.inputs(case))
        self._vjp = (case, (tuple(n for n in names if n in wrt), np.asarray(cotangent)))

        def wrap(fn):
            def vjp(*args):
                leaves = [a.detach().clone().requires_grad_(True) if n in wrt else a
                          for n, a in zip(names, args)]
                out = fn(*leaves)
                first = out[0] if isinstance(out, (tuple, list)) else out
                if not isinstance(first, torch.Tensor) or not first.requires_grad:
                    raise NoBackward("the output does not require grad (no autograd graph)")
                cot = torch.from_numpy(cotangent).to(device=first.device, dtype=first.dtype)
                targets = [leaf for n, leaf in zip(names, leaves) if n in wrt]
                try:
                    grads = torch.autograd.grad(first, targets, cot, allow_unused=True)
                except Exception as exc:  # noqa: BLE001 - the subject's backward failed
                    raise NoBackward(f"its backward raised {type(exc).__name__}: {exc}") from None
                grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, targets)]
                return first.detach(), tuple(g.detach() for g in grads)
            return vjp

        self._case = case
        try:
            (first, grads), _ = self.subject.call(self.inputs(case),
                                                  describe=lambda: self.describe(case),
                                                  timeout=RUN.call_timeout_s,
                                                  mutates=self.role.mutates, wrap=wrap)
            return first, dict(zip([n for n in names if n in wrt], grads))
        except SubjectFailure as failure:
            caught = failure
        self.fail(caught)

    def fail(self, failure: SubjectFailure, case=None):
        """Record ``failure`` (ratio inf) and raise it with the reproduction of ``case`` (default:
        the last case called), from this one line and with no exception context, so Hypothesis
        sees one origin for every failure of a kind (a replay that fails the same way is not
        taken for a flaky test). Properties that judge without ``judge`` fail through this."""
        case = self._case if case is None else case
        self.record(case, np.inf, np.inf, np.inf)
        raise SubjectFailure(failure.kind, f"{failure.message}\n{self._repro(case)}")

    # -- output checks ---------------------------------------------------------------------------
    def outputs(self, raw, spec: list[Output]) -> list[np.ndarray]:
        """Check the returned structure, shapes and dtypes; return float64/complex128 arrays."""
        try:
            return self._outputs(raw, spec)
        except SubjectFailure as failure:
            caught = failure
        self.fail(caught)

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
            expected = getattr(torch, want.dtype or self.dtype)
            if want.kind == "complex":
                expected = torch.complex128 if expected == torch.float64 else torch.complex64
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
        if self.dtype == "float32":
            # float32 outputs; a float64 result (a kernel that computes in float64 and does not
            # round back) is accepted too and judged against the same float32 tolerance
            accepted = (np.complex64, np.complex128) if want.kind == "complex" else \
                (np.float32, np.float64)
        else:
            accepted = (expected,)
        if arr.dtype not in accepted:
            raise SubjectFailure("wrong_dtype", f"returned {want.name} of dtype {arr.dtype}, "
                                 f"expected {np.dtype(accepted[0])} (NumPy roles are tested in "
                                 f"{self.dtype} here: --ssm-numpy-dtype)")
        return arr

    # -- the verdict -----------------------------------------------------------------------------
    def judge(self, case, checks):
        """checks: list of (name, output array, Reference, terms[, output dtype]). The output
        dtype (default: the dtype under test) sets the output-rounding term. ``terms`` is a list
        of (depth, magnitude) for ``tolerance.tolerance``, or a callable ``dtype -> tolerance
        array`` for a bound that combines several (min/max over algorithms: tolerance.py, S4
        family). Fails on the first output whose largest error/tolerance ratio exceeds 1, after
        recording every output."""
        # an exact result beyond an output dtype's range is no test of the subject (checked for
        # every output before any finiteness check: such a result rounds to inf in a correct
        # kernel too, and NaN may follow from it in the other outputs)
        for _, _, ref, _, *out_dtype in checks:
            assume_representable(ref.value, out_dtype[0] if out_dtype else self.dtype)
        worst = None
        for name, out, ref, terms, *out_dtype in checks:
            expected = ref.value
            finite_ref = np.isfinite(expected)
            dtype = out_dtype[0] if out_dtype else self.dtype
            bad = finite_ref & ~np.isfinite(out)
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                self.fail(SubjectFailure(
                    "non_finite", f"returned {out[index]} in {name}{list(index)} where the "
                    f"oracle is finite ({expected[index]!r})"), case)
            tol = terms(dtype) if callable(terms) else tolerance(ref, terms, dtype)
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
                     expected[index], tol[index], float(err.max()), float(np.max(rel)),
                     (out, expected, tol))
            if worst is None or entry[0] > worst[0]:
                worst = entry
        if worst is None:
            return
        ratio, name, index, got, want, tol_at, abs_err, rel_err, arrays = worst
        self.record(case, ratio, abs_err, rel_err)
        if not ratio <= 1.0:
            found = diagnosis.hint(*arrays)   # a simple transform of the oracle? (diagnosis.py)
            raise SubjectFailure(
                "inaccurate",
                f"error exceeds the tolerance: {name}{list(index)} = {got!r}, oracle {want!r}, "
                f"|error| = {abs(got - want):.3e} > tolerance {tol_at:.3e} "
                f"(error/tolerance = {ratio:.3g})\n"
                + (f"hint: {name} {found}\n" if found else "") + self._repro(case))
        # within the bound: the precision verdict (properties/precision.py; sequence roles)
        precision.judge(self, case, checks)

    def judge_finite(self, case, name, out, expected, dtype=None):
        """Fail as non_finite where ``out`` is NaN/Inf and the exact ``expected`` is finite (an
        example whose exact result overflows ``dtype`` is discarded first); nothing else."""
        assume_representable(expected, dtype or self.dtype)
        if np.any(np.isfinite(expected) & ~np.isfinite(out)):
            check = (name, out, Reference(expected, 0.0, {}), lambda d: np.inf)
            self.judge(case, [check + ((dtype,) if dtype else ())])

    def judge_pair(self, case, name, out_a, out_b, expected, pair_tol, dtype=None):
        """Two results of the subject that are, exactly, the same number ``expected``: a NaN/Inf
        in either where ``expected`` is finite fails as non_finite, then
        |out_a - out_b| <= pair_tol(dtype) (tolerance.pair_tol: the sum of their tolerances)."""
        for label, out in (("first call", out_a), ("second call", out_b)):
            self.judge_finite(case, f"{name} ({label})", out, expected, dtype)
        check = (name, out_a, Reference(out_b, 0.0, {}), pair_tol)
        self.judge(case, [check + ((dtype,) if dtype else ())])

    def record(self, case, ratio: float, abs_err: float = 0.0, rel_err: float = 0.0):
        """Record one example's figures for a property judged without ``judge`` (e.g. a
        comparison of two calls): ``ratio`` = largest |difference| / its tolerance."""
        vjp = self._vjp_of(case)
        RECORDER.observe(self, CURRENT_PROPERTY["name"], case, ratio=ratio, abs_err=abs_err,
                         rel_err=rel_err, describe=lambda c: self.describe(c, vjp))

    def _repro(self, case) -> str:
        return (f"role {self.role.name}, subject {self.subject.name}, dtype {self.dtype}, "
                f"device {self.device}\nreproduction:\n{self.describe(case)}")


def subject_inputs(case, role: str, dtype: str = "float64", device: str = "cpu") -> dict:
    """The arguments of ``case`` exactly as a subject of ``role`` receives them in ``dtype`` on
    ``device`` (torch roles: tensors; NumPy roles: arrays): what a long input's printed
    reproduction calls, after rebuilding the case from its seed (``case.rebuild``)."""
    from ssm_conformance.properties.roles import ROLES
    return SubjectUnderTest(Subject(role, "", None), ROLES[role], dtype, device).inputs(case)


def _float64(tensor) -> np.ndarray:
    """A tensor as a float64 (complex128 if complex) NumPy array on the CPU, exactly."""
    import torch
    tensor = tensor.detach().cpu()
    return (tensor.to(torch.complex128) if tensor.is_complex() else tensor.double()).numpy()


def assume_representable(expected, dtype: str):
    """Discard an example whose exact result overflows ``dtype``: inf is then the right answer."""
    expected = np.asarray(expected)
    assume(bool(np.all(np.abs(expected[np.isfinite(expected)]) <= FINITE_MAX[dtype])))


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


def skip_unless_grad(sut, case, wrt, cotangent):
    """Backward properties judge only with --ssm-grad (CONTRACT.md). Without it, the first
    example probes whether the subject has a backward at all, so the report can say
    "no backward", and the property is skipped either way."""
    import pytest

    if RUN.grad:
        return
    try:
        sut.call_vjp(case, wrt, np.asarray(cotangent))
    except SubjectFailure as failure:
        if failure.kind == "no_backward":
            pytest.skip("no backward (not judged without --ssm-grad)")
    pytest.skip("backward not judged (run with --ssm-grad)")


def skip_if_forced(*features, reason: str):
    """Skip a property whose inputs cannot have one of ``features`` when --ssm-with forces it
    (e.g. a real-only oracle and a forced complex_A): it has no example in the forced space."""
    import pytest
    hit = [f for f in features if forced(f)]
    if hit:
        pytest.skip(f"--ssm-with {','.join(hit)}: {reason}")


def skip_unless_non_contiguous():
    """Strided layouts are the feature ``non_contiguous`` (CONTRACT.md): left out by
    ``--ssm-without non_contiguous``, the non_contiguous properties are skipped."""
    import pytest
    if not enabled("non_contiguous"):
        pytest.skip("the non_contiguous feature is left out (--ssm-without non_contiguous)")
