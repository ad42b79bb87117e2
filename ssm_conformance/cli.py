"""The console script ``ssm-conformance ROLE=TARGET [options]``: pytest on the installed suite.

Each ``ROLE=TARGET`` becomes ``--ssm-subject ROLE=TARGET``; every other argument goes to pytest
unchanged (the ``--ssm-*`` options, ``--hypothesis-profile``, ``-n``, ``-k``, ...). The exit status
is pytest's: 0 every property held, 1 some property failed, 4 usage error, 5 nothing collected.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import sys

PLUGIN = "ssm_conformance.properties.plugin"

USAGE = """\
usage: ssm-conformance ROLE=TARGET [ROLE=TARGET ...] [options]

Runs the installed conformance suite (pytest on the ssm_conformance property modules) against
each TARGET (package.module:attr or path/to/file.py:attr) as ROLE; the same as
`python -m pytest --ssm-subject ROLE=TARGET [options]` from any directory. Without ROLE=TARGET,
the bundled implementations are judged. Any pytest option is accepted as well (e.g.
--hypothesis-profile ci, -n auto with pytest-xdist, -k). Exit status: 0 every property held for
every subject, 1 some property failed, 4 usage error, other values as pytest.
"""

# options whose value may look like ROLE=TARGET (e.g. -o addopts=...): never a subject
_TAKES_VALUE = {"-o", "--override-ini", "-k", "-m"}
_SUBJECT = re.compile(r"^[A-Za-z_]\w*=\S")
# this script imported the package before pytest could mark it for assertion rewriting; the
# property modules are imported later, and rewritten
QUIET_REWRITE = ("ignore:Module already imported so cannot be rewritten; ssm_conformance"
                 ":pytest.PytestAssertRewriteWarning")


def pytest_args(argv: list[str]) -> list[str]:
    """The pytest command line for ``ssm-conformance argv``."""
    args, previous = [], None
    for arg in argv:
        if _SUBJECT.match(arg) and previous not in _TAKES_VALUE:
            args += ["--ssm-subject", arg]
        else:
            args.append(arg)
        previous = arg
    return ["-p", PLUGIN, "-W", QUIET_REWRITE, *args, _properties_dir()]


def _properties_dir() -> str:
    import ssm_conformance.properties as properties
    return os.path.dirname(os.path.abspath(properties.__file__))


def _suite_options_help() -> str:
    """The ``--ssm-*`` section of pytest's --help (so this help never drifts from the options)."""
    import pytest

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        pytest.main(["-p", PLUGIN, "--help"])
    match = re.search(r"^SSM kernel conformance.*?\n(?=\S)", buffer.getvalue(), re.S | re.M)
    return match.group(0) if match else ""


def main(argv: list[str] | None = None) -> int:
    import pytest

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(USAGE)
        print(_suite_options_help())
        print("All pytest options: python -m pytest --help")
        return 0
    return int(pytest.main(pytest_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
