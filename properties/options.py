"""The options of the current run, parsed once in ``pytest_configure`` (see properties/plugin.py).

Strategies read ``RUN.without`` and ``RUN.with_`` when they draw, so ``--ssm-without`` removes a
feature from the input space itself and ``--ssm-with`` draws it in every example, rather than
filtering drawn examples. A strategy asks three questions of a feature of its role:
``enabled(f)`` (may it be drawn?), ``forced(f)`` (must every example have it?) and, for a coin it
would otherwise flip, ``coin(draw, f)`` (forced: on; left out: off; else drawn). The harness
discards any example that breaks either option (``admits``: a safety net, see
properties/harness.py), so a strategy that forgets a forced feature shows up as a health-check
error, never as a silently wrong input space.
"""
from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_CALL_TIMEOUT_S = 60.0


@dataclass
class RunOptions:
    subjects: dict = field(default_factory=dict)  # role -> list[Subject]; empty: bundled ones
    user_subjects: bool = False
    dtypes: tuple = ("float32",)
    numpy_dtypes: tuple = ("float64",)  # --ssm-numpy-dtype: the dtypes NumPy roles are tested in
    device: str = "cpu"
    without: frozenset = frozenset()
    with_: frozenset = frozenset()  # --ssm-with: features drawn in every example
    grad: bool = False
    report_dir: str | None = None
    call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    max_length: int | None = None  # --ssm-max-length (an extension): cap on sequence lengths
    # --ssm-precision-factor: K of the precision verdict (properties/precision.py); None = off
    precision_factor: float | None = 16.0


RUN = RunOptions()


def enabled(feature: str) -> bool:
    """Whether strategies may draw inputs that exercise ``feature``."""
    return feature not in RUN.without


def forced(feature: str) -> bool:
    """Whether every example must exercise ``feature`` (--ssm-with)."""
    return feature in RUN.with_


def coin(draw, feature: str) -> bool:
    """An optional feature's coin: on when forced, off when left out, else drawn."""
    from hypothesis import strategies as st
    if forced(feature):
        return True
    return enabled(feature) and draw(st.booleans())


def pick(feature: str, default: bool) -> bool:
    """A fixed (explicit) case's flag for ``feature``: forced on, left out off, else ``default``."""
    return forced(feature) or (enabled(feature) and bool(default))


def admits(features, role_features) -> bool:
    """Whether an input exercising ``features`` belongs to the input space of a role with
    ``role_features``: none of them left out (--ssm-without), every forced one of the role present
    (--ssm-with)."""
    features = set(features)
    return not (features & RUN.without) and (RUN.with_ & set(role_features)) <= features


def length_cap(length: int) -> int:
    """``length`` capped by --ssm-max-length (quick local runs; the report says it was capped)."""
    return length if RUN.max_length is None else max(1, min(length, RUN.max_length))
