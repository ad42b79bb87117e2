"""Subjects: loading a kernel named by ``ROLE=TARGET`` and calling it under the contract's checks.

A call is judged before its numbers are: a subject that raises on a valid input, hangs past the
per-call limit, changes an input in place (unless the role requires it), or answers differently
when called twice on the same input fails here with a message that names which of these it was.
"""
from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass

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


@dataclass
class Subject:
    """A kernel under test for one role."""

    role: str
    target: str
    fn: object
    bundled: bool = False
    hung_on: str | None = None  # set once a call exceeded the time limit

    @property
    def name(self) -> str:
        return self.target

    def _run(self, args: dict, timeout: float, fn=None):
        box = {}
        fn = fn or self.fn

        def work():
            try:
                # the contract fixes the argument order: call positionally, as users' code does
                box["out"] = fn(*args.values())
            except BaseException as exc:  # noqa: BLE001 - any exception is the subject's
                box["exc"] = exc

        worker = threading.Thread(target=work, daemon=True, name=f"ssm-subject:{self.target}")
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            return "hang", None
        if "exc" in box:
            return "raised", box["exc"]
        return "ok", box["out"]

    def call(self, args: dict, *, describe, timeout: float, mutates=(), wrap=None):
        """Call the subject on ``args`` (an ordered name -> value mapping) and return its output
        and the mutated arguments. ``describe()`` renders the input for messages. ``wrap``, if
        given, maps the subject's function to the callable actually run (e.g. a VJP)."""
        fn = wrap(self.fn) if wrap is not None else self.fn
        hang_message = f"hang: no answer within {timeout:g} s (the per-call time limit)"
        if self.hung_on is not None:  # its thread still runs: never start another one
            if describe() == self.hung_on:  # Hypothesis replaying the input that hung
                raise SubjectFailure("hang", f"{hang_message} on this input")
            raise SubjectFailure("hang", f"{hang_message} on an earlier input, so it is not "
                                 f"called again; that input:\n{self.hung_on}")
        pristine = {k: _snapshot(v) for k, v in args.items()}
        results = []
        for attempt in range(2):  # the second call checks determinism
            call_args = {k: _snapshot(v) for k, v in pristine.items()}
            status, out = self._run(call_args, timeout, fn)
            if status == "hang":
                self.hung_on = describe()
                raise SubjectFailure("hang", f"{hang_message} on this input")
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
