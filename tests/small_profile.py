"""A pytest plugin for the meta-tests' CLI runs (``-p tests.small_profile``): the Hypothesis
profile ``meta-small``, the derandomized examples of ``ci-noshrink`` with 8 drawn per property
(every explicit example still runs first): a meta-test that needs verdicts on a few inputs,
not a hundred, stays cheap."""
from hypothesis import settings

import ssm_conformance.properties.plugin  # noqa: F401 - registers ci-noshrink

settings.register_profile("meta-small", parent=settings.get_profile("ci-noshrink"),
                          max_examples=8)
