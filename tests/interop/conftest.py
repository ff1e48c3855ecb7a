"""Fixtures shared by the interop tests."""

from tests.interop.netns import veth_lab  # noqa: F401  (a namespace and a veth pair, removed after)
