"""The scenario's services, started together on one reactor over one provisioning root."""

from __future__ import annotations

from twisted.internet import defer

from labsim.services.dhcp import DhcpServerConfig
from labsim.services.dhcp_udp import start_dhcp_server
from labsim.services.ftp import FtpServerConfig, start_ftp_server
from labsim.services.http import HttpServerConfig, start_http_server
from labsim.services.pnp import PnpResponderConfig, start_pnp_server
from labsim.services.tftp import TftpServerConfig
from labsim.services.tftp_udp import start_tftp_server
from labsim.wire import dhcp_options


def dhcp_config(spec) -> DhcpServerConfig:
    """The scenario's ``services.dhcp`` (already validated) as the server's configuration."""
    import ipaddress

    from labsim.services.dhcp_classes import ClientClass, VendorClassMatch
    from labsim.services.udp import interface_ipv4

    classes = [
        ClientClass(c.name, VendorClassMatch(*c.match.vendor_class.kind_and_value()),
                    dhcp_options.encode_options(c.options))
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
        options=dhcp_options.encode_options(spec.options),
        reservations=reservations,
        classes=classes,
    )


class LabServices:
    def __init__(self, reactor, spec, root: str, *, cert_dir: str | None = None, faults=None):
        self.reactor = reactor
        self.spec = spec
        self.root = root
        self.cert_dir = cert_dir
        self.faults = faults  # labsim.faults.FaultSet: the scenario's injected faults
        self.dhcp = None  # (protocol, port)
        self.tftp = None
        self.http = None
        self.ftp = None
        self.pnp = None
        self.dns = None

    def start(self):
        spec = self.spec
        if spec.dhcp is not None:
            from labsim.services.lease_file import resolve_lease_path

            # cert_dir is the report folder (`labsim run`, `labsim serve`): a relative lease_file lives there.
            self.dhcp = start_dhcp_server(self.reactor, dhcp_config(spec.dhcp), host=spec.dhcp.address,
                                          port=spec.dhcp.port, interface=spec.dhcp.interface,
                                          interface_port=spec.dhcp.interface_port,
                                          lease_file=resolve_lease_path(spec.dhcp.lease_file, self.cert_dir))
        if spec.tftp is not None:
            config = TftpServerConfig(root=self.root, blksize_max=spec.tftp.blksize_max,
                                      timeout_s=spec.tftp.timeout_s, max_retransmits=spec.tftp.max_retransmits)
            self.tftp = start_tftp_server(self.reactor, config, host=spec.tftp.address, port=spec.tftp.port)
        if spec.http is not None:
            config = HttpServerConfig(root=self.root, directory_listing=spec.http.directory_listing,
                                      cert_dir=self.cert_dir, uploads=spec.http.uploads,
                                      upload_dir=spec.http.upload_dir)
            self.http = start_http_server(self.reactor, config, host=spec.http.address, port=spec.http.port)
        if spec.ftp is not None:
            config = FtpServerConfig(root=self.root, users=dict(spec.ftp.users), anonymous=spec.ftp.anonymous,
                                     uploads=spec.ftp.uploads, upload_dir=spec.ftp.upload_dir,
                                     passive_ports=spec.ftp.passive_ports)
            self.ftp = start_ftp_server(self.reactor, config, host=spec.ftp.address, port=spec.ftp.port)
        if spec.dns is not None:
            from labsim.services.dns import DnsServerConfig, start_dns_server
            from labsim.wire.dns_records import DnsRecordConfig

            records = [DnsRecordConfig(r.name, r.type, r.value, r.ttl) for r in spec.dns.records]
            self.dns = start_dns_server(self.reactor, DnsServerConfig(records), host=spec.dns.address, port=spec.dns.port)
        if spec.pnp is not None:
            config = PnpResponderConfig(url=spec.pnp.url, per_vendor=dict(spec.pnp.per_vendor),
                                        per_model=dict(spec.pnp.per_model))
            self.pnp = start_pnp_server(self.reactor, config, host=spec.pnp.address, port=spec.pnp.port)
        return defer.succeed(None)

    @property
    def dhcp_port(self) -> int:
        return self.dhcp[1].getHost().port

    def describe(self) -> str:
        parts = []
        if self.dhcp is not None:
            parts.append(f"DHCP {self.spec.dhcp.address}:{self.dhcp_port}")
        if self.tftp is not None:
            parts.append(f"TFTP {self.spec.tftp.address}:{self.tftp.port}")
        if self.http is not None:
            parts.append(f"HTTP {self.spec.http.address}:{self.http.port}")
        if self.ftp is not None:
            parts.append(f"FTP {self.spec.ftp.address}:{self.ftp.port}")
        if self.pnp is not None:
            parts.append(f"PnP {self.spec.pnp.address}:{self.pnp.port}")
        if self.dns is not None:
            parts.append(f"DNS {self.spec.dns.address}:{self.dns.port}")
        return ", ".join(parts)

    def stats(self) -> dict:
        result = {}
        if self.dhcp is not None:
            result["dhcp"] = dict(self.dhcp[0].stats)
        if self.tftp is not None:
            result["tftp"] = dict(self.tftp.stats)
        if self.http is not None:
            stats = self.http.stats
            result["http"] = {"requests": stats.requests, "bytes_sent": stats.bytes_sent,
                              "status": {str(code): n for code, n in sorted(stats.status.items())}}
            if self.spec.http.uploads:  # upload counters only when the scenario turns uploads on
                result["http"].update(uploads=stats.uploads, bytes_received=stats.bytes_received)
        if self.ftp is not None:
            result["ftp"] = dict(self.ftp.stats)
        if self.pnp is not None:
            result["pnp"] = dict(self.pnp.stats)
        if self.dns is not None:
            result["dns"] = vars(self.dns.stats) if hasattr(self.dns.stats, "__dict__") else dict(self.dns.stats)
        return result

    @defer.inlineCallbacks
    def stop(self):
        if self.dhcp is not None:
            yield self.dhcp[1].stopListening()
        if self.tftp is not None:
            yield self.tftp.stop()
        if self.http is not None:
            yield self.http.stop()
        if self.ftp is not None:
            yield self.ftp.stop()
        if self.pnp is not None:
            yield self.pnp.stop()
        if self.dns is not None:
            yield self.dns.stop()

    # --- the timeline's handles on running services ----------------------------------

    def attach_faults(self) -> None:
        """Route TFTP datagrams and HTTP answers through the fault set. (DHCP faults sit on
        the fleet's relay, where both directions pass.)"""
        if self.faults is None:
            return
        from labsim.faults import FaultyLink

        if self.tftp is not None:
            self.tftp.link = FaultyLink(self.faults, "tftp", self.reactor)
        if self.http is not None:
            self.http.site.resource.faults = self.faults
            self.http.site.resource.clock = self.reactor

    def control(self, verb: str, name: str) -> str:
        """stop / start / restart one service by name (the timeline)."""
        if name not in ("dhcp", "tftp", "http") or getattr(self.spec, name, None) is None:
            raise ValueError(f"the scenario runs no {name} service")
        running = getattr(self, name) is not None
        if verb in ("stop", "restart") and running:
            self._stop_one(name)
        if verb in ("start", "restart") and (verb == "restart" or not running):
            self._start_one(name)
        return f"{verb} {name}"

    def _stop_one(self, name: str) -> None:
        service = getattr(self, name)
        if name == "dhcp":
            service[1].stopListening()
        else:
            service.stop()
        setattr(self, name, None)

    def _start_one(self, name: str) -> None:
        # Start just this one again on the same address and port, with faults re-attached.
        saved = {other: getattr(self, other) for other in ("dhcp", "tftp", "http") if other != name}
        only = type(self.spec)(**{n: (getattr(self.spec, n) if n == name else None) for n in type(self.spec).model_fields})
        spec, self.spec = self.spec, only
        try:
            self.start()
        finally:
            self.spec = spec
        for other, value in saved.items():
            setattr(self, other, value)
        self.attach_faults()

    def set_dhcp_options(self, options: dict) -> str:
        server = self._dhcp_server()
        encoded = dhcp_options.encode_options(options)
        server.reconfigure_options({**server.config.options, **encoded})
        return f"DHCP options set: {', '.join(str(code) for code in encoded)}"

    def remove_dhcp_options(self, keys: list) -> str:
        server = self._dhcp_server()
        codes = {dhcp_options.option_code(key) for key in keys}
        server.reconfigure_options({code: v for code, v in server.config.options.items() if code not in codes})
        return f"DHCP options removed: {', '.join(str(code) for code in sorted(codes))}"

    def _dhcp_server(self):
        if self.dhcp is None:
            raise ValueError("labsim's DHCP server is not running")
        return self.dhcp[0].server
