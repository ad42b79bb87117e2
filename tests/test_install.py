"""Installed as a user installs it (issue 12, "Done when"): ``pip install <checkout>``, not
editable, into a fresh virtual environment, then from an empty directory: the README's "validate
your own kernel" example through ``python -m pytest --ssm-subject ...`` and through the console
script, ``import properties`` fails while ``import ssm_conformance`` works, and
``ssm_conformance.check`` passes a correct kernel and raises on a wrong one inside a user's test.

The venv sees the site-packages of the environment running this test (torch, NumPy, setuptools,
... are not installed again; pip runs with ``--no-index --no-deps --no-build-isolation``: nothing
is downloaded), where this checkout may be installed editable: that install must not leak generic
names either, and the venv must import its own copy of the suite. Not the *base* interpreter's
site-packages (``system_site_packages=True``): run from a virtual environment, that is another
environment, which may lack torch and build with an old setuptools (65.5 has no ``bdist_wheel``
without the ``wheel`` package; issue 19). The build backend comes from the test extra
(``setuptools>=70.1``, which builds wheels by itself).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.cli import ROOT

README = (ROOT / "README.md").read_text()

USER_TEST = '''
import numpy as np
import pytest
from ssm_conformance import check


def my_causal_conv(u, K):
    return np.convolve(u, K)[: len(u)]


def off_by_a_bit(u, K):
    return np.convolve(u, K)[: len(u)] * (1 + 2.0 ** -30)


def test_the_installed_plugin_leaves_my_hypothesis_profile_alone():
    from hypothesis import settings
    assert settings._current_profile in ("default", "ci")  # Hypothesis's own choice


def test_correct_kernel_conforms():
    (row,) = check("causal_conv", my_causal_conv, max_examples=10)
    assert row["verdict"] == "pass" and row["ratio"] <= 1


def test_wrong_kernel_raises_with_the_reproduction():
    with pytest.raises(AssertionError, match="out = off_by_a_bit"):
        check("causal_conv", off_by_a_bit, max_examples=10)
'''


def _readme_block(after: str, lang: str) -> str:
    start = README.index(after)
    match = re.compile(rf"```{lang}\n(.*?)```", re.S).search(README, start)
    return match.group(1)


def _readme_line(prefix: str) -> list[str]:
    (line,) = [line for line in README.splitlines() if line.startswith(prefix)]
    return line.split()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, venv bin dir, an empty user directory) with the checkout installed."""
    base = tmp_path_factory.mktemp("install")
    source = base / "checkout"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", ".hypothesis", ".pytest_cache",
        "report", ".benchmarks"))  # a copy: building writes into the source tree
    env_dir = base / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    _see_this_environment(python)
    proc = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--no-deps",
                           "--no-build-isolation", "--quiet", str(source)],
                          capture_output=True, text=True, timeout=600, env=_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    user = base / "user"
    user.mkdir()
    return python, env_dir / "bin", user


def _see_this_environment(python) -> None:
    """Put this environment's site-packages on the venv's path, after its own, with a .pth file.
    Path lines of a .pth are appended as they are: the .pth files inside them (an editable install
    of this checkout) are not run, so that install cannot leak into the venv."""
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    probe = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    own = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                         check=True, env=_env()).stdout.strip()
    (Path(own) / "_this_environment.pth").write_text("\n".join(ours) + "\n")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env.update(PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    return env


def _run(cmd, cwd, timeout=600):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_env())
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_installed_suite_from_an_empty_directory(installed):
    python, bin_dir, user = installed
    (user / "my_zoh.py").write_text(_readme_block("in `my_zoh.py`:", "python"))
    quick = ["--hypothesis-profile", "dev", "-p", "no:cacheprovider"]

    # the README's example, `python -m pytest --ssm-subject ...`: the installed suite, once
    command = _readme_line("python -m pytest --ssm-subject discretize_zoh=my_zoh.py:zoh")
    status, out = _run([python, *command[1:], *quick], user)
    assert status == 0, out
    assert "plugins: ssm-conformance" in out and "1 passed" in out, out
    report = (user / "report" / "report.json").read_text()
    assert '"role": "discretize_zoh"' in report and '"verdict": "pass"' in report

    # the console script: the same run, the same exit statuses
    script = _readme_line("ssm-conformance discretize_zoh=my_zoh.py:zoh")
    status, out = _run([bin_dir / script[0], *script[1:], *quick], user)
    assert status == 0 and "1 passed" in out, out
    status, out = _run([bin_dir / "ssm-conformance", "no_such_role=my_zoh.py:zoh"], user)
    assert status == 4 and "unknown role 'no_such_role'" in out, out
    status, out = _run([bin_dir / "ssm-conformance", "--help"], user)
    assert status == 0 and "--ssm-subject" in out and "ROLE=TARGET" in out, out

    # one namespace: nothing generic is claimed (neither here nor by an editable install of the
    # checkout in the system site-packages), and the venv imports its own copy
    probe = ("import importlib.util as u, ssm_conformance.properties.plugin as p\n"
             "import ssm_conformance.implementations.cupy._loader as cuda\n"
             "print([n for n in ('properties', 'oracle', 'implementations') if u.find_spec(n)])\n"
             "print(p.__file__)\nprint(cuda.cu_files())\n")
    status, out = _run([python, "-c", probe], user)
    assert status == 0, out
    generic, plugin_file, cuda_sources = out.strip().splitlines()[-3:]
    assert generic == "[]", out
    assert plugin_file.startswith(str(bin_dir.parent)), out
    assert "selective_scan.cu" in cuda_sources, out  # the CUDA sources ship in the wheel
    # torch and the build backend are this environment's, whatever the base interpreter holds
    status, out = _run([python, "-c", "import torch; print(torch.__file__)"], user)
    assert status == 0 and out.strip().startswith(sysconfig.get_paths()["purelib"]), out
    status, out = _run([python, "-c", "import properties"], user)
    assert status != 0 and "No module named 'properties'" in out, out

    # the Python API inside a user's own pytest run
    (user / "test_my_kernel.py").write_text(USER_TEST)
    status, out = _run([python, "-m", "pytest", "test_my_kernel.py", "-q",
                        "-p", "no:cacheprovider"], user)
    assert status == 0 and "3 passed" in out, out
