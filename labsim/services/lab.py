"""The scenario's services, started together on one reactor over one provisioning root."""

from __future__ import annotations

import socket

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from labsim.services.counters import add_counters
from labsim.services.dhcp import DhcpServerConfig
from labsim.services.dhcp_udp import start_dhcp_server
from labsim.services.dns import TCP_MAX_CONNECTIONS_PER_ADDRESS
from labsim.services.ftp import FtpServerConfig, start_ftp_server
from labsim.services.http import HttpServerConfig
from labsim.services.http_web import start_http_server
from labsim.services.pnp import PnpResponderConfig
from labsim.services.pnp_udp import start_pnp_server
from labsim.services.tftp import TftpServerConfig
from labsim.services.tftp_udp import start_tftp_server
from labsim.wire.dhcp import OPTION_DNS_SERVERS
from labsim.wire.dhcp_options import EncodedOptions

_log = Logger()


def dhcp_config(spec, name_server: str | None = None) -> DhcpServerConfig:
    """The scenario's ``services.dhcp`` (already validated) as the server's configuration.
    ``name_server``: the lab's DNS service's address, given to clients as option 6 when
    the scenario sets no option 6 itself (as dnsmasq offers itself): phones look host
    names up with the DNS servers their lease names."""
    import ipaddress

    from labsim.services.dhcp_classes import ClientClass, VendorClassMatch
    from labsim.net.udp import interface_ipv4

    classes = [
        ClientClass(c.name, VendorClassMatch(*c.match.vendor_class.kind_and_value()),
                    c.options)  # encoded by the scenario's loader (dhcp_options.encode_options)
        for c in spec.classes
    ]
    reservations = {bytes.fromhex(mac.replace(":", "").replace("-", "")): ip for mac, ip in spec.reservations.items()}
    # On an interface the server's identity (option 54) must be an address the clients
    # there can reach: the interface's own, unless the scenario names one.
    server_id = spec.server_id or (interface_ipv4(spec.interface) if spec.interface else spec.address)
    return DhcpServerConfig(
        server_id=server_id,
        subnet=str(ipaddress.IPv4Network(spec.subnet, strict=False)),
        pool_start=spec.pool.start,
        pool_end=spec.pool.end,
        lease_time_s=spec.lease_time_s,
        options=_with_name_server(spec.options, name_server),
        reservations=reservations,
        classes=classes,
    )


def _with_name_server(options, name_server: str | None):
    if name_server is None or OPTION_DNS_SERVERS in options:
        return options
    return EncodedOptions({**options, OPTION_DNS_SERVERS: socket.inet_aton(name_server)})


def lab_name_server(services) -> str | None:
    """The address option 6 gives by default: the lab's DNS service's, when it has one on
    a usable address."""
    dns = services.dns
    if dns is None or dns.address == "0.0.0.0":
        return None
    return dns.address


# Each service: how to start it from its scenario section; what it is called in logs.
# A starter returns the service's handle: something with ``port``, ``stats`` and
# ``stop()`` (DHCP returns ``(protocol, listening)``, adapted by ``_facade``).
SERVICE_ORDER = ("dhcp", "tftp", "http", "ftp", "dns", "pnp")
LABELS = {"dhcp": "DHCP", "tftp": "TFTP", "http": "HTTP", "ftp": "FTP", "dns": "DNS", "pnp": "PnP"}


def _start_dhcp(lab, spec):
    from labsim.services.lease_file import resolve_lease_path

    # cert_dir is the report folder (`labsim run`, `labsim serve`): a relative lease_file lives there.
    return start_dhcp_server(lab.reactor, dhcp_config(spec, lab_name_server(lab.spec)), host=spec.address,
                             port=lab.port_for("dhcp"),
                             interface=spec.interface, interface_port=spec.interface_port,
                             lease_file=resolve_lease_path(spec.lease_file, lab.cert_dir))


def _start_tftp(lab, spec):
    config = TftpServerConfig(root=lab.root, blksize_max=spec.blksize_max, timeout_s=spec.timeout_s,
                              max_retransmits=spec.max_retransmits, uploads=spec.uploads, upload_dir=spec.upload_dir,
                              upload_root=lab.upload_folder(spec))
    return start_tftp_server(lab.reactor, config, host=spec.address, port=lab.port_for("tftp"),
                             share=lab.share_for("tftp"))


def _start_http(lab, spec):
    from labsim.services.http import HttpAuthRule

    auth = [HttpAuthRule(rule.path, rule.scheme, dict(rule.users), rule.realm) for rule in spec.auth]
    config = HttpServerConfig(root=lab.root, directory_listing=spec.directory_listing, cert_dir=lab.cert_dir,
                              uploads=spec.uploads, upload_dir=spec.upload_dir, auth=auth, tls=spec.tls,
                              cert_file=spec.cert_file, key_file=spec.key_file, idle_timeout_s=spec.idle_timeout_s,
                              header_timeout_s=spec.header_timeout_s, auth_secret=lab.auth_secret,
                              upload_root=lab.upload_folder(spec))
    return start_http_server(lab.reactor, config, host=spec.address, port=lab.port_for("http"),
                             share=lab.share_for("http"))


FTP_PER_ADDRESS = FtpServerConfig.max_connections_per_address  # labsim serve's default


def _start_ftp(lab, spec):
    config = FtpServerConfig(root=lab.root, users=dict(spec.users), anonymous=spec.anonymous, uploads=spec.uploads,
                             upload_dir=spec.upload_dir, passive_ports=spec.passive_ports,
                             idle_timeout_s=spec.idle_timeout_s,
                             max_connections_per_address=lab.per_address_limit(spec.max_connections_per_address,
                                                                               FTP_PER_ADDRESS),
                             upload_root=lab.upload_folder(spec))
    return start_ftp_server(lab.reactor, config, host=spec.address, port=lab.port_for("ftp"),
                            share=lab.share_for("ftp"))


def _start_dns(lab, spec):
    from labsim.services.dns import DnsServerConfig
    from labsim.services.dns_net import start_dns_server

    config = DnsServerConfig(spec.record_configs(), tcp_idle_timeout_s=spec.tcp_idle_timeout_s,
                             tcp_max_connections_per_address=lab.per_address_limit(
                                 spec.tcp_max_connections_per_address, TCP_MAX_CONNECTIONS_PER_ADDRESS))
    return start_dns_server(lab.reactor, config, host=spec.address, port=lab.port_for("dns"),
                            share=lab.share_for("dns"))


def _start_pnp(lab, spec):
    config = PnpResponderConfig(url=spec.url, per_vendor=dict(spec.per_vendor), per_model=dict(spec.per_model))
    return start_pnp_server(lab.reactor, config, host=spec.address, port=lab.port_for("pnp"),
                            interface=spec.interface, interface_port=spec.interface_port)


# The services that can share their port with other processes (``labsim run --workers``
# runs them in every worker: labsim.net.reuseport). DHCP holds the leases and stays one;
# PnP answers multicast SUBSCRIBEs on an interface.
SHAREABLE = ("tftp", "http", "ftp", "dns")

# The services whose handle takes a fault link (``handle.link``); see attach_faults.
LINKED_SERVICES = ("tftp", "dns", "pnp", "ftp")

STARTERS = {"dhcp": _start_dhcp, "tftp": _start_tftp, "http": _start_http, "ftp": _start_ftp,
            "dns": _start_dns, "pnp": _start_pnp}


def _stats_of(name: str, handle) -> dict:
    if name == "dhcp":
        return dict(handle[0].stats)
    stats = handle.stats
    if name == "http":
        result = {"requests": stats.requests, "connections": stats.connections, "bytes_sent": stats.bytes_sent,
                  "status": {str(code): n for code, n in sorted(stats.status.items())}}
        if getattr(stats, "uploads", 0) or getattr(stats, "bytes_received", 0):
            result.update(uploads=stats.uploads, bytes_received=stats.bytes_received)
        return result
    return dict(stats) if isinstance(stats, dict) else dict(vars(stats))


def _port_of(name: str, handle) -> int:
    return handle[1].getHost().port if name == "dhcp" else handle.port


def _stop(name: str, handle):
    return defer.maybeDeferred(handle[1].stopListening if name == "dhcp" else handle.stop)


class ServiceStartError(Exception):
    """A service could not start; the message names the service and the scenario key."""


def _start_error(name: str, spec, port: int, exc: Exception) -> ServiceStartError:
    reason = str(getattr(exc, "socketError", None) or exc)
    if "in use" in reason.lower():
        reason = "address already in use"
    elif "permission denied" in reason.lower():
        reason = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    return ServiceStartError(
        f"{LABELS[name]} cannot listen on {spec.address}:{port}: {reason} "
        f"(change services.{name}.port in the scenario, or set it to 0 for any free port)")


class LabServices:
    """The scenario's services on one reactor: started, described, counted, stopped and
    (for the timeline) stopped and started again, all by one table."""

    def __init__(self, reactor, spec, root: str, *, cert_dir: str | None = None, faults=None,
                 upload_folders=None, own_fleet: bool = False, share_ports: str | None = None,
                 shared=SHAREABLE):
        self.reactor = reactor
        # "open" / "join": the SHAREABLE services bind their ports with SO_REUSEPORT, so
        # several processes serve them (labsim.net.reuseport); None: this process alone.
        self.share_ports = share_ports
        self.shared = tuple(shared)  # which of them
        self.auth_secret: bytes | None = None  # HTTP Digest nonces' key, shared with the other processes
        # True under `labsim run`: the only clients are the run's own phones, which all come
        # from one address, so a per-address limit would throttle the fleet, not a hog.
        self.own_fleet = own_fleet
        self.spec = spec
        self.root = root
        # upload_dir -> the folder a service's uploads really go to (labsim.run.UploadFolders);
        # None: into the root itself.
        self.upload_folders = upload_folders
        self.cert_dir = cert_dir
        self.faults = faults  # labsim.faults.FaultSet: the scenario's injected faults
        self.running: dict[str, object] = {}  # name -> handle
        # name -> the handles of its earlier starts, which the timeline stopped: the
        # report's counters of a service are the whole run's.
        self.stopped: dict[str, list] = {}
        # The port each service got on its first start: a service asked for port 0 keeps
        # the port the kernel gave it when the timeline restarts it (phones were told it).
        self.bound_ports: dict[str, int] = {}

    def upload_folder(self, spec) -> str | None:
        """Where the service ``spec`` stores uploads, if it takes any and not in the root."""
        if not spec.uploads or self.upload_folders is None:
            return None
        return self.upload_folders.folder(spec.upload_dir)

    # The handles by name (None when that service is not running).
    dhcp = property(lambda self: self.running.get("dhcp"))
    tftp = property(lambda self: self.running.get("tftp"))
    http = property(lambda self: self.running.get("http"))
    ftp = property(lambda self: self.running.get("ftp"))
    dns = property(lambda self: self.running.get("dns"))
    pnp = property(lambda self: self.running.get("pnp"))

    def start(self):
        for name in SERVICE_ORDER:
            if getattr(self.spec, name, None) is not None:
                self._start_one(name)
        return defer.succeed(None)

    def per_address_limit(self, configured: int | None, serve_default: int) -> int:
        """A scenario's per-client-address connection limit; unset: ``serve_default`` for
        real clients (``labsim serve``), none (0) for the run's own fleet."""
        if configured is not None:
            return configured
        return 0 if self.own_fleet else serve_default

    def share_for(self, name: str) -> str | None:
        if name not in self.shared or not self.share_ports:
            return None
        # A restart (the timeline) joins the port other processes may still serve.
        return "join" if name in self.bound_ports else self.share_ports

    def hand_over(self, names) -> defer.Deferred:
        """Stop serving ``names`` here (other processes joined their ports and serve
        them); their ports stay known (``bound_ports``)."""
        return defer.gatherResults([_stop(name, self.running.pop(name)) for name in names
                                    if name in self.running], consumeErrors=True)

    def port_for(self, name: str) -> int:
        return self.bound_ports.get(name, getattr(self.spec, name).port)

    def _start_one(self, name: str) -> None:
        spec = getattr(self.spec, name)
        try:
            handle = STARTERS[name](self, spec)
        except (OSError, CannotListenError) as exc:
            raise _start_error(name, spec, self.port_for(name), exc) from exc
        self.running[name] = handle
        self.bound_ports.setdefault(name, _port_of(name, handle))
        self.attach_faults()

    def ports(self) -> dict[str, int]:
        """The port each running service listens on (what ``--ports-file`` writes)."""
        return {name: _port_of(name, handle) for name, handle in self.running.items()}

    @property
    def dhcp_port(self) -> int:
        return _port_of("dhcp", self.running["dhcp"])

    def describe(self) -> str:
        return ", ".join(f"{LABELS[name]} {getattr(self.spec, name).address}:{_port_of(name, handle)}"
                         for name, handle in self.running.items())

    def stats(self) -> dict:
        """Each service's counters over the run: those of every start added up (a service
        the timeline restarted starts afresh; one it stopped is still counted)."""
        result = {}
        for name in SERVICE_ORDER:
            handles = self.stopped.get(name, []) + ([self.running[name]] if name in self.running else [])
            if handles:
                result[name] = add_counters([_stats_of(name, handle) for handle in handles])
        return result

    @defer.inlineCallbacks
    def stop(self):
        # The handles stay in `running`: their counters are still read after the stop.
        for name, handle in list(self.running.items()):
            yield _stop(name, handle)

    # --- the timeline's handles on running services ----------------------------------

    def attach_faults(self) -> None:
        """Put every running service behind the fault set: a ``FaultyLink`` on the
        datagram and stream paths of TFTP, DNS, PnP and FTP (each handle's ``link``), the
        set itself on the HTTP resource. DHCP faults sit on the fleet's relay, where both
        directions pass. Called after each start, so a service the timeline restarts is
        behind the faults again, like the others."""
        if self.faults is None:
            return
        from labsim.faults import FaultyLink

        for name, handle in self.running.items():
            if name in LINKED_SERVICES:
                handle.link = FaultyLink(self.faults, name, self.reactor)
        if self.http is not None:
            self.http.site.resource.faults = self.faults
            self.http.site.resource.clock = self.reactor

    def control(self, verb: str, name: str) -> str:
        """stop / start / restart one service by name (the timeline)."""
        if getattr(self.spec, name, None) is None:
            raise ValueError(f"the scenario runs no {name} service")
        stopping = None
        if verb in ("stop", "restart") and name in self.running:
            handle = self.running.pop(name)
            self.stopped.setdefault(name, []).append(handle)
            stopping = _stop(name, handle)
        if verb in ("start", "restart") and name not in self.running:
            if stopping is not None and not stopping.called:
                # Twisted closes a listening socket on the reactor's next turn: binding
                # the same port before that fails (EADDRINUSE for HTTP and DNS over TCP).
                stopping.addCallback(lambda _: None if name in self.running else self._start_one(name))
                stopping.addErrback(lambda failure: _log.failure("restarting {name} failed", failure, name=name))
            else:
                self._start_one(name)
        return f"{verb} {name}"

    def write_ports_file(self, path: str) -> None:
        """``{"dhcp": 6767, "http": 41234, ...}`` to ``path``, whole or not at all (a
        script polling for it never reads half): how a test or a script finds the ports
        of services asked for port 0."""
        import json
        import os

        temporary = f"{path}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(self.ports(), handle)
            handle.write("\n")
        os.replace(temporary, path)

    def set_dhcp_options(self, options: dict) -> str:
        return f"DHCP options set: {', '.join(map(str, self._dhcp_server().set_options(options)))}"

    def remove_dhcp_options(self, keys: list) -> str:
        return f"DHCP options removed: {', '.join(map(str, self._dhcp_server().remove_options(keys)))}"

    def _dhcp_server(self):
        if self.dhcp is None:
            raise ValueError("labsim's DHCP server is not running")
        return self.dhcp[0].server
