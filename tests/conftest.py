import os

import pytest
from twisted.trial import unittest as trial_unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _trial_temp_outside_the_repo(request, tmp_path, monkeypatch):
    """trial's ``TestCase.mktemp()`` makes folders relative to the working directory:
    run trial-style tests from a temporary one so they never litter the checkout."""
    if isinstance(request.instance, trial_unittest.TestCase):
        monkeypatch.chdir(tmp_path)
    yield
