"""The dashboard of a paced virtual-time run (``labsim run --clock virtual --ui``).

The same page and API as a run on sockets; what differs is where the lab lives. Its
services are in memory (``virtual.lab.VirtualServices``): the services view has their
counters and the DHCP server's leases, told in simulated time, but no live log (that is
the sockets' listeners). Times on the page (the charts, the rates, a lease's expiry) are
the run's simulated clock; the page's own timers stay on the wall clock.
"""

from __future__ import annotations

from labsim.ui.hub import Dashboard


class PacedDashboard(Dashboard):
    def _dhcp_server(self):
        services = self.services
        return services.dhcp_server if services is not None and services.dhcp is not None else None

    def _want_log(self) -> None:
        """In memory there are no sockets' listeners to log from: events.jsonl and each
        phone's story have the exchanges."""
