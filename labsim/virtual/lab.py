"""The scenario's lab in memory, for a run in virtual time: labsim's own services as
their I/O-free cores (or the thinnest adapter that answers like them), and a network
that carries the phones' DHCP, downloads and PnP to them on the simulated clock.

``VirtualServices`` answers to what a run asks of ``LabServices`` (describe, stats,
stop/start/restart from the timeline, DHCP options), ``VirtualNetwork`` to what a
``PhoneDriver`` and the run ask of ``LoopbackNetwork``. The phones are the same code
either way; only these adapters differ.

What each service is here:

- DHCP: ``services.dhcp.DhcpServer`` itself. Every message goes as bytes through the
  fault set's ``dhcp`` link both ways, as on the loopback relay. A ``lease_file`` is kept
  by the server's own ``LeaseFileKeeper``, its timer on the simulated clock (a background
  one: it does not keep a run going), so the times in the file are simulated time.
- HTTP(S): the HTTP server's own core, ``services.http_files.StaticFiles``, over the
  provisioning root (``virtual.http``): path checks, Basic/Digest challenges answered as
  the phones' fetcher answers them, PUTs into ``upload_dir`` stored where the scenario's
  uploads go; with the server's fault answers first (forced status, ``down``/``loss`` as
  503, ``slow_s``/``delay_s``).
- TFTP: the phones' own TFTP client against the TFTP server's own request handler and
  transfers (``virtual.tftp``), downloads and uploads alike, every datagram its own call
  on the clock, through the ``tftp`` faults as on sockets; the root's files read once
  per timeline action (``_RunFolder``), uploads on disk where a run on sockets stores them.
- PnP: ``services.pnp.PnpResponder`` itself, SIP as bytes.

- DNS: ``wire.dns_records.DnsAnswerer`` itself, asked by the phones' own resolver
  (``virtual.dns``) through the ``dns`` faults when a URL names its host.

- FTP: the phones' own FTP client against the FTP server's own pyftpdlib handlers
  (``virtual.ftp``), control and passive data connections over the lab's TCP
  (``virtual.tcp``), every segment a call on the clock; the ``ftp`` faults act inside
  the server as on sockets; uploads on disk where a run on sockets stores them.

What needs real sockets is refused (``scenario/virtual_time.py``).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from twisted.internet import defer

from labsim.faults import FaultyLink
from labsim.phones.events import FetchResult
from labsim.phones.packed import SharedValues
from labsim.services.dhcp import DhcpServer
from labsim.services.dhcp_udp import LeaseFileKeeper
from labsim.services.lease_file import resolve_lease_path
from labsim.services.disk_store import DiskFolder
from labsim.services.file_store import NoSuchFile, NotAllowed
from labsim.services.counters import add_counters
from labsim.services.lab import LABELS, SERVICE_ORDER, _stats_of, dhcp_config, lab_name_server
from labsim.transport.guard import NotLoopback, loopback_address
from labsim.transport.ftp_fetch import ftp_get, ftp_put
from labsim.transport.loopback import _url_credentials, is_host_name
from labsim.transport.dns_lookup import LookupFailed, lookup_counters
from labsim.virtual.dns import VirtualResolver
from labsim.virtual import tftp as virtual_tftp
from labsim.virtual.ftp import VirtualFtpServer
from labsim.virtual.http import GET, PUT, VirtualHttp
from labsim.virtual.tcp import LabReactor, TcpLab
from labsim.wire.dns_records import DnsAnswerer, Zone
from labsim.wire import dhcp, sip_pnp

LATENCY_S = 0.001  # each hop: a DHCP message, a download's answer
HTTP_TIMEOUT_S = 30.0  # LoopbackNetwork's HttpFetcher


class _Service:
    """One service's state in memory: its spec, counters, and whether it is running."""

    def __init__(self, name: str, spec):
        self.name = name
        self.spec = spec
        self.port = spec.port
        self.stats: dict = {}
        self.earlier: list[dict] = []  # the counters of its earlier starts: the report's are the run's
        self.http: VirtualHttp | None = None
        self.answerer: DnsAnswerer | None = None  # DNS
        self.ftp: VirtualFtpServer | None = None  # FTP: one start of the server, its sessions and ports
        self.tftp: virtual_tftp.VirtualTftpServer | None = None  # TFTP: its handler and running transfers
        self.keeper: LeaseFileKeeper | None = None  # DHCP with a lease_file


def _counters(service: _Service) -> dict:
    return _stats_of(service.name, service) if service.name in ("http", "dns") else dict(service.stats)


class VirtualServices:
    def __init__(self, clock, spec, root: str, *, faults=None, upload_folders=None, cert_dir: str | None = None):
        self.clock = clock
        self.cert_dir = cert_dir  # the report folder: a relative lease_file lives there, as on sockets
        self.upload_folders = upload_folders  # run.UploadFolders: where uploads are stored
        self.spec = spec
        self.root = root
        self.faults = faults
        self.running: dict[str, _Service] = {}
        self.handles: dict[str, _Service] = {}  # every service ever started, for its counters
        self.dhcp_server: DhcpServer | None = None
        self.pnp_responder = None
        self.tftp_files = _RunFolder(root)  # what the TFTP server reads the root through

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

    def _start_one(self, name: str) -> None:
        spec = getattr(self.spec, name)
        service = self.handles.get(name) or _Service(name, spec)
        if name in self.handles:  # started again: its counters so far are kept, the new server's added
            service.earlier.append(_counters(service))
        if name == "dhcp":
            # A restarted server has forgotten its leases, as labsim's does without a lease file.
            self.dhcp_server = DhcpServer(self.dhcp_config(spec))
            service.stats = self.dhcp_server.stats
            if spec.lease_file:  # with one, it restores them (start_dhcp_server's order: load, then tick)
                service.keeper = LeaseFileKeeper(self.dhcp_server, resolve_lease_path(spec.lease_file, self.cert_dir),
                                                 self.clock.background())
                service.keeper.load()
                service.keeper.start()
        elif name == "ftp":
            upload_root = self.upload_folders.folder(spec.upload_dir) if spec.uploads and self.upload_folders else None
            link = FaultyLink(self.faults, "ftp", self.clock) if self.faults is not None else None
            service.ftp = VirtualFtpServer(spec, self.root, upload_root, self.clock, link)
            service.stats = service.ftp.stats
        elif name == "dns":
            # A restarted server starts afresh (its answer cache, counters from zero), as on sockets.
            service.answerer = DnsAnswerer(Zone(spec.record_configs()))
            service.stats = service.answerer.stats
        elif name == "pnp":
            from labsim.services.pnp import PnpResponder, PnpResponderConfig

            config = PnpResponderConfig(url=spec.url, per_vendor=dict(spec.per_vendor), per_model=dict(spec.per_model))
            config.local = (spec.address, spec.port)
            self.pnp_responder = PnpResponder(config)
            service.stats = self.pnp_responder.stats
        elif name == "http":
            # A restarted server starts afresh (empty caches, a new Digest secret, counters from zero), as on sockets.
            upload_root = self.upload_folders.folder(spec.upload_dir) if spec.uploads and self.upload_folders else None
            service.http = VirtualHttp(spec, self.root, self.clock, upload_root)
            service.stats = service.http.stats
        elif name == "tftp":
            # A restarted server starts afresh (its cache, counters from zero), as on sockets.
            upload_root = self.upload_folders.folder(spec.upload_dir) if spec.uploads and self.upload_folders else None
            handler = virtual_tftp.server_handler(spec, self.root, upload_root)
            handler.files = self.tftp_files
            service.tftp = virtual_tftp.VirtualTftpServer(handler, spec.address, spec.port)
            service.stats = handler.stats
        self.running[name] = self.handles[name] = service

    def dhcp_config(self, spec):
        """The DHCP server's configuration (a virtual-time shard's hands out its part of the pool)."""
        return dhcp_config(spec, lab_name_server(self.spec))

    @property
    def dhcp_port(self) -> int:
        return self.spec.dhcp.port

    def describe(self) -> str:
        return ", ".join(f"{LABELS[name]} {service.spec.address}:{service.port}"
                         for name, service in self.running.items()) + " (in memory, virtual time)"

    def stats(self) -> dict:
        """Each service's counters over the run: every start's added up, as on sockets."""
        return {name: add_counters([*self.handles[name].earlier, _counters(self.handles[name])])
                for name in SERVICE_ORDER if name in self.handles}

    def dns_answerer(self) -> DnsAnswerer | None:
        service = self.running.get("dns")
        return service.answerer if service is not None else None

    def stop(self):
        for service in self.running.values():
            self._stopped(service)
        self.running.clear()
        return defer.succeed(None)

    @staticmethod
    def _stopped(service: _Service) -> None:
        if service.tftp is not None:  # its running transfers are abandoned, as on sockets
            service.tftp.stop()
        if service.ftp is not None:  # its sessions are closed, its data ports forgotten, as on sockets
            service.ftp.stop()
        if service.keeper is not None:  # the lease file's last write, as DhcpListening.stopListening does it
            service.keeper.stop()
            service.keeper = None

    def attach_faults(self) -> None:
        """Faults are consulted per request (VirtualNetwork): nothing to attach."""

    def control(self, verb: str, name: str) -> str:
        if getattr(self.spec, name, None) is None:
            raise ValueError(f"the scenario runs no {name} service")
        if verb in ("stop", "restart"):
            if name in self.running:
                self._stopped(self.running.pop(name))
            if name == "dhcp":
                self.dhcp_server = None
            if name == "pnp":
                self.pnp_responder = None
        if verb in ("start", "restart") and name not in self.running:
            self._start_one(name)
        return f"{verb} {name}"

    def set_dhcp_options(self, options: dict) -> str:
        return f"DHCP options set: {', '.join(map(str, self._dhcp().set_options(options)))}"

    def remove_dhcp_options(self, keys: list) -> str:
        return f"DHCP options removed: {', '.join(map(str, self._dhcp().remove_options(keys)))}"

    def _dhcp(self) -> DhcpServer:
        if self.dhcp_server is None:
            raise ValueError("labsim's DHCP server is not running")
        return self.dhcp_server

    # --- files, as the HTTP and TFTP servers find them ---------------------------------

    def files_changed(self) -> None:
        self.tftp_files.forget()
        for service in self.handles.values():
            if service.http is not None:
                service.http.forget_files()

    def http_answer(self, request, path: str, body: bytes | None = None) -> tuple[FetchResult, float]:
        """(the phone's result, extra delay) for a GET (or, with ``body``, a PUT) of
        ``request.url``: the scenario's HTTP faults first, as the server consults them."""
        http = self.running["http"].http
        forced, delay = (None, 0.0)
        if self.faults is not None and self.faults._by_service.get("http"):
            forced, delay = self.faults.http(path, 0, self.clock.seconds())
        if forced is not None:
            return http.forced(forced), delay
        method = GET if body is None else PUT
        return http.exchange(method, request.url, request.user_agent, request.credentials, body), delay


class _RunFolder(DiskFolder):
    """The provisioning root as the TFTP server reads it in a run in memory: each name is
    read (and its path checked) once, and its answer, file or refusal, kept until the
    timeline next acts (``forget``): files change in a run only by the timeline's actions
    (uploads go to their own folder), so the stat a socket server makes per request to
    see a file is unchanged would always say it is."""

    def __init__(self, root: str):
        super().__init__(root)
        self._answers: dict[tuple, tuple] = {}  # name -> (data, version, locator) or (refusal class, message)
        self._versions: dict[str, tuple] = {}  # locator -> the version read() gave

    def forget(self) -> None:
        self._answers.clear()
        self._versions.clear()

    def read(self, parts: list[str]):
        key = tuple(parts)
        answer = self._answers.get(key)
        if answer is None:
            try:
                answer = super().read(parts)
                self._versions[answer[2]] = answer[1]
            except (NoSuchFile, NotAllowed) as refusal:
                answer = (type(refusal), str(refusal))
            self._answers[key] = answer
        if len(answer) == 2:
            raise answer[0](answer[1])
        return answer

    def version(self, locator: str):
        version = self._versions.get(locator)
        return version if version is not None else super().version(locator)


class _Relay:
    """What the run reads of the loopback relay: its counters."""

    def __init__(self):
        self.stats = {"sent": 0, "received": 0, "malformed": 0, "unknown_client": 0}
        self.phones: dict[bytes, object] = {}


class VirtualNetwork:
    def __init__(self, clock, services: VirtualServices, *, faults, relay_address: str = "127.0.0.2",
                 latency_s: float = LATENCY_S):
        self.clock = clock
        self.services = services
        self.faults = faults
        self.relay_address = relay_address
        self._giaddr = dhcp.encode_ip_list([relay_address])
        self.latency_s = latency_s
        self.relay = _Relay()
        self.stats = {"fetch_refused": 0, "dns_failures": 0, "dns_lookups": lookup_counters()}
        # A URL's target, worked out once (_work_out_target): a fleet asks for the same few
        # URLs every pass, each a lookup with no Python call (bounded: a phone has its own).
        self._target = SharedValues(1 << 17, self._work_out_target).one
        self.dhcp_link = FaultyLink(faults, "dhcp", clock) if faults is not None else None
        self.tftp = virtual_tftp.TftpWire(clock, faults, latency_s, self._tftp_server)
        self.ftp_reactor = LabReactor(clock, TcpLab(clock, latency_s, self._ftp_listener))
        dns = services.spec.dns
        self.resolver = None  # names in URLs: through the lab's DNS service (virtual.dns), as on sockets
        if dns is not None:
            self.resolver = VirtualResolver(clock, (dns.address, dns.port), services.dns_answerer,
                                            FaultyLink(faults, "dns", clock) if faults is not None else None,
                                            stats=self.stats["dns_lookups"])

    @property
    def pnp_reachable(self) -> bool:
        return self.services.spec.pnp is not None

    def set_dns_capture(self, capture) -> None:
        """--pcap: the lookups' datagrams go to ``capture`` too (LoopbackNetwork's)."""
        if self.resolver is not None:
            self.resolver.capture = capture

    def phone_view(self, phone):
        return self

    def attach(self, driver) -> None:
        self.relay.phones[driver.phone.mac_bytes] = driver

    # --- DHCP: through the relay, as bytes, both ways through the fault link ------------

    def send_dhcp(self, driver, message) -> None:
        self.relay.stats["sent"] += 1
        data = dhcp.relayed(dhcp.encode(message), self._giaddr)  # as the loopback relay does
        if self.dhcp_link is None:
            self._at_server(data)
        else:
            self.dhcp_link.carry("in", data, self._at_server)

    def _at_server(self, data: bytes) -> None:
        server = self.services.dhcp_server
        if server is None:
            return  # stopped: nobody answers, the phones' timers run
        try:
            message = dhcp.decode(data)
        except dhcp.DhcpDecodeError:
            server.stats["malformed"] = server.stats.get("malformed", 0) + 1
            return
        for reply in server.handle(message, self.clock.seconds()):
            self.clock.callLater(self.latency_s, self._leave_server, dhcp.encode(reply.message))

    def _leave_server(self, data: bytes) -> None:
        if self.dhcp_link is None:
            self._at_relay(data)
        else:
            self.dhcp_link.carry("out", data, self._at_relay)

    def _at_relay(self, data: bytes) -> None:
        stats = self.relay.stats
        stats["received"] += 1
        try:
            message = dhcp.decode(data)
        except dhcp.DhcpDecodeError:
            stats["malformed"] += 1
            return
        driver = self.relay.phones.get(message.chaddr)
        if driver is None:
            stats["unknown_client"] += 1
            return
        driver.dhcp_received(message)

    # --- downloads -------------------------------------------------------------------

    def fetch(self, request, connecting=None) -> defer.Deferred:
        deferred = defer.Deferred()
        self.fetch_into(request, lambda _request, result: deferred.callback(result), connecting)
        return deferred

    def fetch_into(self, request, deliver, connecting=None) -> None:
        """``fetch`` without the Deferred: ``deliver(request, result)`` when the answer
        arrives; ``connecting(address)`` when the request leaves (LoopbackNetwork.fetch)."""
        target = self._target(request.url)
        if target[4] is not None:  # a host name: the lab's DNS first
            self._looked_up(target[4], request, None, deliver, connecting)
            return
        if connecting is not None and target[3] is None:
            connecting(urlsplit(request.url).hostname)
        self._reply(request, None, target, deliver)

    def _looked_up(self, name: str, request, body: bytes | None, deliver, connecting=None) -> None:
        """The request once ``name`` is resolved by the lab's DNS, as LoopbackNetwork does
        it: an address off loopback is refused, a failed lookup is status ``dns``."""
        def reached(address):
            try:
                loopback_address(address)
            except NotLoopback as exc:
                self.stats["fetch_refused"] += 1
                self.clock.callLater(self.latency_s, deliver, request, FetchResult("refused", detail=str(exc)))
                return
            if connecting is not None:
                connecting(address)
            self._reply(request, body, None, deliver)

        def failed(failure):
            failure.trap(LookupFailed)
            self.stats["dns_failures"] += 1
            self.clock.callLater(self.latency_s, deliver, request,
                                 FetchResult("dns", detail=failure.getErrorMessage()))

        self.resolver.resolve_with(name, request.name_servers, request.dns).addCallbacks(reached, failed)

    def upload(self, request, connecting=None) -> defer.Deferred:
        """A ``Put`` (Polycom's logs and overrides): an HTTP(S) PUT, a TFTP WRQ or an FTP
        STOR to the lab's service, stored on disk where the scenario's uploads go."""
        scheme, _, _, refusal, name = self._target(request.url)
        deferred = defer.Deferred()
        deliver = lambda _request, result: deferred.callback(result)  # noqa: E731 (an upload is rare)
        if scheme not in ("http", "https", "ftp", "tftp"):
            self.clock.callLater(self.latency_s, deliver, request,
                                 FetchResult("error", detail=f"{scheme}:// uploads are not supported in virtual time"))
        elif name is not None:
            self._looked_up(name, request, request.body or b"", deliver, connecting)
        else:
            if connecting is not None and refusal is None:
                connecting(urlsplit(request.url).hostname)
            self._reply(request, request.body or b"", None, deliver)
        return deferred

    def _reply(self, request, body: bytes | None, target: tuple | None, deliver) -> None:
        """Answer a download (or, with ``body``, an upload): TFTP datagram by datagram on
        the clock (``virtual.tftp``), FTP segment by segment (``virtual.ftp``), the other
        schemes' answers one hop after the answer."""
        scheme, port, path, refusal, _ = self._target(request.url) if target is None else target
        if scheme == "ftp" and refusal is None:
            self._ftp(request, body, port, unquote(path.lstrip("/")), deliver)
            return
        if scheme == "tftp" and refusal is None:
            name = unquote(path.lstrip("/"))
            # Where the answers come from: the server's address (a URL may name it by name).
            server = (self.services.spec.tftp.address if self.services.spec.tftp is not None else "127.0.0.1", port)
            if body is None:
                self.tftp.get(server, name, request, deliver)
            else:
                self.tftp.put(server, name, body, request, deliver)
            return
        result, delay = self._answer(request, body, target)
        # Nothing cancels an answer on its way (HeapClock.schedule: no ScheduledCall to make).
        self.clock.schedule(self.latency_s + delay, deliver, request, result)

    def _ftp(self, request, body: bytes | None, port: int, path: str, deliver) -> None:
        """The phones' FTP client (``transport.ftp_fetch``) through the lab's TCP, as
        LoopbackNetwork runs it: a download's credentials travel in the request; an
        upload's are the URL's, else the request's."""
        parts = urlsplit(request.url)
        host = parts.hostname
        if is_host_name(host):  # looked up already: the address the lab's DNS gave is the service's
            host = self.services.spec.ftp.address if self.services.spec.ftp is not None else "127.0.0.1"
        if body is None:
            exchange = ftp_get(self.ftp_reactor, host, port, path, request.credentials)
        else:
            exchange = ftp_put(self.ftp_reactor, host, port, path, body, _url_credentials(parts) or request.credentials)
        if exchange.called:  # answered before any connection (a path naming no file): one hop, as before
            exchange.addCallback(lambda result: self.clock.schedule(self.latency_s, deliver, request, result))
        else:
            exchange.addCallback(lambda result: deliver(request, result))

    def _ftp_listener(self, port: int):
        """Where a connection to ``port`` arrives: the running FTP server's listening
        socket there (its service port, a passive data port), or None (refused)."""
        service = self.services.running.get("ftp")
        return service.ftp.listener_at(port) if service is not None else None

    def _tftp_server(self):
        """The TFTP service running now (``virtual.tftp.VirtualTftpServer``), or None."""
        service = self.services.running.get("tftp")
        return service.tftp if service is not None else None

    def _work_out_target(self, url: str) -> tuple:
        """(scheme, port, path, refusal or None, host name to resolve or None) of a URL."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        refusal = name = None
        if is_host_name(host):
            if self.resolver is not None:
                name = host
            else:
                refusal = f"{host}: a host name, and the lab has no DNS server (services.dns or network.dns_server)"
        else:
            try:
                loopback_address(host)
            except NotLoopback as exc:
                refusal = str(exc)
        default_port = {"http": 80, "https": 443, "tftp": 69, "ftp": 21}.get(parts.scheme, 0)
        return (parts.scheme, parts.port or default_port, parts.path or "/", refusal, name)

    def _answer(self, request, body: bytes | None = None, target: tuple | None = None) -> tuple[FetchResult, float]:
        """(result, delay) of a download, or with ``body`` an upload, by HTTP(S)
        (``target``: the URL's ``_target``, when the caller has it); TFTP and FTP are ``_reply``'s."""
        scheme, port, path, refusal, _ = self._target(request.url) if target is None else target
        if refusal is not None:
            self.stats["fetch_refused"] += 1
            return FetchResult("refused", detail=refusal), 0.0
        services = self.services
        if scheme in ("http", "https"):
            service = services.running.get("http")
            if service is None or service.port != port:
                return FetchResult("error", detail="HTTP: Connection was refused by other side: 111: "
                                                   "Connection refused."), 0.0
            result, delay = services.http_answer(request, path, body)
            if delay >= HTTP_TIMEOUT_S:
                return FetchResult("timeout", detail=f"HTTP: no answer within {HTTP_TIMEOUT_S:g} s"), HTTP_TIMEOUT_S
            return result, delay
        return FetchResult("error", detail=f"{scheme}:// downloads are not supported in virtual time: "
                                           f"{request.url}"), 0.0

    # --- PnP -------------------------------------------------------------------------

    def send_sip(self, driver, message, to) -> None:
        responder = self.services.pnp_responder
        if responder is None:
            return
        lease = driver.phone.lease
        source = (lease.address if lease else self.relay_address, 5060)
        answered_from = tuple(responder.config.local)
        for data, _target in responder.handle(message.encode(), source):
            self.clock.callLater(self.latency_s, driver.sip_received, sip_pnp.parse(data), answered_from, data)

    def close(self):
        return defer.succeed(None)
