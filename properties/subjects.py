"""Subjects: loading a kernel named by ``ROLE=TARGET`` and calling it under the contract's checks.

A call is judged before its numbers are: a subject that raises on a valid input, hangs past the
per-call limit, changes an input in place (unless the role requires it), or answers differently
when called twice on the same input fails here with a message that names which of these it was.

JIT warm-up. A kernel compiled on first use (JAX's jit, torch.compile, CuPy's RawKernel, Triton)
compiles again for every new argument *signature* -- shapes, dtypes and static arguments such as
a length L. The first call on each signature is therefore its warm-up: it may take
FIRST_CALL_FACTOR times the per-call limit (``--ssm-call-timeout``), and every later call,
including the second call of the same input that checks determinism, gets the limit itself.
Float values are not part of the signature (JAX traces them), so the first call of a shape is
the warm-up whatever the numbers. The subject's first call and its slowest warm-up are reported
(report.json ``first_call_s``, ``max_warmup_s``). A kernel that does not answer a warm-up call
within FIRST_CALL_FACTOR times the limit still fails as ``hang``.

A hang's reproduction is the input that hung: the subject's thread still runs, so it is never
called again; while Hypothesis shrinks the failing property, every other input is rejected as
invalid (``assume``), so the failure it reports, and its reproduction, is the hanging input.
"""
from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np


class UsageError(Exception):
    """A bad command line: reported by pytest as a usage error (exit status 4)."""


class NoBackward(Exception):
    """Raised inside a VJP call when the subject's output carries no autograd graph."""


class SubjectFailure(AssertionError):
    """The subject broke the contract; ``kind`` is one of the failure classes of CONTRACT.md."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def load_target(target: str):
    """``package.module:attr`` or ``path/to/file.py:attr`` (attr may be dotted) -> the object."""
    module_part, sep, attr = target.rpartition(":")
    if not sep or not module_part or not attr:
        raise UsageError(f"target {target!r} is not of the form package.module:attr or "
                         f"path/to/file.py:attr")
    try:
        if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
            path = os.path.abspath(module_part)
            if not os.path.isfile(path):
                raise UsageError(f"target {target!r}: no such file {module_part!r}")
            name = "ssm_subject_" + os.path.splitext(os.path.basename(path))[0]
            directory = os.path.dirname(path)
            if directory not in sys.path:
                sys.path.insert(0, directory)  # so the file can import its siblings
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_part)
    except UsageError:
        raise
    except Exception as exc:  # the user's module failed to import: a usage error, one line
        raise UsageError(f"target {target!r}: cannot import {module_part!r}: "
                         f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"target {target!r}: {module_part!r} has no attribute "
                             f"{attr!r}") from None
    if not callable(obj):
        raise UsageError(f"target {target!r} is not callable")
    return obj


def _snapshot(value):
    """A deep, independent copy of an argument (arrays, tensors, scalars, None)."""
    if hasattr(value, "detach") and hasattr(value, "clone"):  # torch tensor
        return value.detach().clone()
    return copy.deepcopy(value)


def _same(a, b) -> bool:
    """Bitwise equality of two outputs or arguments (NaN equals NaN)."""
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(
            _same(x, y) for x, y in zip(a, b))
    if hasattr(a, "detach"):
        a = a.detach().cpu()
        b = b.detach().cpu() if hasattr(b, "detach") else b
        if a.dtype != getattr(b, "dtype", None) or a.shape != b.shape:
            return False
        import torch
        return bool(torch.equal(a, b) or torch.equal(a.isnan(), b.isnan())
                    and torch.equal(a.nan_to_num(), b.nan_to_num()))
    if a is None or b is None:
        return a is b
    try:
        a_arr, b_arr = np.asarray(a), np.asarray(b)
    except Exception:
        return a == b
    if a_arr.shape != b_arr.shape or a_arr.dtype != b_arr.dtype:
        return False
    if a_arr.dtype.kind in "fc":
        return bool(np.array_equal(a_arr, b_arr, equal_nan=True))
    return bool(np.array_equal(a_arr, b_arr))


FIRST_CALL_FACTOR = 5.0  # a warm-up call (new argument signature) may take 5x the limit


def _signature(args: dict) -> tuple:
    """What a JIT specializes on: each argument's shape and dtype (arrays, tensors), or its value
    (ints, bools, strings, None: static arguments such as a length); floats are traced."""
    parts = []
    for name, value in args.items():
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            parts.append((name, tuple(value.shape), str(value.dtype)))
        elif value is None or isinstance(value, (bool, int, str)):
            parts.append((name, repr(value)))
        else:
            parts.append((name, type(value).__name__))
    return tuple(parts)


@dataclass
class Subject:
    """A kernel under test for one role."""

    role: str
    target: str
    fn: object
    bundled: bool = False
    hung_on: str | None = None  # set once a call exceeded the time limit
    hung_in: str | None = None  # the test (pytest node) whose call hung
    first_call_s: float | None = None  # duration of the subject's very first call (warm-up)
    max_warmup_s: float = 0.0  # slowest first call on a new argument signature
    hung_limit: float = 0.0  # the limit the hanging call had
    hung_message: str = ""
    _signatures: set = field(default_factory=set, repr=False)

    @property
    def name(self) -> str:
        return self.target

    def _start(self, work):
        """``work()`` started in a daemon worker thread (a subject that hangs cannot be stopped,
        only left behind); returns the thread and a box that gets "out" or "exc"."""
        box = {}

        def run():
            try:
                box["out"] = work()
            except BaseException as exc:  # noqa: BLE001 - any exception is the subject's
                box["exc"] = exc

        worker = threading.Thread(target=run, daemon=True, name=f"ssm-subject:{self.target}")
        worker.start()
        return worker, box

    def _run(self, args: dict, timeout: float, fn=None):
        fn = fn or self.fn
        # the contract fixes the argument order: call positionally, as users' code does
        worker, box = self._start(lambda: fn(*args.values()))
        worker.join(timeout)
        if worker.is_alive():
            return "hang", None
        if "exc" in box:
            return "raised", box["exc"]
        return "ok", box["out"]

    def _refuse_if_hung(self, describe):
        """A subject that hung is never called again (its thread still runs)."""
        if self.hung_on is None:
            return
        if describe() == self.hung_on:  # Hypothesis replaying the input that hung
            raise SubjectFailure("hang", self.hung_message)
        if os.environ.get("PYTEST_CURRENT_TEST") == self.hung_in:
            from hypothesis import assume
            assume(False)  # shrinking the hang: only the input that hung reproduces it
        raise SubjectFailure("hang", f"hang: no answer within {self.hung_limit:g} s on an "
                             f"earlier input (in "
                             f"{self.hung_in}), so it is not called again; the input that "
                             f"hung:\n{self.hung_on}")

    def _hung(self, describe, limit: float, message: str):
        self.hung_on, self.hung_limit = describe(), limit
        self.hung_in = os.environ.get("PYTEST_CURRENT_TEST")
        self.hung_message = message
        raise SubjectFailure("hang", message)

    def _warmed_up(self, signature, elapsed: float):
        self._signatures.add(signature)
        if self.first_call_s is None:
            self.first_call_s = elapsed
        self.max_warmup_s = max(self.max_warmup_s, elapsed)

    def call_steps(self, steps: list, *, watched: dict, describe, timeout: float):
        """Call the subject once per argument mapping of ``steps``, in order, all in one worker
        thread, and return the outputs: a long decode sequence (2^16 steps) costs its calls, not
        a checked call (two threads, snapshots) per step. Each step must answer within the
        per-call limit (FIRST_CALL_FACTOR times it for the first step on a new signature), as
        in ``call``; the worker's progress is watched, so a hang is found within one limit.
        ``watched``: the tensors the steps' arguments are views of, other than those the role
        mutates; changing any of them in place fails as ``mutated_input``. A step that raises
        fails as ``raised``, naming the step. Determinism is not checked here: the caller
        judges a step through ``call`` for that."""
        self._refuse_if_hung(describe)
        if not steps:
            return []
        pristine = {k: _snapshot(v) for k, v in watched.items()}
        signature = (False, _signature(steps[0]))
        warmup = signature not in self._signatures
        outs, progress = [], {"step": 0, "since": time.perf_counter(), "first_s": None}
        fn = self.fn

        def loop():
            for t, args in enumerate(steps):
                progress["step"], progress["since"] = t, time.perf_counter()
                outs.append(fn(*args.values()))
                if t == 0:
                    progress["first_s"] = time.perf_counter() - progress["since"]

        worker, box = self._start(loop)
        while True:
            worker.join(0.25)
            if not worker.is_alive():
                break
            step, since = progress["step"], progress["since"]
            limit = timeout * FIRST_CALL_FACTOR if step == 0 and warmup else timeout
            if time.perf_counter() - since > limit and progress["step"] == step:
                self._hung(describe, limit, f"hang: no answer within {limit:g} s (the per-call "
                           f"limit{', first call' if limit > timeout else ''}) at decode step "
                           f"{step} of this input")
        if warmup and progress["first_s"] is not None:
            self._warmed_up(signature, progress["first_s"])
        if "exc" in box:
            out = box["exc"]
            if isinstance(out, NoBackward):
                raise SubjectFailure("no_backward", f"no backward: {out}")
            text = f"{type(out).__name__}: {out}".strip()
            raise SubjectFailure("raised", f"raised on a valid input at step "
                                 f"{progress['step']} of {len(steps)}: {text}")
        for name, before in pristine.items():
            if not _same(watched[name], before):
                raise SubjectFailure("mutated_input", f"changed its input {name!r} in place")
        return outs

    def call(self, args: dict, *, describe, timeout: float, mutates=(), wrap=None):
        """Call the subject on ``args`` (an ordered name -> value mapping) and return its output
        and the mutated arguments. ``describe()`` renders the input for messages. ``wrap``, if
        given, maps the subject's function to the callable actually run (e.g. a VJP)."""
        fn = wrap(self.fn) if wrap is not None else self.fn
        signature = (wrap is not None, _signature(args))
        warmup = signature not in self._signatures
        limits = (timeout * FIRST_CALL_FACTOR if warmup else timeout, timeout)
        self._refuse_if_hung(describe)
        pristine = {k: _snapshot(v) for k, v in args.items()}
        results = []
        for attempt in range(2):  # the second call checks determinism
            call_args = {k: _snapshot(v) for k, v in pristine.items()}
            start = time.perf_counter()
            status, out = self._run(call_args, limits[attempt], fn)
            if status == "hang":
                what = ("the first call on inputs of this signature (the warm-up: "
                        f"{FIRST_CALL_FACTOR:g} x the per-call limit of {timeout:g} s)"
                        if attempt == 0 and warmup else "the per-call time limit")
                self._hung(describe, limits[attempt], f"hang: no answer within "
                           f"{limits[attempt]:g} s ({what}) on this input")
            if attempt == 0 and warmup:
                self._warmed_up(signature, time.perf_counter() - start)
            if status == "raised" and isinstance(out, NoBackward):
                raise SubjectFailure("no_backward", f"no backward: {out}")
            if status == "raised":
                text = f"{type(out).__name__}: {out}".strip()
                raise SubjectFailure("raised", f"raised on a valid input: {text}")
            for name, before in pristine.items():
                if name in mutates:
                    continue
                if not _same(call_args[name], before):
                    raise SubjectFailure("mutated_input",
                                         f"changed its input {name!r} in place")
            results.append((out, {k: call_args[k] for k in mutates}))
        (out1, mut1), (out2, mut2) = results
        if not _same(out1, out2) or not all(_same(mut1[k], mut2[k]) for k in mutates):
            raise SubjectFailure("nondeterministic",
                                 "not deterministic: two calls on the same input gave different "
                                 "results")
        return out1, mut1
