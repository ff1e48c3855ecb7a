"""A phone on a fake clock with an in-memory network: no sockets, deterministic."""

from __future__ import annotations

import random

from twisted.internet.task import Clock

from labsim.phones.dhcp_client import LEASE_TIMER
from labsim.phones.phone import PHONE_STAGES, Phone
from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.transport.driver import PhoneDriver
from labsim.transport.memory import InMemoryNetwork


def assert_stages_declared(phone: Phone, vendor, files: dict | None = None) -> None:
    """Every stage ``phone`` timed is one ``vendor`` declares (kit.VendorProfile.STAGES),
    every phone's (PHONE_STAGES), or, for a vendor whose files name more, one its
    ``stages_in_files`` finds in ``files`` (the lab's provisioning files, name -> bytes): the
    names ``labsim validate`` lets a scenario's ``stage.<name>`` expectations use."""
    declared = (*PHONE_STAGES, *vendor.STAGES)
    in_files = getattr(vendor, "stages_in_files", None)
    if in_files is not None:
        # As the lab's server answers: what files.get gives (the fuzz targets' files hold every name).
        declared += in_files(phone.model, lambda name: [] if files is None or files.get(name) is None
                             else [files.get(name)]) or ()
    for timing in phone.stages:
        assert timing.stage in declared, (
            f"{vendor.VENDOR} phone timed a stage {timing.stage!r} its profile does not declare: {declared}")


class PhoneLab:
    def __init__(self, profile, *, model: str, mac: str, options: dict[int, bytes] | None = None,
                 files: dict[str, bytes] | None = None, firmware: str | None = None, flash=None, seed: int = 1,
                 boot_time_s: float = 1.0, offer_servers: int = 1):
        self.clock = Clock()
        self.servers = [
            DhcpServer(DhcpServerConfig(server_id=f"127.0.0.{index + 1}", options=dict(options or {})))
            for index in range(offer_servers)
        ]
        self.network = InMemoryNetwork(self.clock, dhcp_server=self.servers[0], files=dict(files or {}))
        self.phone = Phone(mac, model, profile, rng=random.Random(seed), boot_time_s=boot_time_s,
                           firmware=firmware, flash=flash)
        self.driver = PhoneDriver(self.phone, self.clock, self.network)

    @property
    def files(self) -> dict[str, bytes]:
        return self.network.files

    def boot(self, limit_s: float = 600.0, step: float = 0.05):
        self.driver.power_on()
        return self.run(limit_s, step)

    def run(self, limit_s: float = 600.0, step: float = 0.05):
        deadline = self.clock.seconds() + limit_s
        self.clock.advance(0)
        while not self.phone.settled and self.clock.seconds() < deadline:
            self.clock.advance(step)
        self.check_stages_declared()
        return self.phone

    def advance(self, seconds: float, step: float | None = None):
        """Let ``seconds`` pass, jumping from one scheduled call to the next."""
        end = self.clock.seconds() + seconds
        while True:
            pending = [call.getTime() for call in self.clock.getDelayedCalls()]
            upcoming = min((t for t in pending if t <= end), default=None)
            if upcoming is None:
                self.clock.advance(max(0.0, end - self.clock.seconds()))
                self.check_stages_declared()
                return
            self.clock.advance(max(0.0, upcoming - self.clock.seconds()))

    def check_stages_declared(self) -> None:
        """Every profile test's lab checks, as it runs, that the phone timed only stages
        its vendor declares (``assert_stages_declared``)."""
        vendor = getattr(self.phone.profile, "vendor", self.phone.profile)
        if hasattr(vendor, "STAGES"):  # not a test's own stand-in profile
            assert_stages_declared(self.phone, vendor, self.network.files)

    def pending_calls(self) -> list:
        """The clock's scheduled calls but the DHCP lease timer (T1, T2, expiry), which
        every phone holding a lease has: what is left is the vendor's own timers."""
        return [call for call in self.clock.getDelayedCalls() if call.args != (LEASE_TIMER,)]

    def urls(self, suffix: str = "") -> list[str]:
        return [f.url for f in self.network.fetches if f.url.endswith(suffix)]

    def steps(self) -> list[str]:
        return [detail for _, _, detail, kind in self.phone.events if kind == "step"]

    def states(self) -> list[str]:
        return [state for _, state, _, kind in self.phone.events if kind == "state"]
