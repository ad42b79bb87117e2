"""Root conftest: loads the suite's pytest plugin (options --ssm-*, profiles, report)."""
import os
import sys

import pytest

# Under pytest-xdist (`pytest tests -n auto`) there is one worker process per core: each gets one
# intra-op thread, and so do the CLI runs the meta-tests spawn (they inherit the environment).
# With torch's and OpenBLAS's default of one OpenMP thread per core in every worker, the threads
# outnumbered the cores and spun on tiny tensors: the tests took 663 s instead of 386 s on 2 cores.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "torch" in sys.modules:  # imported before this file by some plugin: set it directly
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _plugin_autoloaded() -> bool:
    """Whether pytest loads the suite's plugin itself (the installed ``pytest11`` entry point)."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    from importlib.metadata import entry_points
    return any(ep.value == "ssm_conformance.properties.plugin"
               for ep in entry_points(group="pytest11"))


# A checkout that is not installed loads the plugin here. Where it is installed (editable too),
# the entry point loads it, and this file must not say `pytest_plugins`: a run from another
# directory collects the installed properties/ and reaches this file as a non-root conftest,
# where pytest refuses `pytest_plugins`.
if not _plugin_autoloaded():
    pytest_plugins = ["ssm_conformance.properties.plugin"]


# The meta-tests run the suite from its command line and read many verdicts from one run (a
# module-level cache or a module-scoped fixture). Under pytest-xdist each worker has its own
# cache, so with the default `--dist load` the cases of one run spread over the workers and every
# worker repeated the run (the SSD and selective-scan runs, ~150 s each, ran twice). Each run's
# cases form one xdist group and `-n` runs use `--dist loadgroup` unless another mode was asked
# for: a group goes to one worker. A module whose runs are keyed by a parameter names it in
# `XDIST_RUN_KEY` (one group per value: its runs spread over the workers); otherwise the module
# is one group (a module-scoped fixture runs once: grouping it by a parameter ran it per value).
@pytest.hookimpl(tryfirst=True)   # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if not item.module.__name__.rpartition(".")[2].startswith("test_meta_"):
            continue
        key = getattr(item.module, "XDIST_RUN_KEY", None)
        params = getattr(getattr(item, "callspec", None), "params", {})
        run = str(params.get(key, "")) if key else ""
        item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:{run}"))


def pytest_configure(config):
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:   # a worker: it parsed the command line, which may lack --dist
        if workerinput.get("ssm_loadgroup"):
            config.option.loadgroup = True   # xdist names each test by its group
    elif getattr(config.option, "dist", None) == "load" and not any(
            arg.startswith(("--dist", "-d")) for arg in config.invocation_params.args):
        config.option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):   # pytest-xdist, on the controller
    node.workerinput["ssm_loadgroup"] = node.config.getvalue("dist") == "loadgroup"
