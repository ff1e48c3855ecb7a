"""labsim's file services in every ``--workers`` process, sharing each port.

Under ``labsim run FILE --workers N`` the parent runs DHCP (the one lease authority) and
PnP; TFTP, HTTP, FTP and DNS run in every worker too, each on the scenario's port, bound
with SO_REUSEPORT (``labsim.net.reuseport``): the kernel hashes each new UDP flow or TCP
connection (addresses and ports of both ends) to one process, which answers it whole.
Every process serves the same provisioning folder (the parent's), stores uploads in the
same folders, applies the same faults (the scenario's, and the timeline's, which the
parent sends to every worker) and stops and starts a service when the timeline says
(the parent tells every worker). HTTP Digest nonces are signed with one key, so a phone
may take a nonce from one process to another. The report's counters of a service are the sum over
the processes.

How it starts: the parent starts every service itself (so a port in use, port 0, the
``--ports-file`` and a self-signed certificate work as in one process), with the file
services' ports opened for sharing; each worker joins those ports before it says Hello;
then the parent hands them over (stops its own copy) before the shared start instant.

A service whose limit counts across clients stays in the parent alone, where N processes
would each allow it, N times what the scenario says: a per-address connection limit set
in the scenario (``ftp.max_connections_per_address``, ``dns.tcp_max_connections_per_address``),
or a fault with ``bandwidth_kbps`` on it (one line's capacity), in ``faults`` or added by
the timeline.
"""

from __future__ import annotations

import json
import os

from labsim.services.lab import SHAREABLE

# The scenario field that keeps a service in one process (counted over all its clients).
LIMITS = {"ftp": "max_connections_per_address", "dns": "tcp_max_connections_per_address"}


def served_by_workers(scenario) -> tuple[str, ...]:
    """The file services the workers serve too (the rest stay in the parent alone)."""
    spec, names = scenario.services, []
    capped = {fault.service for fault in all_faults(scenario) if fault.bandwidth_kbps}
    for name in SHAREABLE:
        section = getattr(spec, name, None)
        if section is None or getattr(section, LIMITS.get(name, ""), None) or name in capped:
            continue
        names.append(name)
    return tuple(names)


def all_faults(scenario) -> list:
    """The scenario's faults and those its timeline adds."""
    added = [action.add_fault for entry in scenario.timeline for action in entry.actions() if action.add_fault]
    return [*scenario.faults, *added]


def worker_lab(services, spec, names, *, report_dir: str, uploads_override: str | None) -> str:
    """What a worker needs to serve ``names`` as the parent does (``--worker-lab``, JSON)."""
    lab = {"root": os.path.abspath(services.root), "report_dir": os.path.abspath(report_dir),
           "uploads": uploads_override, "ports": {name: services.bound_ports[name] for name in names},
           "auth_secret": services.auth_secret.hex() if services.auth_secret else None}
    if "http" in names and spec.http.tls and not spec.http.cert_file:
        # One certificate for every process: the one the parent made (services/http_tls.py).
        lab["cert"] = [os.path.join(lab["report_dir"], "cert.pem"), os.path.join(lab["report_dir"], "key.pem")]
    return json.dumps(lab)


def start_worker_services(run, lab: dict):
    """A worker's share of the lab: ``lab``'s services on the parent's ports, over the
    parent's provisioning folder, into the same upload folders, behind the run's faults."""
    from labsim.run import UploadFolders
    from labsim.services.lab import LabServices

    spec = run.scenario.services
    update: dict = {"dhcp": None, "pnp": None}
    for name in SHAREABLE:
        section = getattr(spec, name, None)
        if section is None or name not in lab["ports"]:
            update[name] = None
            continue
        changes: dict = {"port": lab["ports"][name]}
        if name == "http" and lab.get("cert"):
            changes.update(cert_file=lab["cert"][0], key_file=lab["cert"][1])
        update[name] = section.model_copy(update=changes)
    services = LabServices(run.reactor, spec.model_copy(update=update), lab["root"], cert_dir=lab["report_dir"],
                           own_fleet=True, faults=run.faults, share_ports="join",
                           upload_folders=UploadFolders(run.loaded, lab["report_dir"], lab["uploads"]))
    if lab.get("auth_secret"):  # a Digest nonce from any process is good at this one
        services.auth_secret = bytes.fromhex(lab["auth_secret"])
    services.start()
    services.attach_faults()
    return services


def live_counters(stats: dict) -> dict[str, int]:
    """The progress line's service totals from one process's ``LabServices.stats()``."""
    totals = {}
    if "http" in stats:
        totals["http"] = stats["http"]["requests"]
    if "tftp" in stats:
        totals["tftp"] = stats["tftp"].get("transfers_ok", 0)
    return totals
