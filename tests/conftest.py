import os
import signal

import pytest
from hypothesis import settings
from twisted.trial import unittest as trial_unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Under CI=true the property tests draw the same examples on every run (seeded from each
# test), so a main that passed passes again; elsewhere every run draws new ones, and what
# they find becomes a test of its own (tests/unit/test_tftp_server.py has one).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _trial_temp_outside_the_repo(request, tmp_path, monkeypatch):
    """trial's ``TestCase.mktemp()`` makes folders relative to the working directory:
    run trial-style tests from a temporary one so they never litter the checkout."""
    if isinstance(request.instance, trial_unittest.TestCase):
        monkeypatch.chdir(tmp_path)
    yield


def pytest_configure(config):
    """Tests stop ``labsim run``/``serve`` children with Ctrl-C (SIGINT) and check the
    report is still written. A shell starts a background job with SIGINT ignored, and an
    ignored signal stays ignored across exec, so pytest started from a script's ``&`` would
    pass SIG_IGN to every child and those tests would time out. Handling SIGINT here makes
    every child start with the default again (exec resets handled signals)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


INTEROP_GROUP = "interop-privileged-ports"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n N --dist loadgroup``, as scripts/test runs), the interop
    tests run one after another on one worker: Kea, dnsmasq and in.tftpd hold loopback
    ports 67 and 69, and a fleet's relay binds 127.0.0.2:67, which two such tests cannot
    share. Everything else spreads over the workers.

    First among the hooks: xdist reads the group from the marker in its own hook (it
    appends ``@group`` to each test's id), so a marker added after it is ignored. Without
    ``tryfirst`` (or on pytest 9.2) the interop tests were spread over both workers, and one
    waited for the other's ports (``realservers.privileged_ports``): 20-48 s in CI for a
    case that takes 1-3 s alone."""
    for item in items:
        if _is_interop(item):
            item.add_marker(pytest.mark.xdist_group(INTEROP_GROUP))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """The group above took: a worker of ``--dist loadgroup`` names each interop test with
    the group (xdist appends ``@group`` to its id). Where it does not (xdist's own hook ran
    first, or a pytest whose ids xdist cannot change: 9.2, see pyproject.toml) the run
    stops here, before two interop tests race for the ports."""
    if node.config.getvalue("dist") != "loadgroup":
        return
    interop = "tests/interop/"
    ungrouped = [nodeid for nodeid in ids if nodeid.startswith(interop) and not nodeid.endswith("@" + INTEROP_GROUP)]
    if ungrouped:
        raise pytest.UsageError(
            f"pytest-xdist did not group {len(ungrouped)} interop tests (e.g. {ungrouped[0]}) under --dist "
            f"loadgroup, so two would run at once and wait for each other's ports 67/69. pytest "
            f"{pytest.__version__} and this pytest-xdist do not keep groups; pyproject.toml's test extra "
            f"names versions that do.")


def _is_interop(item) -> bool:
    return str(item.path).startswith(os.path.join(ROOT, "tests", "interop") + os.sep)
