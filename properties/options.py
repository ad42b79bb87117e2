"""The options of the current run, parsed once in ``pytest_configure`` (see properties/plugin.py).

Strategies read ``RUN.without`` when they are built, so ``--ssm-without`` removes a feature from
the input space itself rather than filtering drawn examples.
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


def length_cap(length: int) -> int:
    """``length`` capped by --ssm-max-length (quick local runs; the report says it was capped)."""
    return length if RUN.max_length is None else max(1, min(length, RUN.max_length))
