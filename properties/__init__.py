"""The conformance harness: roles, subjects, strategies, the tolerance model and property tests.

``python -m pytest properties --ssm-subject ROLE=TARGET`` judges a third-party kernel; see
../shared/CONTRACT.md (the public contract) and README.md.
"""
