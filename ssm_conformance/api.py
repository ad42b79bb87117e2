"""``check(role, fn, ...)``: the conformance suite from a user's own test, as a function.

It runs the installed property modules of ``role`` through pytest in this process (``pytest.main``
with the suite's plugin; ``fn`` is the one subject), so the properties, strategies, Hypothesis
profiles and tolerance model are exactly those of ``python -m pytest --ssm-subject ROLE=TARGET``.
A failure raises ``AssertionError`` with the message and reproduction that run prints; success
returns the report's rows. The suite's run state (options, records, Hypothesis profile) is saved
and restored around the run, so calling ``check`` inside a pytest session leaves it untouched.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from numbers import Integral, Real

import pytest

from ssm_conformance.cli import PLUGIN, QUIET_REWRITE
_DEFAULT_DTYPES = ("float32",)  # the default: each role in the pytest run's default dtype
_PROFILES = ("dev", "ci", "ci-noshrink", "thorough")


def check(role, fn, dtypes=_DEFAULT_DTYPES, without=(), grad=False, max_examples=None,
          with_=(), precision_factor=16):
    """Judge ``fn`` as ``role`` (../shared/CONTRACT.md) and return the per-property records.

    role: a role of the contract, e.g. "selective_scan". fn: the kernel (any callable with the
    role's call signature). dtypes: for torch roles the dtypes of ``--ssm-dtype`` (float32,
    float64, bfloat16, float16); for NumPy roles those of ``--ssm-numpy-dtype`` (float64, and
    float32 where this version of the suite has that option); left at its default, each role is
    tested as the pytest run tests it by default (torch roles float32, NumPy roles float64).
    without: features removed from the input space (``--ssm-without``). grad: also judge the
    backward pass (``--ssm-grad``). with_: features drawn in every example (``--ssm-with``; a
    kernel that requires an optional argument is judged on everything else). max_examples:
    examples per property (default: the Hypothesis profile's: ``ci`` where the CI environment variable is set, else ``dev``; a profile selected
    in the surrounding pytest run, e.g. ``--hypothesis-profile thorough``, is kept).
    precision_factor: K of the precision verdict (``--ssm-precision-factor``): a number >= 1
    (default 16), or "off" / None to judge by the error bound alone.

    Returns one dict per (property, dtype): the report.json row (``verdict``, ``max_ratio``,
    ``examples``, ``features_exercised``, ``feature_examples``, ``worst_example``, ...) plus
    ``ratio`` (= max_ratio) and ``features`` (= features_exercised). Raises AssertionError with
    each failed property's message and reproduction if any property did not hold.
    """
    from ssm_conformance.properties.roles import ROLES

    spec = _validate(role, fn, dtypes, without, grad, max_examples, ROLES)
    spec += _validate_with(role, with_, without, ROLES)
    spec += ["--ssm-precision-factor", _precision_factor(precision_factor)]
    # the user's configuration (addopts: -n, -x, ...) does not apply to the suite's run
    args = ["-p", PLUGIN, "-W", QUIET_REWRITE, "-q", "--no-header", "-p", "no:cacheprovider",
            "-o", "addopts=", "-o", "python_files=test_*.py", *spec,
            "--hypothesis-profile", _profile(max_examples), _properties_dir()]
    return _run(args, ROLES[role], fn)


def _validate(role, fn, dtypes, without, grad, max_examples, roles) -> list[str]:
    """The ``--ssm-*`` options for the arguments; ValueError/TypeError naming a bad argument."""
    from ssm_conformance.properties.roles import DTYPES, NUMPY_DTYPES

    if not isinstance(role, str):
        raise TypeError(f"role: expected a role name (str), got {type(role).__name__}")
    if role not in roles or not roles[role].bundled:
        raise ValueError(f"role: unknown role {role!r}; roles: {', '.join(roles)}")
    if not callable(fn):
        raise TypeError(f"fn: expected a callable with the call signature of role {role!r}, "
                        f"got {type(fn).__name__}")
    if isinstance(dtypes, str):
        dtypes = (dtypes,)
    try:
        dtypes = tuple(dtypes)
    except TypeError:
        raise TypeError(f"dtypes: expected a tuple of dtype names, got "
                        f"{type(dtypes).__name__}") from None
    if isinstance(without, str):
        without = (without,)
    try:
        without = tuple(without)
    except TypeError:
        raise TypeError(f"without: expected a tuple of feature names, got "
                        f"{type(without).__name__}") from None
    if not isinstance(grad, bool):
        raise TypeError(f"grad: expected True or False, got {grad!r}")
    if max_examples is not None and (isinstance(max_examples, bool)
                                     or not isinstance(max_examples, Integral)):
        raise TypeError(f"max_examples: expected a positive int or None, got {max_examples!r}")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples: expected a positive int or None, got {max_examples}")
    r = roles[role]
    unknown = [f for f in without if f not in r.features]
    if unknown:
        raise ValueError(f"without: unknown feature {', '.join(map(repr, unknown))} of role "
                         f"{role!r}; its features: {', '.join(r.features) or '(none)'}")
    options = []
    if r.backend == "torch":
        bad = [d for d in dtypes if d not in DTYPES]
        if bad or not dtypes:
            raise ValueError(f"dtypes: unknown dtype {', '.join(map(repr, bad)) or '(none)'} "
                             f"for torch role {role!r}; choose from {', '.join(DTYPES)}")
        options += ["--ssm-dtype", ",".join(dtypes)]
    elif dtypes is not _DEFAULT_DTYPES:
        bad = [d for d in dtypes if d not in NUMPY_DTYPES]
        if bad or not dtypes:
            raise ValueError(f"dtypes: unknown dtype {', '.join(map(repr, bad)) or '(none)'} "
                             f"for NumPy role {role!r}; choose from {', '.join(NUMPY_DTYPES)}")
        options += ["--ssm-numpy-dtype", ",".join(dtypes)]
    if without:
        options += ["--ssm-without", ",".join(without)]
    if grad:
        options.append("--ssm-grad")
    return options


def _precision_factor(value) -> str:
    """The --ssm-precision-factor argument for ``precision_factor``; TypeError/ValueError naming
    it for anything but a number >= 1, "off" or None."""
    from ssm_conformance.properties.precision import parse_factor

    if value is None:
        return "off"
    if isinstance(value, bool) or not isinstance(value, (str, Real)):
        raise TypeError(f"precision_factor: expected a number >= 1 or 'off', got {value!r}")
    try:
        factor = parse_factor(value)
    except ValueError as exc:
        raise ValueError(f"precision_factor: {exc}") from None
    return "off" if factor is None else repr(factor)


def _validate_with(role, with_, without, roles) -> list[str]:
    """The ``--ssm-with`` option for ``with_`` (forced features); ValueError/TypeError naming it."""
    if isinstance(with_, str):
        with_ = (with_,)
    try:
        with_ = tuple(with_)
    except TypeError:
        raise TypeError(f"with_: expected a tuple of feature names, got "
                        f"{type(with_).__name__}") from None
    features = roles[role].features
    unknown = [f for f in with_ if f not in features]
    if unknown:
        raise ValueError(f"with_: unknown feature {', '.join(map(repr, unknown))} of role "
                         f"{role!r}; its features: {', '.join(features) or '(none)'}")
    both = [f for f in with_ if f in ((without,) if isinstance(without, str) else tuple(without))]
    if both:
        raise ValueError(f"with_: {', '.join(map(repr, both))} also in without: a feature "
                         f"cannot be forced and left out")
    from ssm_conformance.properties.roles import incompatible_forced
    clash = incompatible_forced(role, with_)
    if clash:
        raise ValueError(f"with_: {clash}")
    return ["--ssm-with", ",".join(with_)] if with_ else []


def _profile(max_examples) -> str:
    """The Hypothesis profile of the run: the surrounding run's if it is one of the suite's,
    else ``ci``/``dev`` as the plugin chooses; with ``max_examples``, a child of it."""
    from hypothesis import settings

    import ssm_conformance.properties.plugin  # noqa: F401 - registers the suite's profiles

    current = getattr(settings, "_current_profile", None)
    base = current if current in _PROFILES else ("ci" if os.environ.get("CI") else "dev")
    if max_examples is None:
        return base
    name = f"ssm-check-{base}-{int(max_examples)}"
    settings.register_profile(name, parent=settings.get_profile(base),
                              max_examples=int(max_examples))
    return name


def _properties_dir() -> str:
    import ssm_conformance.properties as properties
    return os.path.dirname(os.path.abspath(properties.__file__))


def _subject_name(fn) -> str:
    """``module:name`` of ``fn`` for messages and reproductions (what --ssm-subject would say)."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not name or "<" in name:  # a local function or lambda: its plain name
        name = getattr(fn, "__name__", None) or type(fn).__name__
    if "<" in name:
        name = "fn"
    module = getattr(fn, "__module__", None) or type(fn).__module__
    return f"{module}:{name}"


class _Subject:
    """A pytest plugin that makes ``fn`` the one subject of ``role`` (after the suite's plugin
    parsed the options: ``trylast``), as ``--ssm-subject ROLE=TARGET`` would."""

    def __init__(self, role, fn):
        self.role, self.fn = role, fn

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config):
        from ssm_conformance.properties.options import RUN
        from ssm_conformance.properties.subjects import Subject

        RUN.subjects = {self.role.name: [Subject(self.role.name, _subject_name(self.fn),
                                                 self.fn)]}
        RUN.user_subjects = True


_TEST_MODULES = "ssm_conformance.properties.test_"


def _run(args, role, fn) -> list[dict]:
    import copy

    from hypothesis import settings

    from ssm_conformance.properties.harness import CURRENT_PROPERTY
    from ssm_conformance.properties.options import RUN
    from ssm_conformance.properties.report import RECORDER

    saved_run, saved_entries = copy.copy(RUN.__dict__), RECORDER.entries
    saved_profile, saved_property = settings._current_profile, CURRENT_PROPERTY["name"]
    # the property modules are imported afresh: @given reads the Hypothesis profile at import
    saved_modules = {k: sys.modules.pop(k) for k in list(sys.modules)
                     if k.startswith(_TEST_MODULES)}
    RECORDER.entries = {}
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            status = int(pytest.main(args, plugins=[_Subject(role, fn)]))
        entries = list(RECORDER.entries.values())
        without, forced = RUN.without, RUN.with_
    finally:
        RUN.__dict__.update(saved_run)
        RECORDER.entries = saved_entries
        CURRENT_PROPERTY["name"] = saved_property
        settings.load_profile(saved_profile or "default")
        for k in [k for k in sys.modules if k.startswith(_TEST_MODULES)]:
            del sys.modules[k]
        sys.modules.update(saved_modules)
    rows = []
    for entry in sorted(entries, key=lambda e: (e.property, e.dtype)):
        row = entry.as_json(without, forced)
        row.update(ratio=row["max_ratio"], features=row["features_exercised"])
        rows.append(row)
    failed = [r for r in rows if r["verdict"] == "fail"]
    if failed:
        raise AssertionError("\n\n".join(r["message"] for r in failed))
    if status != 0 or not rows:
        raise RuntimeError(f"the conformance run of {role.name} ended with pytest exit status "
                           f"{status} and no property failure recorded:\n"
                           f"{output.getvalue()[-4000:]}")
    return rows
