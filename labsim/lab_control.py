"""What the timeline (and the dashboard's trainer controls) may do to the lab's own
services: edit a provisioning file, stop or start a service, add or remove a fault,
change DHCP options. One run's process holds them (``labsim.run``); a ``--workers``
parent extends this to reach the services and relays its workers also run
(``labsim.scale.workers``). Each class says what a run holds besides: its phones.
"""

from __future__ import annotations

import os

from labsim.faults import fault_from_spec


class LabServicesControl:
    """The lab's services as ``run._services`` (a LabServices) and its faults as
    ``run.faults`` (a FaultSet); both are read when an action comes, since a run makes
    its services only once it starts."""

    def __init__(self, run):
        self.run = run

    def file_path(self, name: str) -> str:
        root = os.path.realpath(self.run._services.root)
        path = os.path.realpath(os.path.join(root, name))
        if not path.startswith(root + os.sep):
            raise ValueError(f"{name!r} is outside the provisioning root")
        return path

    def service(self, verb: str, name: str) -> str:
        return self.run._services.control(verb, name)

    def add_fault(self, spec) -> str:
        fault = fault_from_spec(spec, len(self.run.faults.faults))
        self.run.faults.add(fault)
        self.fault_added(spec)
        return f"fault {fault.name} on {fault.service} added"

    def remove_fault(self, name: str) -> str:
        found = self.run.faults.remove(name)
        self.fault_removed(name)
        return f"fault {name} removed" if found else f"no fault named {name}"

    def fault_added(self, spec) -> None:
        """A fault joined this process's set: where else must it go? (nowhere here)"""

    def fault_removed(self, name: str) -> None:
        """A fault left this process's set: where else must it leave? (nowhere here)"""

    def set_dhcp_options(self, options: dict) -> str:
        return self.run._services.set_dhcp_options(options)

    def remove_dhcp_options(self, keys: list) -> str:
        return self.run._services.remove_dhcp_options(keys)
