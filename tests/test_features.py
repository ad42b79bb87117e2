"""Every feature of every role can be left out (--ssm-without) and forced (--ssm-with) in the
input space itself (issue 19): for each role's strategies (drawn, long drawn, explicit), with the
feature left out no drawn case has it, and forced every case has it. The strategies only, no
subject and no oracle: cheap. (tests/test_cli.py checks the options' parsing and the report;
tests/test_meta_opt_outs.py a few named classes against wrong kernels.)"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from ssm_conformance.properties.options import RUN, admits
from ssm_conformance.properties.roles import ROLES, incompatible_forced
from ssm_conformance.properties.strategies import (attention, conv1d, lti, rg_lru, s4, scans,
                                                  selective, ssd)
from ssm_conformance.properties.strategies.long_sequences import FORWARD_LENGTHS, decode_lengths


def _drawn(role):
    """(name, strategy) pairs of the role's drawn inputs."""
    return {
        "linear_scan": [("scan", scans.scan_cases), ("long", scans.long_scan_cases)],
        "discretize_zoh": [("lti", lambda: lti.lti_cases(singular_feature="singular_A"))],
        "discretize_bilinear": [("lti", lti.lti_cases)],
        "ssm_kernel": [("ssm", s4.ssm_cases)],
        "s4d_kernel": [("s4d", s4.s4d_cases)],
        "dplr_kernel": [("dplr", s4.dplr_cases)],
        "selective_scan": [("scan", selective.selective_cases),
                           ("long", selective.long_selective_cases)],
        "selective_state_update": [("step", selective.state_update_cases),
                                   ("decode", selective.decode_cases)],
        "ssd": [("ssd", ssd.ssd_cases), ("long", ssd.drawn_long_ssd_cases)],
        "causal_conv1d": [("conv", conv1d.conv1d_cases), ("long", conv1d.drawn_long_conv1d_cases)],
        "attention": [("attn", attention.attention_cases),
                      ("long", attention.drawn_long_attention_cases)],
        "rg_lru": [("rg", rg_lru.rg_lru_cases), ("long", lambda: rg_lru.rg_lru_cases(long=True))],
    }[role]


def _explicit(role):
    """The role's explicit cases under the current options."""
    if role == "linear_scan":
        return [scans.scan_case_from_seed(**kw) for kw in scans._long_explicit(FORWARD_LENGTHS)]
    if role == "selective_scan":
        return [selective.selective_case_from_seed(**kw)
                for kw in selective.explicit_selective(FORWARD_LENGTHS)]
    if role == "selective_state_update":
        return [selective.decode_case_from_seed(**kw)
                for kw in selective.explicit_decode(decode_lengths())]
    if role == "ssd":
        return ssd.long_ssd_cases()
    if role == "causal_conv1d":
        return conv1d.long_conv1d_cases()
    if role == "attention":
        return attention.long_cases()
    if role == "rg_lru":
        return [rg_lru.rg_lru_case_from_seed(**kw) for kw in rg_lru.explicit_rg_lru(FORWARD_LENGTHS)]
    return []


CASES = [(role, feature) for role in ("linear_scan", "discretize_zoh", "discretize_bilinear",
                                      "ssm_kernel", "s4d_kernel", "dplr_kernel", "selective_scan",
                                      "selective_state_update", "ssd", "causal_conv1d",
                                      "attention", "rg_lru")
         for feature in ROLES[role].features if feature != "non_contiguous"]


@pytest.fixture
def options(monkeypatch):
    def set_options(without=(), with_=()):
        monkeypatch.setattr(RUN, "without", frozenset(without))
        monkeypatch.setattr(RUN, "with_", frozenset(with_))
        monkeypatch.setattr(RUN, "max_length", 64)   # short explicit and long cases: cheap
    return set_options


def _features_of(strategy, n=12) -> list[frozenset]:
    seen = []

    @settings(max_examples=n, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def collect(case):
        seen.append(frozenset(case.features))

    collect()
    return seen


@pytest.mark.parametrize("mode", ["without", "with"])
@pytest.mark.parametrize("role,feature", CASES)
def test_strategies_leave_out_or_force_each_feature(options, role, feature, mode):
    options(**{("without" if mode == "without" else "with_"): (feature,)})
    features = ROLES[role].features
    for name, make in _drawn(role):
        seen = _features_of(make())
        assert seen, name
        if mode == "without":
            assert not any(feature in f for f in seen), (name, seen)
        else:
            assert all(feature in f for f in seen), (name, seen)
        assert all(admits(f, features) for f in seen)
    for case in _explicit(role):
        assert (feature in case.features) == (mode == "with"), (case, case.features)


def test_compatible_pairs_can_be_forced_together(options):
    """Two forced features of one role (not declared incompatible) are both in every drawn
    case: the forcing of one does not undo the other."""
    pairs = [("linear_scan", "zero_decay", "negative_decay"),
             ("selective_scan", "constant_B", "grouped_BC"),
             ("selective_scan", "complex_A", "zero_A"),
             ("ssd", "zero_A", "non_pow2_chunk"),
             ("discretize_zoh", "singular_A", "defective_A"),
             ("causal_conv1d", "integer_x", "silu")]
    for role, a, b in pairs:
        assert incompatible_forced(role, (a, b)) is None
        options(with_=(a, b))
        for name, make in _drawn(role):
            seen = _features_of(make(), n=8)
            assert all({a, b} <= f for f in seen), (role, name, seen)


def test_incompatible_forced_features_are_named():
    assert "complex" in incompatible_forced("linear_scan", ("complex", "negative_decay"))
    assert incompatible_forced("discretize_zoh", ("stiff_A", "oscillatory_A")) is not None
    assert incompatible_forced("discretize_zoh", ("stiff_A", "extreme_B")) is None
