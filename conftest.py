"""Root conftest: loads the suite's pytest plugin (options --ssm-*, profiles, report)."""
import os
import sys

# Under pytest-xdist (`pytest tests -n auto`) there is one worker process per core: each gets one
# intra-op thread, and so do the CLI runs the meta-tests spawn (they inherit the environment).
# With torch's and OpenBLAS's default of one OpenMP thread per core in every worker, the threads
# outnumbered the cores and spun on tiny tensors: the tests took 663 s instead of 386 s on 2 cores.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "torch" in sys.modules:  # imported before this file by some plugin: set it directly
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

pytest_plugins = ["ssm_conformance.properties.plugin"]
