"""Judge third-party SSM kernels with the suite and write docs/ecosystem.md.

    python examples/thirdparty/run_ecosystem.py                 # every subject, then the findings
    python examples/thirdparty/run_ecosystem.py --only mamba-ssd,fla-hgrn-chunk
    python examples/thirdparty/run_ecosystem.py --findings-only # re-check the findings alone
    python examples/thirdparty/run_ecosystem.py --render        # docs/ecosystem.md from the JSON

Run from the repository root, in an environment with the optional packages (docs/ecosystem.md
lists them; none is a dependency of the suite). Each subject is judged by the suite's command
line (``python -m pytest properties --ssm-subject ROLE=TARGET ...``) in the ``budget``
Hypothesis profile (10 derandomized examples per property, no shrinking) with its lengths capped
(``--ssm-max-length``): the Triton kernels run under Triton's interpreter
(ssm_conformance.triton_cpu), 10^3-10^4 times slower than compiled. With so few examples a
feature may be drawn always on or never on; the script reads report.json's per-feature counts
and judges the subject once more with each such feature forced on (``--ssm-with``, where the
suite has it) or removed (``--ssm-without``), so every feature the subject is judged on is
seen both on and off. Results accumulate in docs/ecosystem.json (one entry per subject; a rerun
with --only replaces those entries) and docs/ecosystem.md is rendered from it.

Findings (FINDINGS below) are not verdicts of a budget run: each is a minimal reproduction, run
by this script in a fresh interpreter, whose output is recorded next to it.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = "examples/thirdparty"
JSON_PATH = ROOT / "docs" / "ecosystem.json"
MD_PATH = ROOT / "docs" / "ecosystem.md"


@dataclass
class Subject:
    name: str
    kernel: str           # what is judged, as its package names it
    package: str          # distribution whose version is reported
    role: str
    target: str
    triton: bool          # run under Triton's interpreter
    options: list = field(default_factory=list)   # extra suite options
    max_length: int = 256
    note: str = ""
    needs: tuple = ()     # features of the role the subject cannot be judged without leaving out


SUBJECTS = [
    Subject("mamba-ssd", "mamba_chunk_scan_combined (Triton)", "mamba-ssm", "ssd",
            f"{HERE}/mamba_ssm_triton.py:ssd", True, max_length=32,
            note="forward; the Triton backward is not judged (interpreted, too slow)"),
    Subject("mamba-ssu", "selective_state_update (Triton)", "mamba-ssm", "selective_state_update",
            f"{HERE}/mamba_ssm_triton.py:selective_state_update", True,
            note="as shipped: D and dt_bias optional, as the role says"),
    Subject("mamba-ssu-with", "selective_state_update (Triton), --ssm-with D,dt_bias",
            "mamba-ssm", "selective_state_update",
            f"{HERE}/mamba_ssm_triton.py:selective_state_update", True,
            options=["--ssm-with", "D,dt_bias"],
            note="D and dt_bias always given (the finding below): judged on everything else"),
    Subject("mamba-ssu-filled", "selective_state_update (Triton), D/dt_bias zero-filled",
            "mamba-ssm", "selective_state_update",
            f"{HERE}/mamba_ssm_triton.py:selective_state_update_zero_filled", True,
            note="None passed as zeros: judged on everything else"),
    Subject("mamba-selective-scan-ref", "selective_scan_ref (torch)", "mamba-ssm",
            "selective_scan", f"{HERE}/mamba_ssm_refs.py:selective_scan", False,
            options=["--ssm-grad"], max_length=128),
    Subject("causal-conv1d-ref", "causal_conv1d_ref (torch)", "causal-conv1d", "causal_conv1d",
            f"{HERE}/mamba_ssm_refs.py:causal_conv1d", False, options=["--ssm-grad"]),
    Subject("tf-mamba-scan", "Mamba mamba_selective_scan (torch path)", "transformers",
            "selective_scan", f"{HERE}/transformers_mamba.py:selective_scan", False,
            options=["--ssm-grad", "--ssm-without",
                     "complex_A,constant_B,constant_C,grouped_BC"], max_length=128),
    Subject("tf-mamba-ssu", "Mamba mamba_selective_state_update (torch path)", "transformers",
            "selective_state_update", f"{HERE}/transformers_mamba.py:selective_state_update",
            False),
    Subject("tf-mamba-conv1d", "Mamba causal_conv1d_fn (torch path)", "transformers",
            "causal_conv1d", f"{HERE}/transformers_mamba.py:causal_conv1d", False,
            options=["--ssm-grad"]),
    Subject("tf-mamba2-ssd", "Mamba-2 mamba2_chunk_scan (torch path)", "transformers", "ssd",
            f"{HERE}/transformers_mamba.py:ssd", False, options=["--ssm-without", "z"]),
    Subject("tf-mamba2-ssu", "Mamba-2 mamba2_selective_state_update (torch path)",
            "transformers", "selective_state_update",
            f"{HERE}/transformers_mamba.py:mamba2_selective_state_update", False),
    Subject("fla-hgrn-fused", "fused_recurrent_hgrn (Triton)", "fla-core", "linear_scan",
            f"{HERE}/fla_triton.py:linear_scan_fused_recurrent", True,
            options=["--ssm-grad", "--ssm-without", "complex,zero_decay,negative_decay"],
            max_length=128, needs=("zero_decay", "negative_decay")),
    Subject("fla-hgrn-chunk", "chunk_hgrn (Triton)", "fla-core", "linear_scan",
            f"{HERE}/fla_triton.py:linear_scan_chunk", True,
            options=["--ssm-grad", "--ssm-without", "complex,zero_decay,negative_decay"],
            max_length=128, needs=("zero_decay", "negative_decay")),
    Subject("fla-hgrn-fused-bf16", "fused_recurrent_hgrn (Triton), bfloat16", "fla-core",
            "linear_scan", f"{HERE}/fla_triton.py:linear_scan_fused_recurrent", True,
            options=["--ssm-grad", "--ssm-dtype", "bfloat16", "--ssm-without",
                     "complex,zero_decay,negative_decay"], max_length=128,
            needs=("zero_decay", "negative_decay"), note="the control for chunk_hgrn in bfloat16"),
    Subject("fla-hgrn-chunk-bf16", "chunk_hgrn (Triton), bfloat16", "fla-core", "linear_scan",
            f"{HERE}/fla_triton.py:linear_scan_chunk", True,
            options=["--ssm-grad", "--ssm-dtype", "bfloat16", "--ssm-without",
                     "complex,zero_decay,negative_decay"], max_length=128,
            needs=("zero_decay", "negative_decay")),
    Subject("fla-simple-gla", "chunk_simple_gla (Triton) as SSD", "fla-core", "ssd",
            f"{HERE}/fla_triton.py:ssd_simple_gla", True, max_length=96,
            note="q = C, k = dt·B, v = x, g = dt·A; dt transform, D and z in the adapter"),
    Subject("recurrentgemma-rglru", "RGLRU (torch)", "recurrentgemma", "rg_lru",
            f"{HERE}/recurrentgemma_rglru.py:rg_lru", False,
            options=["--ssm-grad", "--ssm-without", "near_one_decay"],
            max_length=256, note="adapter by the rg_lru role's author (that file's docstring)"),
    Subject("torch-sdpa", "scaled_dot_product_attention (CPU)", "torch", "attention",
            f"{HERE}/torch_sdpa.py:attention", False),
]


# --- findings: minimal reproductions a maintainer can paste ----------------------------------------

INTERP = "from ssm_conformance import triton_cpu; triton_cpu.install()  # CPU only: interpreter\n"

FINDINGS = [
    dict(name="mamba-ssu-optional-args", package="mamba-ssm",
         title="Triton selective_state_update raises when D or dt_bias is None",
         text="Both are optional in its signature and in selective_state_update_ref; the "
              "TypeError comes from the wrapper's kernel launch (a `*` unpacking of the missing "
              "argument's strides, which is an int then). Workaround: pass zeros.",
         code=INTERP + textwrap.dedent("""\
             import torch
             from mamba_ssm.ops.triton.selective_state_update import selective_state_update
             b, d, n = 1, 4, 8
             state = torch.zeros(b, d, n); x = torch.ones(b, d); dt = torch.ones(b, d)
             A = -torch.ones(d, n); B = torch.ones(b, n); C = torch.ones(b, n)
             for kw in (dict(D=torch.ones(d), dt_bias=torch.zeros(d)), dict(dt_bias=torch.zeros(d)), dict(D=torch.ones(d))):
                 try:
                     selective_state_update(state.clone(), x, dt, A, B, C, **kw); print(sorted(kw), "ok")
                 except Exception as e:
                     print(sorted(kw), type(e).__name__ + ":", e)
             """)),
    dict(name="mamba-ssd-softplus", package="mamba-ssm",
         title="Triton SSD and selective_state_update: dt_softplus loses relative precision for negative dt",
         text="Both kernels take softplus from mamba_ssm/ops/triton/softplus.py, which on "
              "Triton 3 is log(exp(dt) + 1) in float32 (on Triton 2 it was log1p(exp(dt))); for dt < -8, "
              "exp(dt) + 1 rounds, so softplus(dt) is off by up to ~2^-24/exp(dt) relative "
              "(torch.nn.functional.softplus and log1p(exp(dt)) are exact to a rounding). Mamba-2 "
              "initializes dt_bias so that softplus(dt) is 1e-3..1e-1 (dt >= -7), so trained "
              "models rarely go there, but the role admits any dt. The suite rejects the Triton "
              "selective_state_update for it (subjects above: inaccurate, ratios 10.8 and 11.6, "
              "every failing example with dt_softplus = True); its SSD budget run drew no step "
              "that negative. Fix: log(exp(dt) + 1) -> log1p(exp(dt)).",
         code=INTERP + textwrap.dedent("""\
             import torch
             from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
             dt0 = -10.5
             x = torch.ones(1, 1, 1, 1); dt = torch.full((1, 1, 1), dt0)
             A = -torch.ones(1); B = torch.ones(1, 1, 1, 1); C = torch.ones(1, 1, 1, 1)
             y = mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size=1, dt_softplus=True)
             exact = torch.nn.functional.softplus(torch.tensor(dt0, dtype=torch.float64)).item()
             print("ssd: kernel", y.item(), "exact", exact, "rel err", abs(y.item() - exact) / exact,
                   "float32 u", 2.0 ** -24)
             from mamba_ssm.ops.triton.selective_state_update import selective_state_update
             state = torch.zeros(1, 1, 1)
             out = selective_state_update(state, torch.ones(1, 1), torch.full((1, 1), dt0), -torch.ones(1, 1),
                                          torch.ones(1, 1), torch.ones(1, 1), D=torch.zeros(1),
                                          dt_bias=torch.zeros(1), dt_softplus=True)
             print("selective_state_update: kernel", out.item(), "rel err", abs(out.item() - exact) / exact)
             """)),
    dict(name="selective-scan-ref-strided-complex", package="mamba-ssm",
         title="selective_scan_ref: strided B with complex A raises",
         text="With complex A, variable B/C are (re, im) pairs interleaved along the last axis "
              "and the reference calls torch.view_as_complex on a rearranged view, which needs "
              "a last-axis stride of 1 and even other strides; a dense but transposed B "
              "(a channel-last layout) raises. `.contiguous()` before view_as_complex fixes it.",
         code=textwrap.dedent("""\
             from ssm_conformance import triton_cpu; triton_cpu.install(["cuda_stubs"])
             import torch
             from mamba_ssm.ops.selective_scan_interface import selective_scan_ref
             b, d, n, l = 1, 2, 2, 3
             u = torch.randn(b, d, l); delta = torch.rand(b, d, l)
             A = torch.complex(-torch.rand(d, n), torch.randn(d, n))
             B = torch.randn(b, 2 * l, n).transpose(1, 2)          # (b, n, 2l), strided
             C = torch.randn(b, n, 2 * l)
             try:
                 selective_scan_ref(u, delta, A, B, C); print("ok")
             except Exception as e:
                 print(type(e).__name__ + ":", e)
             print("contiguous B:", selective_scan_ref(u, delta, A, B.contiguous(), C).shape)
             """)),
    dict(name="tf-mamba2-D-hp", package="transformers",
         title="transformers Mamba-2 torch path: D of shape (h, p) fails",
         text="mamba2_chunk_scan computes `D[..., None] * x`, right for D (h,) only; "
              "mamba_chunk_scan_combined also takes D (h, p) (Mamba2 with D_has_hdim=True). "
              "`(D[..., None] if D.dim() == 1 else D) * x` fixes it.",
         code=textwrap.dedent("""\
             import torch
             from transformers.models.mamba2.modeling_mamba2 import mamba2_chunk_scan
             b, l, h, p, n = 1, 4, 2, 3, 2
             x = torch.randn(b, l, h, p); dt = torch.rand(b, l, h); A = -torch.rand(h)
             B = torch.randn(b, l, 1, n); C = torch.randn(b, l, 1, n)
             print("D (h,):", mamba2_chunk_scan(x, dt, A, B, C, 2, D=torch.randn(h)).shape)
             try:
                 mamba2_chunk_scan(x, dt, A, B, C, 2, D=torch.randn(h, p)); print("D (h, p): ok")
             except Exception as e:
                 print("D (h, p):", type(e).__name__ + ":", e)
             """)),
    dict(name="fla-hgrn-bf16-backward", package="fla-core",
         from_subject=("fla-hgrn-fused-bf16", "fla-hgrn-chunk-bf16"),
         title="fla HGRN (fused_recurrent_hgrn and chunk_hgrn): bfloat16 backward beyond the error bound",
         text="Both autograd Functions save the forward's output o (bfloat16) and the backward "
              "reads h_{t-1} from it, so each dg_t = dh_t·h_{t-1}·a_t carries a bf16 rounding of "
              "h that the fp32-accumulating forward never made; the forward passes. Saving h in "
              "fp32 (or recomputing it) fixes it. The verdicts and reproductions are the suite's "
              "(commands below; the interpreter with the bf16_rtne shim, without which even the "
              "forward fails for the interpreter's sake)."),
    dict(name="triton-interpreter-bugs", package="triton",
         title="Triton's interpreter: bf16 casts truncate, scalar comparisons splat as ints, loop variables are ints",
         text="Three differences from compiled Triton found while running the kernels above "
              "under TRITON_INTERPRET=1 (ssm_conformance.triton_cpu works around each): "
              "float32 -> bfloat16 `.to()` rounds toward zero instead of to nearest even; "
              "`mask & (i < T)` with a scalar comparison is an int block ('mask has unsupported "
              "dtype'); `for i in range(n)` gives a Python int ('int' object has no attribute "
              "'to'). Reproduction without the shims:",
         code=textwrap.dedent("""\
             import os; os.environ["TRITON_INTERPRET"] = "1"
             import torch, triton, triton.language as tl
             @triton.jit
             def cast(x_ptr, y_ptr, N: tl.constexpr):
                 o = tl.arange(0, N); tl.store(y_ptr + o, tl.load(x_ptr + o).to(tl.bfloat16))
             @triton.jit
             def masked(x_ptr, y_ptr, T, N: tl.constexpr):
                 o = tl.arange(0, N); m = (o < N) & (2 < T); tl.store(y_ptr + o, tl.load(x_ptr + o, mask=m), mask=m)
             @triton.jit
             def loop(x_ptr, N: tl.constexpr):
                 for i in range(2):
                     tl.store(x_ptr + i.to(tl.int64), 1.0)
             x = torch.tensor([1 + 2**-8 + 2**-10, 0.127874311]); y = torch.empty(2, dtype=torch.bfloat16)
             cast[(1,)](x, y, N=2); print("bf16 cast:", y.tolist(), "torch:", x.bfloat16().tolist())
             for name, run in (("scalar mask", lambda: masked[(1,)](x, x.clone(), 3, N=2)), ("loop variable", lambda: loop[(1,)](x.clone(), N=2))):
                 try:
                     run(); print(name, "ok")
                 except Exception as e:
                     print(name + ":", type(e).__name__, e)
             """)),
    dict(name="torch-sdpa-causal-scale", package="torch",
         title="torch CPU scaled_dot_product_attention: NaN for causal with scale <= 0",
         text="With is_causal=True and scale=0 (or negative), the CPU kernel returns NaN where "
              "softmax is well defined (scale 0: the mean of the visible values); the math "
              "written out (q·scale @ kᵀ, masked_fill(-inf), softmax) is right. The cause inside "
              "the CPU kernel was not traced (a masked maximum that assumes scale > 0 would do "
              "it). The suite's attention properties reject it (non_finite, subject above).",
         code=textwrap.dedent("""\
             import torch
             torch.manual_seed(0)
             q, k, v = (torch.randn(1, 1, 4, 2) for _ in range(3))
             for scale in (1.0, 0.0, -1.0):
                 out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
                 mask = torch.ones(4, 4, dtype=torch.bool).tril()
                 ref = torch.softmax((q @ k.transpose(-1, -2) * scale).masked_fill(~mask, float("-inf")), -1) @ v
                 print("scale", scale, "NaN:", out.isnan().any().item(), "max err", (out - ref).abs().nan_to_num(float("inf")).max().item())
             """)),
]


# --- running -----------------------------------------------------------------------------------

def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _suite_has_option(option: str) -> bool:
    out = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=ROOT,
                         capture_output=True, text=True).stdout
    return re.search(re.escape(option) + r"[ =,]", out) is not None


def _role_features(role: str) -> tuple:
    from ssm_conformance.properties.roles import ROLES
    return ROLES[role].features


def _suite_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    return out or "unknown"


def _cannot_judge(subject: Subject) -> str:
    """Why this version of the suite (or this checkout) cannot judge ``subject``; "" if it can."""
    from ssm_conformance.properties.roles import ROLES
    if subject.role not in ROLES or not ROLES[subject.role].bundled:
        return f"this version of the suite has no role {subject.role}"
    if not (ROOT / subject.target.split(":")[0]).exists() and subject.target.startswith(HERE):
        return f"{subject.target.split(':')[0]} is not in this checkout"
    if "--ssm-with" in subject.options and not _suite_has_option("--ssm-with"):
        return "this version of the suite has no --ssm-with"
    missing = [f for f in subject.needs if f not in ROLES[subject.role].features]
    if missing:
        return (f"the subject must be judged without {', '.join(missing)}, features this "
                f"version of the suite does not have yet")
    return ""


def _split_options(options):
    """(other options, --ssm-without set, --ssm-with set)."""
    rest, without, with_ = [], set(), set()
    it = iter(options)
    for opt in it:
        if opt in ("--ssm-without", "--ssm-with"):
            (without if opt == "--ssm-without" else with_).update(next(it).split(","))
        else:
            rest.append(opt)
    return rest, without, with_


def _suite_run(subject: Subject, rest, without, with_, timeout):
    """One suite run; returns (status, report or None, seconds, command, output tail)."""
    known = set(_role_features(subject.role))
    dropped = sorted((without | with_) - known)
    cmd = [sys.executable, "-m", "pytest", "properties", "-p", "no:cacheprovider", "-q",
           "--hypothesis-profile", "budget", "--ssm-subject", f"{subject.role}={subject.target}",
           "--ssm-max-length", str(subject.max_length), *rest]
    if subject.triton:   # interpreted: one call on a few hundred steps may take minutes
        cmd += ["--ssm-call-timeout", "600"]
    if without & known:
        cmd += ["--ssm-without", ",".join(sorted(without & known))]
    if with_ & known:
        cmd += ["--ssm-with", ",".join(sorted(with_ & known))]
    with tempfile.TemporaryDirectory() as report_dir:
        cmd_shown = " ".join(cmd[1:]) + " --ssm-report DIR"
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        start = time.time()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            proc = subprocess.run(cmd + ["--ssm-report", report_dir], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=timeout)
            status, tail = proc.returncode, (proc.stdout + proc.stderr)[-4000:]
        except subprocess.TimeoutExpired:
            status, tail = "timeout", f"no verdict within {timeout} s"
        seconds = time.time() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        path = Path(report_dir) / "report.json"
        report = json.loads(path.read_text()) if path.exists() else None
    return status, report, (seconds, cpu), "python " + cmd_shown, tail, dropped


def _coverage(rows, features):
    """feature -> (examples with it on, examples judged), summed over the rows."""
    total = sum(r["examples"] for r in rows)
    return {f: (sum(r["feature_examples"].get(f, 0) for r in rows), total) for f in features}


def judge(subject: Subject, timeout: float, has_with: bool) -> dict:
    rest, without, with_ = _split_options(subject.options)
    runs = []
    status, report, seconds, cmd, tail, dropped = _suite_run(subject, rest, without, with_, timeout)
    runs.append(dict(cmd=cmd, status=status, seconds=round(seconds[0], 1),
                     cpu_seconds=round(seconds[1], 1), report=report, tail=tail))
    rows = report["results"] if report else []
    features = [f for f in _role_features(subject.role) if f not in without]
    cov = _coverage(rows, features)
    never_on = [f for f, (on, n) in cov.items() if on == 0 and f not in with_]
    always_on = [f for f, (on, n) in cov.items() if n and on == n]
    followups = []
    failed = any(r["verdict"] == "fail" for r in rows)   # a failure is a verdict: no rerun
    if failed:
        never_on = always_on = []
    if rows and never_on and has_with:
        followups.append((rest, without, with_ | set(never_on), f"forced on: {','.join(never_on)}"))
    if rows and always_on:
        followups.append((rest, without | set(always_on), with_, f"left out: {','.join(always_on)}"))
    for f_rest, f_without, f_with, why in followups:
        status2, report2, seconds2, cmd2, tail2, _ = _suite_run(subject, f_rest, f_without, f_with,
                                                                timeout)
        runs.append(dict(cmd=cmd2, status=status2, seconds=round(seconds2[0], 1),
                         cpu_seconds=round(seconds2[1], 1), report=report2, tail=tail2, why=why))
    return dict(name=subject.name, kernel=subject.kernel, package=subject.package,
                version=_version(subject.package), role=subject.role, target=subject.target,
                triton=subject.triton, note=subject.note, options=subject.options,
                max_length=subject.max_length, dropped_options=dropped, suite=_suite_commit(),
                never_on_unforced=never_on if not has_with else [],
                runs=[_summary(r) for r in runs],
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _summary(run):
    rows = run["report"]["results"] if run["report"] else []
    failed = [r for r in rows if r["verdict"] == "fail"]
    ratios = [r["max_ratio"] for r in rows if isinstance(r["max_ratio"], (int, float))]
    features = sorted({f for r in rows for f in r["features_exercised"]})
    out = dict(cmd=run["cmd"], status=run["status"], seconds=run["seconds"],
               cpu_seconds=run.get("cpu_seconds"), why=run.get("why", ""),
               verdict=("FAIL" if failed else "PASS") if rows and run["status"] in (0, 1)
               else f"no verdict (status {run['status']})",
               worst_ratio=max(ratios) if ratios else None,
               properties=len({r["property"] for r in rows}),
               examples=sum(r["examples"] for r in rows),
               features=features,
               coverage={f: v for f, v in _coverage(rows, features).items()},
               longest=max([r["longest_length"] or 0 for r in rows], default=0),
               failures=[dict(property=r["property"], dtype=r["dtype"], kind=r["failure_kind"],
                              ratio=r["max_ratio"], message=r["message"]) for r in failed])
    if not rows:
        out["tail"] = run["tail"][-1500:]
    return out


def run_finding(finding: dict, timeout: float, data: dict) -> dict:
    if finding.get("from_subject"):
        codes, outputs = [], []
        for name in finding["from_subject"]:
            subject = data["subjects"].get(name)
            if subject is None or not subject["runs"]:
                outputs.append(f"{name}: not judged")
                continue
            run = subject["runs"][0]
            codes.append(run["cmd"])
            outputs += [f"{name}: {run['verdict']}"] + [
                "\n".join(f["message"].splitlines()[:2] + f["message"].splitlines()[-5:-1])
                for f in run["failures"]]
        return dict(finding, code="\n".join(codes), output="\n\n".join(outputs) or "(none)",
                    version=_version(finding["package"]), seconds=0, lang="sh")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    start = time.time()
    try:
        proc = subprocess.run([sys.executable, "-c", finding["code"]], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
        out = proc.stdout.strip() or proc.stderr.strip()[-1500:]
    except subprocess.TimeoutExpired:
        out = f"(no answer within {timeout} s)"
    lines = [ln for ln in out.splitlines() if "UserWarning" not in ln and "_cpu_device_warning" not in ln
             and "falling back" not in ln]
    return dict(finding, output="\n".join(lines), version=_version(finding["package"]),
                seconds=round(time.time() - start, 1))


# --- rendering -----------------------------------------------------------------------------------

def _fmt_seconds(x):
    return "—" if x is None else f"{x:.0f}"


def _fmt_ratio(x):
    return "—" if x is None else f"{x:.3g}"


def render(data: dict) -> str:
    subjects = [data["subjects"][s.name] for s in SUBJECTS if s.name in data["subjects"]]
    lines = [
        "# The ecosystem: third-party SSM kernels judged by the suite",
        "",
        "Written by `examples/thirdparty/run_ecosystem.py` (from docs/ecosystem.json; rerun it to "
        "refresh). Machine: a shared 2-core CPU, torch "
        f"{_version('torch')} CPU, triton {_version('triton')}; no GPU. Triton kernels run under "
        "Triton's interpreter (`TRITON_INTERPRET=1`, with the shims of "
        "`ssm_conformance.triton_cpu`, docs/triton_cpu.md): their verdicts are the interpreter's "
        "arithmetic (float32 NumPy), which follows the kernel's order of operations but not a "
        "GPU's fused multiply-adds or approximate transcendental functions. Budget runs: the "
        "`budget` Hypothesis profile (10 derandomized examples per property, no shrinking) with "
        "lengths capped (`--ssm-max-length`, column *cap*): a verdict on what was drawn, not a "
        "certification; `PASS` is no proof, `FAIL` is a real failure with its reproduction.",
        "",
        "Adapters (optional dependencies, nothing vendored): `examples/thirdparty/*.py`, each "
        "file's docstring says what it calls and what it adapts. Setup used here (a venv over "
        "the system torch; never let pip pull another torch):",
        "",
        "```sh",
        "python -m venv --system-site-packages /work/venv-triton",
        "pip install --no-deps triton==3.9.0 fla-core==0.6.0 transformers einops",
        "pip install huggingface_hub tokenizers safetensors regex pyyaml tqdm  # transformers' imports",
        "pip install wheel ninja",
        "MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE pip install --no-build-isolation --no-deps mamba-ssm==2.3.2.post1",
        "CAUSAL_CONV1D_FORCE_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE pip install --no-build-isolation --no-deps causal-conv1d==1.7.0",
        "python examples/thirdparty/run_ecosystem.py",
        "```",
        "",
        "| kernel | package | version | role | options | cap | verdict | worst err/tol | wall s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in subjects:
        if s.get("not_judged"):
            lines.append(f"| {s['kernel']} | {s['package']} | {s['version']} | {s['role']} | "
                         f"`{' '.join(s['options']) or '—'}` | {s['max_length']} | not judged: "
                         f"{s['not_judged']} | — | — | — |")
        for i, run in enumerate(s["runs"]):
            label = s["kernel"] if i == 0 else f"↳ rerun, {run['why']}"
            opts = " ".join(s["options"]) or "—"
            if i:
                opts = "(as above) " + run["why"]
            verdict = run["verdict"]
            if run["failures"]:
                kinds = sorted({f["kind"] for f in run["failures"]})
                verdict += f" ({', '.join(kinds)}: {len(run['failures'])} of {run['properties']} properties)"
            lines.append(f"| {label} | {s['package'] if i == 0 else ''} | "
                         f"{s['version'] if i == 0 else ''} | {s['role'] if i == 0 else ''} | "
                         f"`{opts}` | {s['max_length']} | {verdict} | "
                         f"{_fmt_ratio(run['worst_ratio'])} | {run['seconds']:.0f} | "
                         f"{_fmt_seconds(run.get('cpu_seconds'))} |")
    judged = [s for s in subjects if s["runs"] and s["runs"][0]["verdict"] in ("PASS", "FAIL")]
    kernels = {(s["package"], s["kernel"].split(" (")[0]) for s in judged}
    triton = {(s["package"], s["kernel"].split(" (")[0]) for s in judged if s["triton"]}
    lines += ["", f"{len(judged)} subjects with a verdict: {len(kernels)} distinct third-party "
              f"kernels, {len(triton)} of them Triton kernels run under the interpreter; "
              f"{sum(s['runs'][0]['verdict'] == 'PASS' for s in judged)} pass, "
              f"{sum(s['runs'][0]['verdict'] == 'FAIL' for s in judged)} fail (first run of each).",
              "", "## What each run covered", ""]
    for s in subjects:
        lines.append(f"### {s['kernel']} (`{s['target']}`)")
        lines.append("")
        if s["note"]:
            lines.append(f"{s['note']}.")
            lines.append("")
        if s.get("suite"):
            lines.append(f"Suite at commit {s['suite']}.")
            lines.append("")
        if s.get("dropped_options"):
            lines.append(f"Features this suite version does not have yet (not passed): "
                         f"{', '.join(s['dropped_options'])}.")
            lines.append("")
        if s.get("never_on_unforced"):
            lines.append(f"Never drawn on, and this suite has no `--ssm-with` to force them: "
                         f"{', '.join(s['never_on_unforced'])}.")
            lines.append("")
        for run in s["runs"]:
            cov = ", ".join(f"{f} {on}/{n}" for f, (on, n) in run["coverage"].items()) or "—"
            lines.append(f"- `{run['cmd']}`: {run['verdict']}, {run['properties']} properties, "
                         f"{run['examples']} judged examples, longest length {run['longest']}, "
                         f"{run['seconds']:.0f} s; features on in (examples/judged): {cov}.")
            for f in run["failures"]:
                msg = f["message"].strip().splitlines()
                first = msg[:4] + ["..."] + msg[-4:] if len(msg) > 8 else msg
                lines.append(f"  - {f['property']} / {f['dtype']}: {f['kind']} "
                             f"(ratio {_fmt_ratio(f['ratio']) if not isinstance(f['ratio'], str) else f['ratio']})")
                lines.append("")
                lines.append("    ```")
                lines += ["    " + ln for ln in first]
                lines.append("    ```")
            if run.get("tail"):
                lines.append("")
                lines.append("    ```")
                lines += ["    " + ln for ln in run["tail"].strip().splitlines()[-8:]]
                lines.append("    ```")
        lines.append("")
    lines += ["## Findings", "",
              "Each with a reproduction to paste (in a checkout with the suite importable; the "
              "`triton_cpu.install()` line is for a CPU machine, drop it on a GPU with the tensors "
              "on `cuda`), and the output it gave here.", ""]
    for f in data.get("findings", {}).values():
        if not f.get("code"):
            lines += [f"### {f['title']} ({f['package']} {f['version']})", "", f["text"], "",
                      f"Not reproduced in this run: {f['output']}", ""]
            continue
        lines += [f"### {f['title']} ({f['package']} {f['version']})", "", f["text"], "",
                  "```" + f.get("lang", "python"), f["code"].rstrip(), "```", "", "Output here:", "", "```",
                  f["output"].rstrip(), "```", ""]
    return "\n".join(lines) + "\n"


def _save(data, subject=None, finding=None):
    """Write one entry into docs/ecosystem.json as it is on disk now (several runs with
    different --only may share the file)."""
    disk = json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else {}
    disk.setdefault("subjects", {})
    disk.setdefault("findings", {})
    if subject:
        disk["subjects"][subject] = data["subjects"][subject]
    if finding:
        disk["findings"][finding] = data["findings"][finding]
    tmp = JSON_PATH.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(disk, indent=1) + "\n")
    tmp.replace(JSON_PATH)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated subject names")
    parser.add_argument("--findings-only", action="store_true")
    parser.add_argument("--no-findings", action="store_true")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/ecosystem.md")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per suite run")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for s in SUBJECTS:
            print(f"{s.name:26} {s.role:24} {s.target}")
        return 0
    data = json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else {}
    data.setdefault("subjects", {})
    data.setdefault("findings", {})
    if not args.render:
        names = [n for n in args.only.split(",") if n]
        unknown = set(names) - {s.name for s in SUBJECTS}
        if unknown:
            parser.error(f"--only: unknown subject {', '.join(sorted(unknown))} (see --list)")
        if not args.findings_only:
            has_with = _suite_has_option("--ssm-with")
            for s in SUBJECTS:
                if names and s.name not in names:
                    continue
                why_not = _cannot_judge(s)
                if why_not:
                    print(f"not judging {s.name}: {why_not}", flush=True)
                    data["subjects"][s.name] = dict(
                        name=s.name, kernel=s.kernel, package=s.package,
                        version=_version(s.package), role=s.role, target=s.target,
                        triton=s.triton, note=s.note, options=s.options,
                        max_length=s.max_length, not_judged=why_not, runs=[])
                    _save(data, subject=s.name)
                    continue
                print(f"judging {s.name} ...", flush=True)
                data["subjects"][s.name] = judge(s, args.timeout, has_with)
                print("  " + ", ".join(f"{r['verdict']} {_fmt_ratio(r['worst_ratio'])} "
                                       f"{r['seconds']:.0f}s" for r in data["subjects"][s.name]["runs"]),
                      flush=True)
                _save(data, subject=s.name)
        if not args.no_findings and (args.findings_only or not names):
            for f in FINDINGS:
                print(f"finding {f['name']} ...", flush=True)
                data["findings"][f["name"]] = run_finding(f, args.timeout, data)
                print("  " + data["findings"][f["name"]]["output"].replace("\n", "\n  "), flush=True)
                _save(data, finding=f["name"])
        data = json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else data
    for f in FINDINGS:   # those read from a subject's verdict: from the latest verdicts
        if f.get("from_subject"):
            data["findings"][f["name"]] = run_finding(f, args.timeout, data)
    data["findings"] = {f["name"]: dict(data["findings"][f["name"]], title=f["title"],
                                        text=f["text"])   # wording edits need no rerun
                        for f in FINDINGS if f["name"] in data["findings"]}
    MD_PATH.write_text(render(data))
    print(f"wrote {MD_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
