"""What the run found, per (role, subject, property, dtype): written as report.json (schema below),
report.md (a table for people and CI job summaries), PNG plots of error/tolerance against input
size, and a short table after pytest's own summary.

report.json schema ("ssm-conformance-report/1"; fields are only ever added to it):
{
  "schema": "ssm-conformance-report/1",
  "created": ISO-8601 time, "command": [argv...], "exit_status": int,
  "hypothesis_profile": str, "conformant": bool (every property held for every subject),
  "options": {"subjects": {role: [target...]}, "bundled": bool, "dtypes": [...],
              "device": str, "without": [...], "with": [...] (--ssm-with), "grad": bool, "call_timeout_s": float,
              "max_length": int | null (--ssm-max-length: sequence lengths capped at it)},
  "length_capped_at": int | null (the same cap: a capped run is no verdict at longer lengths),
  "longest_length": {role: int} (longest sequence length judged per role; roles whose cases
                    have no length: the largest input size),
  "tolerance": {"safety": float, "unit_roundoff": {dtype: u}},
  "results": [{
      "role", "subject", "property", "dtype", "device",
      "verdict": "pass" | "fail" | "skip",
      "failure_kind": null | "inaccurate" | "raised" | "hang" | "wrong_shape" | "wrong_dtype"
                      | "wrong_type" | "wrong_structure" | "wrong_device" | "non_finite"
                      | "mutated_input" | "nondeterministic" | "no_backward" | "error",
      "message": str (the failure with its minimal reproduction; "" on pass),
      "examples": int (calls judged, shrinking included),
      "features_exercised": [...], "features_left_out": [...] (by --ssm-without),
      "features_forced": [...] (by --ssm-with: drawn in every example),
      "features_not_drawn": [...] (in the input space but never drawn: a gap in the strategy),
      "feature_examples": {feature: int} (judged examples that exercised each feature),
      "max_ratio": float (largest error/tolerance; conformance means <= 1),
      "max_abs_error": float, "max_rel_error": float,
      "longest_length": int (longest sequence length judged; input size where no length),
      "worst_example": {"size": int, "length": int, "ratio": float, "case": str,
                        "reproduction": str} | null
                       (a failed property: the failing example its message shows, shrunk by
                       Hypothesis; otherwise the example with the largest ratio. "case": its
                       summary (shapes, kinds, features; a long input: the seeded call that
                       rebuilds it). "reproduction": Python source that rebuilds the inputs; a
                       passing property's is inlined only up to MAX_INLINE characters, else it
                       is a comment saying so: report.json stays small),
      "duration_s": float,
      "first_call_s": float | null (the subject's first call, its JIT warm-up: not limited by
                      the per-call limit alone, properties/subjects.py),
      "max_warmup_s": float (its slowest first call on a new argument signature),
      "precision": null (not judged by the precision verdict: not a sequence role's
                   matches_oracle / vjp_matches_oracle, or --ssm-precision-factor off) |
                   {"examples": int, "duration_s": float (the verdict's share of the row's
                    duration_s: the panel's cost), "max_precision_ratio": float (err_row / (K panel_row +
                    floor_row), largest over rows and examples; <= 1 passes),
                    "bits_lost_at_worst": float (log2(err / panel err) on that row),
                    "max_bits_lost": float,
                    "unjudged_bits_by_tier": {"l < 2^8" | "2^8 <= l < 2^11" | "2^11 <= l < 2^14"
                        | "l >= 2^14": {"examples", "median", "min", "max"} of log2(tolerance /
                        panel error), each example's median over rows} (properties/precision.py)}
  }]
}
(options also carry "precision_factor": K, or null for off.)
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field

SCHEMA = "ssm-conformance-report/1"
# A passing property's worst example is inlined in report.json up to this many characters of
# source (a long SSD input is ~130 KB of numbers: the report of one passing run was 204 KB);
# a failure's reproduction is always given in full (its message holds it too).
MAX_INLINE = 4000


@dataclass
class Entry:
    role: str
    subject: str
    property: str
    dtype: str
    device: str
    role_features: tuple = ()
    verdict: str = "pass"
    failure_kind: str | None = None
    message: str = ""
    examples: int = 0
    features: Counter = field(default_factory=Counter)   # feature -> examples exercising it
    max_ratio: float = 0.0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst: dict | None = None
    last: dict | None = None  # the example judged last (a failure's: the shrunk one it shows)
    points: list = field(default_factory=list)  # (length, ratio) for the plots
    longest_length: int = 0
    by_length: bool = False  # cases carry a sequence length (else: input size)
    duration_s: float = 0.0
    first_call_s: float | None = None  # the subject's first call (its warm-up), properties/subjects.py
    max_warmup_s: float = 0.0  # its slowest first call on a new argument signature
    # the precision verdict (properties/precision.py): (length, precision ratio, bits lost,
    # bits the bound leaves unjudged = log2(tolerance / panel error), median over rows)
    precision_points: list = field(default_factory=list)
    max_precision_ratio: float = 0.0
    worst_bits_lost: float | None = None   # at the example with the largest precision ratio
    precision_s: float = 0.0   # time spent on the precision verdict (its panel), in duration_s

    def as_json(self, without, forced=()) -> dict:
        left_out = sorted(set(self.role_features) & set(without))
        forced = sorted(set(self.role_features) & set(forced))
        return {
            "role": self.role, "subject": self.subject, "property": self.property,
            "dtype": self.dtype, "device": self.device, "verdict": self.verdict,
            "failure_kind": self.failure_kind, "message": self.message,
            "examples": self.examples,
            "features_exercised": sorted(set(self.features) & set(self.role_features)),
            "features_left_out": left_out,
            "features_forced": forced,
            "features_not_drawn": sorted(set(self.role_features) - set(self.features)
                                         - set(left_out)),
            "feature_examples": {f: self.features[f] for f in self.role_features},
            "max_ratio": _finite_or_str(self.max_ratio),
            "max_abs_error": _finite_or_str(self.max_abs_error),
            "max_rel_error": _finite_or_str(self.max_rel_error),
            "longest_length": self.longest_length,
            "worst_example": _rendered(self.worst, full=self.verdict == "fail"),
            "duration_s": round(self.duration_s, 3),
            "first_call_s": None if self.first_call_s is None else round(self.first_call_s, 3),
            "max_warmup_s": round(self.max_warmup_s, 3),
            "precision": self.precision_json(),
        }

    def precision_json(self) -> dict | None:
        """The precision verdict's figures, or None where it did not judge (not a sequence
        role's oracle property, or --ssm-precision-factor off)."""
        if not self.precision_points:
            return None
        tiers = {}
        for length, _, _, bits in self.precision_points:
            if math.isfinite(bits):
                tiers.setdefault(length_tier(length), []).append(bits)
        return {
            "examples": len(self.precision_points),
            "duration_s": round(self.precision_s, 3),   # of the row's duration_s
            "max_precision_ratio": _finite_or_str(self.max_precision_ratio),
            "bits_lost_at_worst": (None if self.worst_bits_lost is None
                                   else _finite_or_str(round(self.worst_bits_lost, 2) + 0.0)),
            "max_bits_lost": _finite_or_str(round(max(p[2] for p in self.precision_points), 2) + 0.0),
            # log2(tolerance / panel error) per length tier: median and smallest over examples
            "unjudged_bits_by_tier": {
                tier: {"examples": len(v), "median": round(float(sorted(v)[len(v) // 2]), 2),
                       "min": round(min(v), 2), "max": round(max(v), 2)}
                for tier, v in sorted(tiers.items(), key=lambda kv: TIER_ORDER.index(kv[0]))},
        }

    def failed_on_last(self, message: str) -> None:
        """A failed property: its worst example is the one its failure message shows. Hypothesis
        replays the shrunk failing example last, and that replay raised ``message``; the example
        with the largest ratio is usually a bigger one seen before shrinking."""
        if self.last is not None and str(self.last["reproduction"]) in message:
            self.worst = dict(self.last)

    def merge(self, other: "Entry") -> None:
        """Add the figures of ``other`` (the same row, judged in another process: pytest-xdist)."""
        self.examples += other.examples
        self.features.update(other.features)
        if other.worst is not None and (self.worst is None or self.verdict != "fail" and (
                other.verdict == "fail" or not other.max_ratio <= self.max_ratio)):
            self.worst = other.worst
        if other.verdict == "fail" or other.verdict == "skip" and self.verdict == "pass":
            self.verdict, self.failure_kind, self.message = (other.verdict, other.failure_kind,
                                                             other.message)
        self.max_ratio = max(self.max_ratio, other.max_ratio)
        self.max_abs_error = max(self.max_abs_error, other.max_abs_error)
        self.max_rel_error = max(self.max_rel_error, other.max_rel_error)
        self.points += other.points
        self.longest_length = max(self.longest_length, other.longest_length)
        self.by_length = self.by_length or other.by_length
        self.duration_s += other.duration_s
        if self.first_call_s is None:
            self.first_call_s = other.first_call_s
        self.max_warmup_s = max(self.max_warmup_s, other.max_warmup_s)
        if other.precision_points and not other.max_precision_ratio <= self.max_precision_ratio:
            self.worst_bits_lost = other.worst_bits_lost
        self.max_precision_ratio = max(self.max_precision_ratio, other.max_precision_ratio)
        self.precision_points += other.precision_points
        self.precision_s += other.precision_s


# length tiers of the precision figures (report.json "unjudged_bits_by_tier", report.md)
TIER_ORDER = ("l < 2^8", "2^8 <= l < 2^11", "2^11 <= l < 2^14", "l >= 2^14")


def length_tier(length: int) -> str:
    for bound, name in zip((2**8, 2**11, 2**14), TIER_ORDER):
        if length < bound:
            return name
    return TIER_ORDER[-1]


class _Reproduction:
    """An example's reproduction, rendered the first time it is read (``str``). Rendering every
    judged example's inputs as Python source cost more than judging them (~18 s of SSD's ~100 s
    of metamorphic properties); only the worst example and a failure's are ever shown.
    ``copy.deepcopy`` (``dataclasses.asdict``, the xdist dump) takes the rendered text."""

    __slots__ = ("_describe", "_case", "_text")

    def __init__(self, describe, case):
        self._describe, self._case, self._text = describe, case, None

    def __str__(self) -> str:
        if self._text is None:
            self._text = self._describe(self._case)
            self._describe = self._case = None   # the case's arrays are no longer held
        return self._text

    def __deepcopy__(self, memo) -> str:
        return str(self)


def _rendered(example: dict | None, full: bool = True) -> dict | None:
    """``example`` with its reproduction as text; not ``full``: a long one is replaced by a
    comment (the case's summary stays in "case")."""
    if example is None:
        return None
    text = str(example["reproduction"])
    if not full and len(text) > MAX_INLINE:
        text = (f"# not inlined: {len(text)} characters of input values (more than "
                f"{MAX_INLINE}); the case: {example.get('case', '?')}")
    return dict(example, reproduction=text)


def _finite_or_str(x: float):
    return x if math.isfinite(x) else ("inf" if x > 0 else "nan")


def _summary(case) -> str:
    """A short description of ``case``: its repr (shapes, kinds, features), at most 500
    characters."""
    text = repr(case)
    return text if len(text) <= 500 else text[:497] + "..."


class Recorder:
    def __init__(self):
        self.entries: dict[tuple, Entry] = {}

    def entry(self, sut, prop: str) -> Entry:
        key = (sut.role.name, sut.subject.name, prop, sut.dtype, sut.device)
        if key not in self.entries:
            self.entries[key] = Entry(*key, role_features=sut.role.features)
        return self.entries[key]

    def observe(self, sut, prop, case, *, ratio, abs_err, rel_err, describe):
        entry = self.entry(sut, prop)
        entry.examples += 1
        entry.features.update(set(getattr(case, "features", ())))
        size = int(getattr(case, "size", 0))
        length = getattr(case, "length", None)  # sequence roles; else the input's size
        entry.by_length = entry.by_length or length is not None
        length = size if length is None else int(length)
        entry.points.append((length, float(ratio)))
        entry.longest_length = max(entry.longest_length, length)
        entry.last = {"size": size, "length": length, "ratio": _finite_or_str(float(ratio)),
                      "case": _summary(case), "reproduction": _Reproduction(describe, case)}
        if entry.worst is None or not ratio <= entry.max_ratio:
            entry.worst = entry.last
        entry.max_ratio = max(entry.max_ratio, float(ratio))
        entry.max_abs_error = max(entry.max_abs_error, float(abs_err))
        entry.max_rel_error = max(entry.max_rel_error, float(rel_err))

    def observe_precision(self, sut, prop, case, *, ratio, bits_lost, unjudged_bits):
        """One example's precision verdict figures (properties/precision.py)."""
        entry = self.entry(sut, prop)
        length = getattr(case, "length", None)
        length = int(getattr(case, "size", 0) if length is None else length)
        entry.precision_points.append((length, float(ratio), float(bits_lost),
                                       float(unjudged_bits)))
        if not ratio <= entry.max_precision_ratio:
            entry.worst_bits_lost = float(bits_lost)
        entry.max_precision_ratio = max(entry.max_precision_ratio, float(ratio))

    def dump(self) -> list[dict]:
        """The entries as plain data (what a pytest-xdist worker sends to the controller)."""
        return [dict(dataclasses.asdict(e), features=dict(e.features)) for e in
                self.entries.values()]

    def merge(self, dumped: list[dict]) -> None:
        """Add the entries a worker dumped: one report for the whole run."""
        for data in dumped:
            data = dict(data, features=Counter(data["features"]),
                        points=[tuple(p) for p in data["points"]],
                        precision_points=[tuple(p) for p in data.get("precision_points", [])],
                        role_features=tuple(data["role_features"]))
            other = Entry(**data)
            key = (other.role, other.subject, other.property, other.dtype, other.device)
            if key in self.entries:
                self.entries[key].merge(other)
            else:
                self.entries[key] = other


RECORDER = Recorder()


# --- writers -------------------------------------------------------------------------------------

def _fmt_ratio(x) -> str:
    if isinstance(x, str):
        return x
    return f"{x:.3g}"


def table_rows(entries):
    for e in sorted(entries, key=lambda e: (e.role, e.subject, e.property, e.dtype)):
        yield e


def write(directory: str, *, exit_status: int, options: dict, profile: str, tolerance: dict,
          without, forced=()) -> None:
    """Write the report; each file atomically (a temporary file renamed over it), so a reader
    never sees half a report, even while another run writes the same directory."""
    os.makedirs(directory, exist_ok=True)
    entries = list(RECORDER.entries.values())
    results = [e.as_json(without, forced) for e in table_rows(entries)]
    longest: dict[str, int] = {}
    for e in entries:
        longest[e.role] = max(longest.get(e.role, 0), e.longest_length)
    doc = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv, "exit_status": int(exit_status),
        "conformant": int(exit_status) == 0 and all(r["verdict"] != "fail" for r in results),
        "hypothesis_profile": profile, "options": options, "tolerance": tolerance,
        "length_capped_at": options.get("max_length"),
        "longest_length": dict(sorted(longest.items())),
        "results": results,
    }
    _atomic(directory, "report.json", lambda fh: json.dump(doc, fh, indent=2))
    _atomic(directory, "report.md", lambda fh: fh.write(markdown(doc)))
    plot(directory, entries)


def _atomic(directory: str, name: str, write_to, mode: str = "w") -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write_to(fh)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it (mkstemp's is 0600)
        os.replace(tmp, os.path.join(directory, name))
    except BaseException:
        os.unlink(tmp)
        raise


def markdown(doc: dict) -> str:
    opts = doc["options"]
    verdict = "conformant" if doc["conformant"] else "NOT conformant"
    lines = [
        "# SSM kernel conformance report", "",
        f"**{verdict}** (exit status {doc['exit_status']}); Hypothesis profile "
        f"`{doc['hypothesis_profile']}`, torch dtypes {', '.join(opts['dtypes'])} "
        f"(NumPy roles: {', '.join(opts.get('numpy_dtypes', ['float64']))}), device "
        f"{opts['device']}, per-call time limit {opts['call_timeout_s']:g} s"
        + (f", without {', '.join(opts['without'])}" if opts["without"] else "")
        + (f", forced (--ssm-with) {', '.join(opts['with'])}" if opts.get("with") else "")
        + ".", "",
    ]
    if opts.get("max_length") is not None:
        lines += [f"**Capped run:** sequence lengths were capped at {opts['max_length']} "
                  f"(`--ssm-max-length`); this is no verdict on longer inputs.", ""]
    lines += [
        "A property holds when every element's |error| against the high-precision oracle is "
        "within its derived tolerance: *max err/tol* <= 1.", "",
        "| role | subject | property | dtype | verdict | max err/tol | max abs err | examples "
        "| features exercised (examples) | left out | not drawn |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        verdict_cell = "pass" if r["verdict"] == "pass" else (
            f"**{r['verdict'].upper()}**" + (f" ({r['failure_kind']})" if r["failure_kind"] else ""))
        exercised = ", ".join(f"{f} ({r['feature_examples'][f]}"
                              + (", forced)" if f in r.get("features_forced", ()) else ")")
                              for f in r["features_exercised"])
        lines.append(
            f"| {r['role']} | `{r['subject']}` | {r['property']} | {r['dtype']} | "
            f"{verdict_cell} | {_fmt_ratio(r['max_ratio'])} | "
            f"{_fmt_ratio(r['max_abs_error'])} | {r['examples']} | "
            f"{exercised or '-'} | "
            f"{', '.join(r['features_left_out']) or '-'} | "
            f"{', '.join(r['features_not_drawn']) or '-'} |")
    lines += precision_markdown(doc)
    failures = [r for r in doc["results"] if r["verdict"] == "fail"]
    if failures:
        lines += ["", "## Failures", ""]
        for r in failures:
            lines += [f"### {r['role']} / `{r['subject']}` / {r['property']} / {r['dtype']}", ""]
            worst = r["worst_example"]
            if worst is not None:
                lines += [f"Failing example (shown below): length {worst.get('length', '-')}, "
                          f"err/tol {_fmt_ratio(worst['ratio'])}.", ""]
            lines += ["```", r["message"].strip(), "```", ""]
    return "\n".join(lines) + "\n"


def precision_markdown(doc: dict) -> list[str]:
    """The precision verdict's table: per row of the results it judged, the largest precision
    ratio (<= 1 passes), the bits lost against the panel there, and per length tier the median
    bits the bound alone leaves unjudged, log2(tolerance / panel error)."""
    rows = [r for r in doc["results"] if r.get("precision")]
    factor = doc["options"].get("precision_factor")
    if factor is None:
        return ["", "Precision verdict: off (`--ssm-precision-factor off`): judged by the error "
                    "bound alone."]
    if not rows:
        return []
    lines = ["", "## Precision verdict", "",
             f"Sequence roles: a subject fails as *imprecise* where its largest error on a row "
             f"(batch x channel or head) exceeds K = {factor:g} times the largest error of the "
             "standard algorithms run in the same precision on the same inputs (loop, tree scan, "
             "chunked SSD, both tap orders, plain and online softmax), plus a floor of four "
             "output-dtype roundings (*precision ratio* <= 1 passes). *Unjudged bits*: "
             "log2(tolerance / panel error), median over rows and examples per length tier: "
             "how far above the standard algorithms the error bound alone would let a kernel "
             "err.", "",
             "| role | subject | property | dtype | precision ratio | bits lost (worst) | "
             + " | ".join(f"unjudged bits, {t}" for t in TIER_ORDER) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(TIER_ORDER)]
    for r in rows:
        p = r["precision"]
        tiers = p["unjudged_bits_by_tier"]
        cells = [f"{tiers[t]['median']:.1f} ({tiers[t]['examples']})" if t in tiers else "-"
                 for t in TIER_ORDER]
        lost = p["bits_lost_at_worst"]
        lines.append(f"| {r['role']} | `{r['subject']}` | {r['property']} | {r['dtype']} | "
                     f"{_fmt_ratio(p['max_precision_ratio'])} | "
                     f"{'-' if lost is None else _fmt_ratio(lost)} | " + " | ".join(cells) + " |")
    return lines


def terminal_lines(entries, without=(), forced=()) -> list[str]:
    rows = [("role", "subject", "property", "dtype", "verdict", "max err/tol", "examples")]
    for e in table_rows(entries):
        verdict = e.verdict if e.verdict != "fail" else f"FAIL ({e.failure_kind})"
        rows.append((e.role, e.subject, e.property, e.dtype, verdict,
                     _fmt_ratio(_finite_or_str(e.max_ratio)), str(e.examples)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if forced:
        lines.append(f"forced features (--ssm-with, in every example): {', '.join(sorted(forced))}")
    if without:
        lines.append(f"features left out (--ssm-without): {', '.join(sorted(without))}")
    return lines


def plot(directory: str, entries) -> None:
    """One PNG per (role, dtype): error/tolerance against sequence length (input size for roles
    without one), log axes up to the longest length judged, one series per subject."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[Entry]] = {}
    for e in entries:
        groups.setdefault((e.role, e.dtype), []).append(e)
    for (role, dtype), group in groups.items():
        fig, ax = plt.subplots(figsize=(7, 4.2))
        longest = max(e.longest_length for e in group)
        for e in group:
            pts = [(s, r) for s, r in e.points if s > 0 and math.isfinite(r) and r > 0]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=10, alpha=0.6, label=f"{e.subject} ({e.property})")
        ax.axhline(1.0, color="red", lw=1, ls="--", label="tolerance")
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlim(0.8, max(2, longest) * 1.25)  # up to the longest length judged
        by_length = any(e.by_length for e in group)
        ax.set_xlabel(f"{'sequence length' if by_length else 'input size'} "
                      f"(longest judged: {longest})")
        ax.set_ylabel("error / tolerance")
        ax.set_title(f"{role} ({dtype})")
        ax.legend(fontsize=6, loc="best")
        fig.tight_layout()
        _atomic(directory, f"{role}-{dtype}.png", lambda fh: fig.savefig(fh, format="png",
                                                                        dpi=110), mode="wb")
        plt.close(fig)
    plot_precision(directory, entries)


def plot_precision(directory: str, entries) -> None:
    """One PNG per (role, dtype) the precision verdict judged, ``precision-ROLE-DTYPE.png``:
    the bits the bound leaves unjudged, log2(tolerance / panel error), against l."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[Entry]] = {}
    for e in entries:
        if e.precision_points:
            groups.setdefault((e.role, e.dtype), []).append(e)
    for (role, dtype), group in groups.items():
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for e in group:
            pts = [(l, b) for l, _, _, b in e.precision_points if l > 0 and math.isfinite(b)]
            if pts:
                xs, ys = zip(*pts)
                ax.scatter(xs, ys, s=10, alpha=0.6, label=f"{e.subject} ({e.property})")
        ax.axhline(4.0, color="red", lw=1, ls="--", label="log2 K = 4 (default)")
        ax.set_xscale("log")
        ax.set_xlabel("sequence length l")
        ax.set_ylabel("log2(tolerance / panel error) [bits]")
        ax.set_title(f"{role} ({dtype}): bits the error bound leaves unjudged")
        ax.legend(fontsize=6, loc="best")
        fig.tight_layout()
        _atomic(directory, f"precision-{role}-{dtype}.png",
                lambda fh: fig.savefig(fh, format="png", dpi=110), mode="wb")
        plt.close(fig)
