"""The pytest plugin of the suite: the ``--ssm-*`` options of CONTRACT.md, the subjects each
property runs against, Hypothesis profiles, clean failure messages, and the report.

Installed, it is the ``pytest11`` entry point named ``ssm_conformance.properties.plugin`` (the
module's own name, so a checkout's conftest.py that lists it in ``pytest_plugins`` finds it
registered and does not register it twice). ``--ssm-subject`` with no test paths on the command
line collects this package's property modules, wherever the suite is installed. Under
pytest-xdist every worker sends its records to the controller, which writes the one report.
"""
from __future__ import annotations

import os
import re

import pytest
from hypothesis import HealthCheck, Phase, settings

from ssm_conformance.properties import precision, report
from ssm_conformance.properties.harness import CURRENT_PROPERTY, SubjectUnderTest
from ssm_conformance.properties.options import DEFAULT_CALL_TIMEOUT_S, RUN
from ssm_conformance.properties.report import RECORDER
from ssm_conformance.properties.roles import (DEVICES, DTYPES, NUMPY_DTYPES, ROLES,
                                             incompatible_forced)
from ssm_conformance.properties.subjects import Subject, SubjectFailure, UsageError, load_target
from ssm_conformance.properties.tolerance import SAFETY, UNIT_ROUNDOFF

# --- Hypothesis profiles -------------------------------------------------------------------------
# dev: quick local runs. ci: derandomized (the same examples every run), no deadline (oracles
# are slow; hangs are caught by the per-call limit instead), reproduction blobs printed; chosen
# automatically when the CI environment variable is set. thorough: 10x ci's examples.
# 100 examples per property in ci. Strategies draw each optional feature on about half of the
# examples; Hypothesis's generation is not uniform, so report.json counts them
# ("feature_examples"; bundled ci run with --ssm-grad: 12 to 69 of 100 per feature and
# property). Pairs of features are not guaranteed: where a pair matters (attention: causal with
# a scale <= 0), the strategy adds explicit cases, which every profile runs first. The
# derandomized run is the same every time, until the test's source changes.
# ci-noshrink: ci without shrinking: the same examples and verdicts, the first failing example
# reported as drawn; for the meta-tests (which need verdicts, not minimal inputs) and triage.
# Hypothesis's "explain" phase is left out: it lists lines of the suite's own code.
_PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
_COMMON = dict(deadline=None, print_blob=True, report_multiple_bugs=False, phases=_PHASES,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors,
                                      HealthCheck.data_too_large])
_CI = dict(_COMMON, max_examples=100, derandomize=True, database=None)
settings.register_profile("dev", **dict(_COMMON, max_examples=25))
settings.register_profile("ci", **_CI)
settings.register_profile("ci-noshrink", **dict(_CI, phases=_PHASES[:-1]))
settings.register_profile("thorough", **dict(_COMMON, max_examples=1000))
# budget: a slow subject (an interpreted Triton kernel, ~10^3x slower than compiled) judged in
# minutes: 10 derandomized examples, no shrinking (the first failing example as drawn, with its
# reproduction); with --ssm-max-length. Few examples may leave a feature always on or always
# off: report.json's feature_examples says, and examples/thirdparty/run_ecosystem.py reruns
# such a subject with the feature forced (docs/triton_cpu.md).
settings.register_profile("budget", **dict(_CI, max_examples=10, phases=_PHASES[:-1]))


def pytest_addoption(parser):
    group = parser.getgroup("ssm", "SSM kernel conformance (see CONTRACT.md)")
    group.addoption("--ssm-subject", action="append", default=[], metavar="ROLE=TARGET",
                    help="judge TARGET (package.module:attr or path/to/file.py:attr) as ROLE; "
                         "repeatable. Without it, the bundled implementations are judged.")
    group.addoption("--ssm-dtype", default="float32", metavar="DTYPES",
                    help="comma-separated dtypes for torch roles: float32,float64,bfloat16,"
                         "float16 (default float32). NumPy roles: see --ssm-numpy-dtype.")
    group.addoption("--ssm-numpy-dtype", default="float64", metavar="DTYPES",
                    help="comma-separated dtypes for NumPy roles: float64,float32 (default "
                         "float64). float32: inputs rounded to float32, float32 outputs, "
                         "float32's unit roundoff")
    group.addoption("--ssm-device", default="cpu", metavar="cpu|cuda",
                    help="device of the tensors given to torch roles (default cpu)")
    group.addoption("--ssm-without", default="", metavar="FEATURE[,FEATURE...]",
                    help="remove features from the input space (per-role names: see "
                         "--ssm-with)")
    _add_with_option(group)
    group.addoption("--ssm-grad", action="store_true",
                    help="also check backward passes (vector-Jacobian products) of torch subjects")
    group.addoption("--ssm-report", default=None, metavar="DIR",
                    help="write DIR/report.json, DIR/report.md and DIR/*.png")
    group.addoption("--ssm-call-timeout", default=DEFAULT_CALL_TIMEOUT_S, type=float,
                    metavar="SECONDS",
                    help=f"per-call time limit for a subject (default {DEFAULT_CALL_TIMEOUT_S:g}); "
                         "the first call on a new argument signature (JIT warm-up) gets 5x it "
                         "(an extension of the contract)")
    group.addoption("--ssm-max-length", default=None, type=int, metavar="L",
                    help="cap sequence lengths at L for a quick local run (an extension of the "
                         "contract; a capped run is not a conformance verdict at long lengths "
                         "and its report says so); for a slow subject (an interpreted Triton "
                         "kernel) add --hypothesis-profile budget, this suite's profile of 10 "
                         "examples per property (docs/triton_cpu.md)")
    # the precision verdict (properties/precision.py)
    group.addoption("--ssm-precision-factor", default="16", metavar="K|off",
                    help="sequence roles: fail as 'imprecise' a subject whose largest error on "
                         "a row (batch x channel or head) exceeds K times that of the standard "
                         "algorithms in the same precision (sequential loop, tree scan, chunked "
                         "SSD, both tap orders, plain and online softmax) plus a floor of four "
                         "output-dtype roundings; K >= 1, default 16 (4 bits); 'off' judges by "
                         "the derived error bound alone ('inaccurate' beyond it, whatever K is)")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse(config) -> None:
    """Fill properties.options.RUN from the command line; raise UsageError on anything wrong."""
    dtypes = _split(config.getoption("ssm_dtype"))
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown or not dtypes:
        raise UsageError(f"--ssm-dtype: unknown dtype {', '.join(unknown) or '(none)'}; "
                         f"choose from {','.join(DTYPES)}")
    numpy_dtypes = _split(config.getoption("ssm_numpy_dtype"))
    unknown = [d for d in numpy_dtypes if d not in NUMPY_DTYPES]
    if unknown or not numpy_dtypes:
        raise UsageError(f"--ssm-numpy-dtype: unknown dtype {', '.join(unknown) or '(none)'}; "
                         f"choose from {','.join(NUMPY_DTYPES)}")
    device = config.getoption("ssm_device")
    if device not in DEVICES:
        raise UsageError(f"--ssm-device: unknown device {device!r}; choose cpu or cuda")
    requested: dict[str, list[Subject]] = {}
    for spec in config.getoption("ssm_subject"):
        role_name, sep, target = spec.partition("=")
        role_name, target = role_name.strip(), target.strip()
        if not sep or not role_name or not target:
            raise UsageError(f"--ssm-subject {spec!r}: expected ROLE=TARGET")
        if role_name not in ROLES:
            raise UsageError(f"--ssm-subject: unknown role {role_name!r}; roles: "
                             f"{', '.join(ROLES)}")
        if not ROLES[role_name].bundled:
            raise UsageError(f"--ssm-subject: role {role_name!r} has no properties in this "
                             f"version of the suite yet")
        requested.setdefault(role_name, []).append(
            Subject(role_name, target, load_target(target)))
    without = frozenset(_split(config.getoption("ssm_without")))
    roles_in_play = [ROLES[r] for r in requested] if requested else list(ROLES.values())
    known_features = {f for role in roles_in_play for f in role.features}
    unknown = sorted(without - known_features)
    if unknown:
        raise UsageError(f"--ssm-without: unknown feature {', '.join(unknown)} for "
                         f"{'the named roles' if requested else 'any role'}; features: "
                         f"{', '.join(sorted(known_features)) or '(none)'}")
    timeout = config.getoption("ssm_call_timeout")
    if not timeout > 0:
        raise UsageError("--ssm-call-timeout: must be a positive number of seconds")
    RUN.subjects = requested
    RUN.user_subjects = bool(requested)
    RUN.dtypes = tuple(dtypes)
    RUN.numpy_dtypes = tuple(numpy_dtypes)
    RUN.device = device
    RUN.without = without
    RUN.with_ = _parse_with(config, without, known_features, [r.name for r in roles_in_play],
                            bool(requested))
    RUN.grad = bool(config.getoption("ssm_grad"))
    RUN.report_dir = config.getoption("ssm_report")
    RUN.call_timeout_s = float(timeout)
    max_length = config.getoption("ssm_max_length")
    if max_length is not None and max_length < 1:
        raise UsageError("--ssm-max-length: must be a positive whole number of steps")
    RUN.max_length = max_length
    try:
        RUN.precision_factor = precision.parse_factor(config.getoption("ssm_precision_factor"))
    except ValueError as exc:
        raise UsageError(f"--ssm-precision-factor: {exc}") from None


# --- --ssm-with (forced features) ----------------------------------------------------------------

def _features_help() -> str:
    """Every role's features, for --help (the names --ssm-with and --ssm-without take)."""
    from ssm_conformance.properties.roles import EXTENSION_FEATURES

    listed = "; ".join(f"{name}: {', '.join(role.features)}" for name, role in ROLES.items()
                       if role.features)
    return (f"{listed} (beyond CONTRACT.md, extensions of this suite: "
            f"{', '.join(EXTENSION_FEATURES)})")


def _add_with_option(group) -> None:
    group.addoption("--ssm-with", default="", metavar="FEATURE[,FEATURE...]",
                    help="draw the named features in every example (a kernel that requires, "
                         "e.g., D or dt_bias is judged on everything else); the report lists "
                         "them as forced. Features per role: " + _features_help())


def _parse_with(config, without: frozenset, known_features: set, roles: list,
                named_roles: bool) -> frozenset:
    """The features of --ssm-with; UsageError for an unknown one, one also left out, or a set
    that no input of one of ``roles`` has together."""
    forced = frozenset(_split(config.getoption("ssm_with")))
    unknown = sorted(forced - known_features)
    if unknown:
        raise UsageError(f"--ssm-with: unknown feature {', '.join(unknown)} for "
                         f"{'the named roles' if named_roles else 'any role'}; features: "
                         f"{', '.join(sorted(known_features)) or '(none)'}")
    both = sorted(forced & without)
    if both:
        raise UsageError(f"--ssm-with and --ssm-without both name {', '.join(both)}: a feature "
                         f"cannot be forced and left out")
    for role in roles:
        clash = incompatible_forced(role, forced)
        if clash:
            raise UsageError(f"--ssm-with: {clash}")
    return forced


def pytest_configure(config):
    config.addinivalue_line("markers", "ssm_role(name): the contract role a property judges")
    try:
        _parse(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    _collect_the_suite(config)
    if not config.getoption("hypothesis_profile", None) and _runs_the_suite(config):
        settings.load_profile("ci" if os.environ.get("CI") else "dev")


def _runs_the_suite(config) -> bool:
    """Whether this run is the suite's (its properties collected, or a checkout of it). Installed,
    the plugin is loaded in every pytest run of the environment: a user's own Hypothesis tests
    keep their own profile."""
    if RUN.user_subjects or str(config.rootpath) == os.path.dirname(PROPERTIES_DIR):
        return True
    for arg in config.args:
        path = os.path.abspath(str(arg).split("::")[0])
        # the suite's directory, a file in it, or a directory above it
        if (PROPERTIES_DIR + os.sep).startswith(path + os.sep) or \
                path.startswith(PROPERTIES_DIR + os.sep):
            return True
    return False


PROPERTIES_DIR = os.path.dirname(os.path.abspath(__file__))


def _collect_the_suite(config) -> None:
    """``--ssm-subject`` and no test paths on the command line: collect the property suite (this
    package's directory, installed or in a checkout) instead of the directory pytest was started
    in or the ``testpaths`` of its configuration. Paths given explicitly are collected as given."""
    if RUN.user_subjects and config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args = [PROPERTIES_DIR]
        config.args_source = pytest.Config.ArgsSource.ARGS


_BUNDLED_CACHE: dict[str, Subject] = {}


def _bundled(role) -> list[Subject]:
    subjects = []
    for target in role.bundled:
        if target.startswith("ssm_conformance.implementations.cupy") and not (
                _cuda_visible() and (role.backend == "numpy" or RUN.device == "cuda")):
            continue  # CuPy kernels only where a GPU is visible (CONTRACT.md), on its tensors
        if target not in _BUNDLED_CACHE:
            _BUNDLED_CACHE[target] = Subject(role.name, target, load_target(target), bundled=True)
        subjects.append(_BUNDLED_CACHE[target])
    return subjects


def _cuda_visible() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("ssm_role")
    if "sut" not in metafunc.fixturenames or marker is None:  # not a property of the suite
        return
    role = ROLES[marker.args[0]]
    if RUN.user_subjects:
        subjects = RUN.subjects.get(role.name, [])
    else:
        subjects = _bundled(role)
    dtypes = RUN.dtypes if role.backend == "torch" else RUN.numpy_dtypes
    device = RUN.device if role.backend == "torch" else "cpu"
    params = []
    for subject in subjects:
        for dtype in dtypes:
            sut = SubjectUnderTest(subject, role, dtype, device)
            marks = []
            if device == "cuda" and not _cuda_visible():
                marks.append(pytest.mark.skip(reason="--ssm-device cuda: no CUDA GPU visible"))
            params.append(pytest.param(sut, id=f"{subject.name}-{dtype}", marks=marks))
    metafunc.parametrize("sut", params)


def pytest_collection_modifyitems(config, items):
    """With --ssm-subject, only the properties of the named roles run (not the implementation
    properties of properties/ that judge our own code, nor other roles')."""
    if not RUN.user_subjects:
        return
    properties_dir = PROPERTIES_DIR
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("ssm_role")
        in_properties = os.path.abspath(str(item.path)).startswith(properties_dir + os.sep)
        if (marker is None and in_properties) or (marker is not None
                                                  and marker.args[0] not in RUN.subjects):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _property_name(item) -> str:
    marker = item.get_closest_marker("ssm_role")
    if marker is not None and "property" in marker.kwargs:
        return marker.kwargs["property"]
    name = getattr(item, "originalname", item.name)
    return name[5:] if name.startswith("test_") else name


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    CURRENT_PROPERTY["name"] = _property_name(item)
    yield
    CURRENT_PROPERTY["name"] = None


def _subject_failure(exc):
    """The SubjectFailure inside ``exc`` (Hypothesis may wrap it in an exception group)."""
    if isinstance(exc, SubjectFailure):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _subject_failure(inner)
        if found is not None:
            return found
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    sut = getattr(item, "callspec", None) and item.callspec.params.get("sut")
    if not isinstance(sut, SubjectUnderTest) or rep.when not in ("setup", "call"):
        return
    entry = RECORDER.entry(sut, _property_name(item))
    entry.duration_s += rep.duration
    entry.first_call_s = sut.subject.first_call_s  # warm-up times (properties/subjects.py)
    entry.max_warmup_s = sut.subject.max_warmup_s
    if rep.skipped and entry.verdict != "fail":
        entry.verdict = "skip"
        entry.message = str(rep.longrepr[-1]) if isinstance(rep.longrepr, tuple) else ""
        if "no backward" in entry.message:
            entry.failure_kind = "no_backward"
    elif rep.failed:
        entry.verdict = "fail"
        exc = call.excinfo.value if call.excinfo else None
        failure = _subject_failure(exc)
        notes = hypothesis_notes(getattr(failure or exc, "__notes__", []))
        if failure is not None:
            entry.failure_kind = failure.kind
            header = (f"{sut.role.name} / {sut.subject.name} / {entry.property} / {sut.dtype}: "
                      f"{failure.kind}")
            entry.message = "\n".join([header, failure.message, *notes])
            rep.longrepr = entry.message
            entry.failed_on_last(failure.message)
        else:
            entry.failure_kind = "error"
            entry.message = f"{type(exc).__name__}: {exc}" if exc else str(rep.longrepr)


# Hypothesis's dump of the failing test call: "Falsifying example: test_x(sut=..., case=...)"
# (before 6.170, and "Falsifying explicit example"), "Failing test case: ..." and "Failing
# explicit example: ..." (6.170 on). It prints the whole SubjectUnderTest and every array of the
# case; our reproduction above it is the readable one. Other notes (the @reproduce_failure blob,
# the seed) are kept.
_TEST_CASE_DUMP = re.compile(r"\s*(Falsifying|Failing) (explicit )?(example|test case)\b")


def hypothesis_notes(notes) -> list[str]:
    """The notes Hypothesis attached to a failure, less its dump of the failing test call."""
    return [n for n in notes if not _TEST_CASE_DUMP.match(str(n))]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RECORDER.entries:
        return
    terminalreporter.section("SSM conformance")
    for line in report.terminal_lines(RECORDER.entries.values(), RUN.without, RUN.with_):
        terminalreporter.write_line(line)
    if RUN.report_dir:
        terminalreporter.write_line(f"report written to {RUN.report_dir}/report.md, "
                                    f"report.json and plots")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist controller: a worker finished; add its records (one merged report)."""
    RECORDER.merge(getattr(node, "workeroutput", {}).get("ssm_records", []))


def pytest_sessionfinish(session, exitstatus):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: the controller writes the report
        workeroutput["ssm_records"] = RECORDER.dump()
        return
    if not RUN.report_dir:
        return
    options = {
        "subjects": {role: [s.name for s in subs] for role, subs in RUN.subjects.items()},
        "bundled": not RUN.user_subjects, "dtypes": list(RUN.dtypes),
        "numpy_dtypes": list(RUN.numpy_dtypes), "device": RUN.device,
        "without": sorted(RUN.without), "with": sorted(RUN.with_), "grad": RUN.grad,
        "call_timeout_s": RUN.call_timeout_s,
        "max_length": RUN.max_length, "precision_factor": RUN.precision_factor,
    }
    report.write(RUN.report_dir, exit_status=int(exitstatus), options=options,
                 profile=settings._current_profile, without=RUN.without, forced=RUN.with_,
                 tolerance={"safety": SAFETY, "unit_roundoff": UNIT_ROUNDOFF})
