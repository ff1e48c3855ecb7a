"""The standing fuzz targets (tests/fuzz/targets.py), each with a fixed small budget in
the suite (LABSIM_FUZZ_EXAMPLES inputs per target, default 600: 30-60 s in all);
``scripts/fuzz --minutes N`` runs them for longer and counts."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.fuzz.targets import TARGETS

EXAMPLES = int(os.environ.get("LABSIM_FUZZ_EXAMPLES", "600"))


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_fuzz_target(target):
    strategy, check = target.strategy_and_check()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def fuzz(data):
        check(data)

    fuzz()
