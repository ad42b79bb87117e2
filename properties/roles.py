"""The roles of the contract (../shared/CONTRACT.md): what kind of kernel each is, its features,
and the bundled implementations that are judged when no ``--ssm-subject`` is given."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    name: str
    backend: str  # "numpy": NumPy arrays in, tested in float64; "torch": tensors in the dtype under test
    features: tuple[str, ...] = ()
    bundled: tuple[str, ...] = ()  # targets "module:attr" of our own implementations
    mutates: tuple[str, ...] = ()  # arguments the role must change in place


IMPL = "ssm_conformance.implementations"

# Features beyond CONTRACT.md (issue 19): input classes the strategies drew with no name, named
# so that each can be left out (--ssm-without) or forced (--ssm-with). The discretize roles'
# classes of A (strategies/lti.py) and B scaled by 2^+-40 or 0:
LTI_FEATURES = ("defective_A", "stiff_A", "oscillatory_A", "extreme_B")
# every feature name of this suite's that CONTRACT.md does not list (README, --help)
EXTENSION_FEATURES = (*LTI_FEATURES, "jordan_block", "slow_modes", "near_marginal_Lambda",
                      "zero_decay", "negative_decay", "zero_A", "non_pow2_chunk", "integer_x")

# Features that no input has all at once: forcing all of one set is a usage error (role -> list
# of (set, why)).
INCOMPATIBLE: dict[str, list[tuple[frozenset, str]]] = {
    "linear_scan": [(frozenset({"complex", "negative_decay"}),
                     "negative_decay is a real a_t < 0; complex a has no sign")],
    "selective_scan": [(frozenset({"constant_B", "constant_C", "grouped_BC"}),
                        "grouped_BC needs B or C grouped, not both constant")],
    "dplr_kernel": [(frozenset({"marginal_Lambda", "near_marginal_Lambda"}),
                     "the suite draws them in different classes of Lambda")],
    **{f"discretize_{kind}": [
        (frozenset(pair), "an input has one class of A")
        for pair in (("defective_A", "stiff_A"), ("defective_A", "oscillatory_A"),
                     ("stiff_A", "oscillatory_A"))] + (
        [(frozenset({"singular_A", "stiff_A"}), "stiff A is invertible"),
         (frozenset({"singular_A", "oscillatory_A"}), "oscillatory A is invertible")]
        if kind == "zoh" else [])
       for kind in ("zoh", "bilinear", "euler", "backward_euler")},
}


def incompatible_forced(role: str, forced) -> str | None:
    """Why the features ``forced`` (--ssm-with) cannot all be drawn in one input of ``role``, or
    None."""
    for features, why in INCOMPATIBLE.get(role, []):
        if features <= set(forced):
            return f"{', '.join(sorted(features))} cannot all be forced for {role}: {why}"
    return None


def _numpy_and_torch(module: str, attr: str) -> tuple[str, ...]:
    return (f"{IMPL}.numpy.{module}:{attr}", f"{IMPL}.torch.{module}:{attr}")


ROLES: dict[str, Role] = {
    role.name: role
    for role in [
        Role("discretize_zoh", "numpy", ("singular_A",) + LTI_FEATURES,
             _numpy_and_torch("discretize", "zoh")),
        Role("discretize_bilinear", "numpy", LTI_FEATURES,
             _numpy_and_torch("discretize", "bilinear")),
        Role("discretize_euler", "numpy", LTI_FEATURES, _numpy_and_torch("discretize", "euler")),
        Role("discretize_backward_euler", "numpy", LTI_FEATURES,
             _numpy_and_torch("discretize", "backward_euler")),
        Role("causal_conv", "numpy", (), _numpy_and_torch("convolution", "causal_conv")),
        # S4 family (issue 4): HiPPO constructors exist in NumPy only; kernels in NumPy and torch.
        Role("hippo_legs", "numpy", (), (f"{IMPL}.numpy.hippo:hippo_legs",)),
        Role("hippo_legt", "numpy", (), (f"{IMPL}.numpy.hippo:hippo_legt",)),
        Role("hippo_lagt", "numpy", (), (f"{IMPL}.numpy.hippo:hippo_lagt",)),
        Role("hippo_fout", "numpy", (), (f"{IMPL}.numpy.hippo:hippo_fout",)),
        Role("ssm_kernel", "numpy", ("jordan_block",), _numpy_and_torch("s4", "ssm_kernel")),
        Role("s4d_kernel", "numpy", ("slow_modes",),
             (*_numpy_and_torch("s4", "s4d_kernel"), f"{IMPL}.cupy:s4d_kernel")),
        Role("dplr_kernel", "numpy", ("rank2", "marginal_Lambda", "near_marginal_Lambda"),
             (*_numpy_and_torch("s4", "dplr_kernel"), f"{IMPL}.cupy:dplr_kernel")),
        # every sequence role also has non_contiguous (CONTRACT.md: strided layouts)
        Role("linear_scan", "torch", ("complex", "zero_decay", "negative_decay", "non_contiguous"),
             (f"{IMPL}.torch.scan:linear_scan",
              f"{IMPL}.torch.scan:linear_scan_parallel")),
        Role("selective_scan", "torch",
             ("complex_A", "constant_B", "constant_C", "grouped_BC", "D", "z", "delta_bias",
              "delta_softplus", "last_state", "zero_A", "non_contiguous"),
             (f"{IMPL}.torch.mamba:selective_scan",
              f"{IMPL}.cupy:selective_scan")),
        Role("selective_state_update", "torch",
             ("D", "z", "dt_bias", "dt_softplus", "zero_A", "non_contiguous"),
             (f"{IMPL}.torch.mamba:selective_state_update",
              f"{IMPL}.cupy:selective_state_update"), mutates=("state",)),
        Role("ssd", "torch",
             ("D", "z", "dt_bias", "dt_softplus", "initial_states", "final_states", "grouped_BC",
              "zero_A", "non_pow2_chunk", "non_contiguous"),
             (f"{IMPL}.torch.ssd:ssd",
              f"{IMPL}.cupy:ssd")),
        Role("causal_conv1d", "torch", ("bias", "silu", "integer_x", "non_contiguous"),
             (f"{IMPL}.torch.mamba:causal_conv1d",
              f"{IMPL}.cupy:causal_conv1d")),
        Role("attention", "torch", ("causal", "scale", "non_contiguous"),
             (f"{IMPL}.torch.attention:attention",
              f"{IMPL}.cupy:attention")),
        Role("rg_lru", "torch", ("reset", "h0", "last_state", "near_one_decay", "non_contiguous"),
             (f"{IMPL}.torch.rg_lru:rg_lru",
              f"{IMPL}.torch.rg_lru:rg_lru_parallel")),
    ]
}

DTYPES = ("float32", "float64", "bfloat16", "float16")
NUMPY_DTYPES = ("float64", "float32")  # --ssm-numpy-dtype
DEVICES = ("cpu", "cuda")
