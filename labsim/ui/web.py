"""The dashboard's web server (twisted.web): the page, its live feed, its API, /metrics.

    GET  /                  the page (static files shipped in the package; nothing from the internet)
    GET  /events            Server-Sent Events: a snapshot, then coalesced changes (labsim.ui.feed)
    GET  /api/info          the scenario, the lab exercise, whether this URL may control
    GET  /api/phone?mac=M   one phone's story
    GET  /api/services      counters, recent live-log lines, DHCP leases, faults in force
    GET  /api/packets?mac=M one phone's frames from the --pcap capture, as Wireshark lists them
    GET  /api/pcap?mac=M    the same frames as a pcap file
    POST /api/action        a trainer control: the text of a timeline ``do:``       (token)
    POST /api/check         the exercise's check (expectations judged now)
    GET  /metrics           Prometheus text format

A control needs the token printed at start, in the ``X-Labsim-Token`` header (the page
takes it from its own URL, ``/?token=…``); without it, or with another, the answer is
403 and nothing changes. Viewing needs no token: the read-only URL is the plain one.
"""

from __future__ import annotations

import hmac
import json
from importlib import resources

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet import defer, interfaces
from twisted.web import resource, server, static
from zope.interface import implementer

from labsim.ui.controls import ControlError
from labsim.wire.numbers import is_number

MAX_BODY = 256 * 1024


def _json(request, value, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value, separators=(",", ":")).encode()


NO_CAPTURE = {"error": "no capture of that phone (run with --pcap FILE)"}


def _pcap(request, mac: str, found) -> bytes:
    if found is None:
        return _json(request, NO_CAPTURE, 404)
    from labsim.ui.packets import pcap_bytes

    request.setHeader(b"content-type", b"application/vnd.tcpdump.pcap")
    filename = mac.lower().replace(":", "").replace("-", "")
    request.setHeader(b"content-disposition", f'attachment; filename="{filename}.pcap"'.encode())
    return pcap_bytes(*found)


def _later(request, value, render, failed: str = "the worker holding that phone did not answer"):
    """``render(value)`` now, or when ``value`` (a Deferred: a --workers run asks the
    worker that holds the phone, or every worker) fires; 502 saying ``failed`` if a
    worker could not answer."""
    if not isinstance(value, defer.Deferred):
        return render(value)

    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))  # the page went away meanwhile

    def answer(body: bytes) -> None:
        if not gone:
            request.write(body)
            request.finish()

    value.addCallback(render)
    value.addErrback(lambda failure: _json(request, {"error": f"{failed}: {failure.getErrorMessage()}"}, 502))
    value.addCallback(answer)
    return server.NOT_DONE_YET


def _static_dir() -> str:
    return str(resources.files("labsim.ui") / "static")


@implementer(interfaces.IPushProducer)
class _EventStream:
    """One page's SSE connection: a feed subscriber whose writes stop while the socket
    is full (Twisted pauses the producer) and resume with whatever the subscriber kept."""

    def __init__(self, hub, request):
        self.hub, self.request = hub, request
        self.subscriber = hub.feed.subscribe()
        self.paused = False
        self.closed = False

    def deliver(self) -> None:
        if self.paused or self.closed:
            return
        data = self.subscriber.take()
        if data:
            self.request.write(data)

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        self.deliver()

    def stopProducing(self):
        self.close()

    def close(self, _=None) -> None:
        if not self.closed:
            self.closed = True
            self.hub.feed.unsubscribe(self.subscriber)
            if self.deliver in self.hub.on_frame:
                self.hub.on_frame.remove(self.deliver)


class Events(resource.Resource):
    isLeaf = True

    def __init__(self, hub):
        super().__init__()
        self.hub = hub

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        stream = _EventStream(self.hub, request)
        request.registerProducer(stream, True)
        request.notifyFinish().addBoth(stream.close)
        self.hub.on_frame.append(stream.deliver)
        request.write(b"retry: 1000\n\n")
        stream.deliver()  # the snapshot: a new or reconnected page starts from the current state
        return server.NOT_DONE_YET


class Api(resource.Resource):
    isLeaf = True

    def __init__(self, hub):
        super().__init__()
        self.hub = hub

    def _may_control(self, request) -> bool:
        given = request.getHeader(b"x-labsim-token") or b""
        return bool(given) and hmac.compare_digest(given, self.hub.token.encode())

    def render_GET(self, request):
        name = b"/".join(request.postpath).decode("utf-8", "replace")
        if name == "info":
            token = (request.args.get(b"token") or [b""])[0]
            allowed = bool(token) and hmac.compare_digest(token, self.hub.token.encode())
            return _json(request, self.hub.info(allowed))
        if name == "phone":
            mac = (request.args.get(b"mac") or [b""])[0].decode("utf-8", "replace")
            return _later(request, self.hub.story(mac), lambda story: _json(request, story) if story is not None
                          else _json(request, {"error": f"no phone {mac!r} in this lab"}, 404))
        if name == "services":
            return _json(request, self.hub.services_view())
        if name in ("packets", "pcap"):
            mac = (request.args.get(b"mac") or [b""])[0].decode("utf-8", "replace")
            if name == "packets":
                return _later(request, self.hub.packets(mac), lambda rows: _json(request, {"packets": rows})
                              if rows is not None else _json(request, NO_CAPTURE, 404))
            return _later(request, self.hub.phone_capture(mac), lambda found: _pcap(request, mac, found))
        return _json(request, {"error": "not found"}, 404)

    def render_POST(self, request):
        name = b"/".join(request.postpath).decode("utf-8", "replace")
        if name not in ("action", "check"):
            return _json(request, {"error": "not found"}, 404)
        if name == "action" and not self._may_control(request):
            return _json(request, {"error": "forbidden: controls need the token printed when the lab started "
                                            "(the control URL); this is the read-only view"}, 403)
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _json(request, {"error": f"request body over {MAX_BODY // 1024} KiB"}, 413)
        if name == "check":
            return _later(request, self.hub.check(), lambda expectations: _json(request, {"expectations": expectations}),
                          "a worker did not answer the check")
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return _json(request, {"problems": [f"dashboard: the request body is not JSON: {exc}"]}, 400)
        text = payload.get("do") if isinstance(payload, dict) else None
        if not isinstance(text, str):
            return _json(request, {"problems": ['dashboard: send {"do": "<the text of a timeline do: value>"}']}, 400)
        try:
            records = self.hub.act(text)
        except ControlError as exc:
            return _json(request, {"problems": exc.problems}, 400)
        return _json(request, {"done": records})


class Metrics(resource.Resource):
    isLeaf = True

    def __init__(self, hub):
        super().__init__()
        self.hub = hub

    def render_GET(self, request):
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self.hub.metrics_registry)


def site_for(hub) -> server.Site:
    root = static.File(_static_dir())
    root.indexNames = ["index.html"]
    root.putChild(b"events", Events(hub))
    root.putChild(b"api", Api(hub))
    root.putChild(b"metrics", Metrics(hub))
    site = server.Site(root)
    site.displayTracebacks = False
    site.noisy = False
    return site


def parse_bind(text: str) -> tuple[str, int]:
    """``PORT`` (loopback) or ``HOST:PORT``; ValueError with a plain message otherwise."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not is_number(port) or not 0 <= int(port) <= 65535:
        raise ValueError(f"--ui wants PORT or HOST:PORT (e.g. 8089 or 127.0.0.1:8089), not {text!r}")
    return host, int(port)


def listen(reactor, hub, bind: tuple[str, int]):
    return reactor.listenTCP(bind[1], site_for(hub), interface=bind[0])


def urls(bind: tuple[str, int], port: int, token: str) -> tuple[str, str]:
    host = bind[0] if bind[0] not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    base = f"http://{host}:{port}/"
    return base + f"?token={token}", base



def start_dashboard(reactor, bind: tuple[str, int], hub, stream) -> object:
    """Listen (an error here is the caller's: nothing started yet), print both URLs."""
    port = listen(reactor, hub, bind)
    control, view = urls(bind, port.getHost().port, hub.token)
    stream.write(f"labsim: dashboard: {view}  (read-only, for students)\n"
                 f"labsim: dashboard controls: {control}  (trainer: keep this token to yourself)\n")
    stream.flush()
    return port
