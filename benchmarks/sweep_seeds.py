"""Sweep Hypothesis seeds over the sequence roles' properties on the bundled kernels.

    OMP_NUM_THREADS=1 python benchmarks/sweep_seeds.py --seeds 0:3 [--dtypes float32,bfloat16]
        [--roles linear_scan,...] [--max-length L] [--examples N] [--all-properties]

For each seed S, role and dtype, one run of ``python -m pytest properties/test_<role>.py
--ssm-grad --ssm-dtype DTYPE --hypothesis-seed S`` (by default only the oracle properties,
``-k matches_oracle``: forward ``matches_oracle`` and, with --ssm-grad, ``vjp_matches_oracle``,
the two the precision verdict judges), then a table: role, dtype, direction (forward / grad),
seeds passed, worst err/tol, worst precision ratio (properties/precision.py; <= 1 passes).

The seed: the ``ci`` profile is derandomized (``derandomize=True``), and Hypothesis then draws the
same examples whatever ``--hypothesis-seed`` says (checked: the same five integers for seeds 1 and
2). The sweep therefore registers its own profile, ``sweep``: the suite's ``dev`` settings
(not derandomized) with ``--examples`` examples per property and no example database (a database
would replay one seed's examples in the next), which honours the seed. The explicit examples
(every profile's long cases) are the same for every seed; ``--max-length`` caps them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = {"linear_scan": "test_scan", "selective_scan": "test_selective_scan",
           "selective_state_update": "test_state_update", "ssd": "test_ssd",
           "causal_conv1d": "test_causal_conv1d", "attention": "test_attention"}
PROFILE_PLUGIN = '''
from hypothesis import settings
import ssm_conformance.properties.plugin  # noqa: F401 - registers dev
settings.register_profile("sweep", parent=settings.get_profile("dev"), max_examples={n},
                          database=None, derandomize=False)
'''


def seed_range(text: str) -> list[int]:
    if ":" in text:
        lo, hi = text.split(":")
        return list(range(int(lo), int(hi)))
    return [int(s) for s in text.split(",")]


def run_one(role, dtype, seed, args, plugin_dir) -> tuple[list[dict], float, int]:
    report_dir = tempfile.mkdtemp(prefix=f"sweep-{role}-{dtype}-{seed}-")
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "properties" / f"{MODULES[role]}.py"),
           "-q", "-p", "no:cacheprovider", "-p", "sweep_profile", "--hypothesis-profile",
           "sweep", "--hypothesis-seed", str(seed), "--ssm-dtype", dtype, "--ssm-grad",
           "--ssm-report", report_dir]
    if not args.all_properties:
        cmd += ["-k", "matches_oracle"]
    if args.max_length:
        cmd += ["--ssm-max-length", str(args.max_length)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), plugin_dir,
                                                        os.environ.get("PYTHONPATH", "")]))
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    path = Path(report_dir) / "report.json"
    rows = json.loads(path.read_text())["results"] if path.exists() else []
    if not rows:
        print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
    return rows, time.time() - start, proc.returncode


def _num(x) -> float:
    return float("inf") if isinstance(x, str) else float(x)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0:3", help="a:b (range) or a,b,c (default 0:3)")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--roles", default=",".join(MODULES))
    ap.add_argument("--max-length", type=int, default=None, help="--ssm-max-length for each run")
    ap.add_argument("--examples", type=int, default=25, help="drawn examples per property")
    ap.add_argument("--all-properties", action="store_true",
                    help="every property of the roles, not only the oracle properties")
    ap.add_argument("--json", default=None, help="also write the per-run rows here")
    args = ap.parse_args()
    plugin_dir = tempfile.mkdtemp(prefix="sweep-profile-")
    Path(plugin_dir, "sweep_profile.py").write_text(PROFILE_PLUGIN.format(n=args.examples))
    table: dict[tuple, dict] = {}
    runs = []
    for seed in seed_range(args.seeds):
        for role in args.roles.split(","):
            for dtype in args.dtypes.split(","):
                rows, seconds, status = run_one(role, dtype, seed, args, plugin_dir)
                runs.append({"seed": seed, "role": role, "dtype": dtype, "status": status,
                             "seconds": round(seconds, 1), "rows": rows})
                print(f"seed {seed} {role} {dtype}: exit {status}, {seconds:.0f} s",
                      file=sys.stderr, flush=True)
                by_direction: dict[str, list] = {}
                for r in rows:
                    if r["verdict"] == "skip":
                        continue
                    direction = "grad" if r["property"].startswith("vjp") else (
                        "forward" if r["property"] == "matches_oracle" else r["property"])
                    by_direction.setdefault(direction, []).append(r)
                for direction, rs in by_direction.items():
                    t = table.setdefault((role, dtype, direction), {
                        "seeds": 0, "passed": 0, "err_tol": 0.0, "precision": 0.0,
                        "failures": []})
                    t["seeds"] += 1
                    ok = all(r["verdict"] == "pass" for r in rs)
                    t["passed"] += ok
                    t["err_tol"] = max(t["err_tol"], max(_num(r["max_ratio"]) for r in rs))
                    prec = [_num(r["precision"]["max_precision_ratio"]) for r in rs
                            if r.get("precision")]
                    t["precision"] = max([t["precision"]] + prec)
                    t["failures"] += [f"seed {seed} {r['subject'].split(':')[-1]}: "
                                      f"{r['failure_kind']}" for r in rs if r["verdict"] == "fail"]
    print("| role | dtype | direction | seeds passed | worst err/tol | worst precision ratio |"
          " failures |")
    print("|---|---|---|---|---|---|---|")
    for (role, dtype, direction), t in sorted(table.items()):
        print(f"| {role} | {dtype} | {direction} | {t['passed']}/{t['seeds']} | "
              f"{t['err_tol']:.3g} | {t['precision']:.3g} | "
              f"{'; '.join(t['failures']) or '-'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return 0 if all(t["passed"] == t["seeds"] for t in table.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
