"""Running the suite's command line as a user would, for the harness and meta-tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    status: int
    output: str
    report: dict | None

    def results(self, subject_suffix: str) -> list[dict]:
        """Report rows whose subject target ends with ``subject_suffix``."""
        return [r for r in self.report["results"] if r["subject"].endswith(subject_suffix)]

    def verdict(self, subject_suffix: str) -> tuple[str, str | None]:
        rows = self.results(subject_suffix)
        assert rows, f"no report row for {subject_suffix}:\n{self.output[-3000:]}"
        failed = [r for r in rows if r["verdict"] == "fail"]
        if failed:
            return "fail", failed[0]["failure_kind"]
        return rows[0]["verdict"], None


def run_suite(*args: str, report_dir=None, profile: str = "ci", timeout: float = 900,
              cwd=ROOT) -> Run:
    """``python -m pytest properties ARGS`` in a fresh process; the report parsed if written."""
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "properties"), "-p", "no:cacheprovider",
           "-q", "--hypothesis-profile", profile, *args]
    if report_dir is not None:
        cmd += ["--ssm-report", str(report_dir)]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    report = None
    if report_dir is not None and (Path(report_dir) / "report.json").exists():
        report = json.loads((Path(report_dir) / "report.json").read_text())
    return Run(proc.returncode, proc.stdout + proc.stderr, report)


def subjects_of(module, prefix: str) -> list[str]:
    """Module-level functions of ``module`` whose names start with ``prefix``."""
    return sorted(name for name, obj in vars(module).items()
                  if name.startswith(prefix) and callable(obj) and not name.startswith("_"))


def property_tests(role: str) -> dict[str, str]:
    """property -> the node id of the role's property test ('properties/test_x.py::test_fn'), read
    from the ``ssm_role`` marks of the suite's property modules."""
    import importlib
    import pkgutil

    from ssm_conformance import properties
    found = {}
    for info in pkgutil.iter_modules(properties.__path__):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"ssm_conformance.properties.{info.name}")
        for name, fn in vars(module).items():
            for mark in getattr(fn, "pytestmark", ()):
                if mark.name == "ssm_role" and mark.args[0] == role:
                    found[mark.kwargs["property"]] = f"properties/{info.name}.py::{name}"
    return found


def deselect_all_but(role: str, keep: dict[str, set]) -> list[str]:
    """``--deselect`` arguments: for each target of ``keep`` (target -> properties), the role's
    other properties on that target are not run. A wrong subject's meta-test asserts what its
    catching properties say; the other properties judge it independently and only cost time."""
    args = []
    for prop, node in property_tests(role).items():
        for target, props in keep.items():
            if prop not in props:
                args += ["--deselect", f"{node}[{target}-"]   # a node id prefix: every dtype
    return args
