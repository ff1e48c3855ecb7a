"""The worker protocol: AMP (Twisted's asynchronous messaging protocol) between a
``--workers`` parent and each worker, over two pipes of the worker process (fds 3 and 4,
as Twisted's own ``trial -j`` workers do), so the worker's stdout and stderr stay free.

A worker is ``labsim run FILE --shard i/N`` with ``--control-fds 3,4``. The exchange:

    worker -> parent   Hello(shard, phones)            the shard is built, waiting to start
    parent -> worker   Begin(start_at, targets)        one shared start instant for all shards
    worker -> parent   Changes(shard, phones, counters) every 0.2 s while something changed:
                                                       a stream of phone state changes and the
                                                       shard's running counters
    parent -> worker   Deliver(kind, macs, reboot)     a timeline action on the shard's phones
    parent -> worker   ChangeFault(verb, spec)         the timeline added or removed a fault
    parent -> worker   ControlService(verb, name)      the timeline stops/starts a file service the
                                                       worker serves too (scale/shared_services.py)
    parent -> worker   Finish(reason, complete)        end now; answered once shard.json is written

For a dashboard on the parent (``run --workers N --ui``), which reads the same stream:

    parent -> worker   Begin(..., stay_open=True)      the lab stays up after the fleet settles
    parent -> worker   PhoneStory(mac)                 one phone's story (labsim.ui.story), on demand
    parent -> worker   FlushCapture()                  the shard's --pcap frames so far reach its file
    parent -> worker   WriteShard(reason, complete)    write shard.json now and keep running (the
                                                       report a settled --ui lab writes)
    parent -> worker   JudgeFlash()                    "Check my lab": for each flash check of the
                                                       lab's check, the phones it selects in the
                                                       shard and those whose flash fails it

``Changes`` is the stream a live view reads: each entry is ``[mac, state, reboots,
powered_on_at, ready_at]`` (times from the shared start instant), and ``counters`` the
shard's totals (DHCP messages sent; ``requests``: requests per service so far, the
series report.html draws; ``http``/``tftp``: HTTP requests and TFTP transfers its own
services answered). A phone's story (its events, lease, flash) stays in its
worker and is asked for when a page opens the phone, so the stream stays one short
entry per changed phone every 0.2 s whatever the phones log. AMP caps one value at 64 KiB, so a
large batch is sent as several messages (``chunks``).
"""

from __future__ import annotations

import json

from twisted.protocols import amp

MAX_VALUE = 60_000  # bytes of JSON in one AMP value (the limit is 65,535)


class Hello(amp.Command):
    arguments = [(b"shard", amp.Integer()), (b"phones", amp.Integer())]
    response = []


class Begin(amp.Command):
    arguments = [(b"start_at", amp.Float()), (b"targets", amp.Unicode()),
                 (b"stay_open", amp.Boolean(optional=True))]
    response = []


class Deliver(amp.Command):
    arguments = [(b"kind", amp.Unicode()), (b"macs", amp.Unicode()), (b"reboot", amp.Boolean())]
    response = [(b"delivered", amp.Integer())]


class ChangeFault(amp.Command):
    arguments = [(b"verb", amp.Unicode()), (b"spec", amp.Unicode())]
    response = []


class ControlService(amp.Command):
    arguments = [(b"verb", amp.Unicode()), (b"name", amp.Unicode())]
    response = [(b"outcome", amp.Unicode())]


class Finish(amp.Command):
    arguments = [(b"reason", amp.Unicode()), (b"complete", amp.Boolean())]
    response = [(b"code", amp.Integer())]


class LongText(amp.Argument):
    """A text of any length: AMP caps one value at 64 KiB, so it travels as the values
    ``NAME.0``, ``NAME.1``, ... of the same box."""

    def toBox(self, name, strings, objects, proto):
        data = objects.pop(name.decode("ascii")).encode("utf-8")
        for part, start in enumerate(range(0, max(1, len(data)), MAX_VALUE)):
            strings[name + b".%d" % part] = data[start:start + MAX_VALUE]

    def fromBox(self, name, strings, objects, proto):
        parts, part = [], 0
        while name + b".%d" % part in strings:
            parts.append(strings[name + b".%d" % part])
            part += 1
        objects[name.decode("ascii")] = b"".join(parts).decode("utf-8")


class Changes(amp.Command):
    # counters: of any length (LongText): a storm's stage latencies in one flush pass 64 KiB
    arguments = [(b"shard", amp.Integer()), (b"phones", amp.Unicode()), (b"counters", LongText())]
    requiresAnswer = False


class PhoneStory(amp.Command):
    arguments = [(b"mac", amp.Unicode())]
    response = [(b"story", LongText())]  # JSON; "null" when the shard does not hold the phone


class FlushCapture(amp.Command):
    arguments = []
    response = []


class JudgeFlash(amp.Command):
    arguments = []
    # JSON: one [selected, [failing MAC, ...]] per flash check of the lab's check, in order
    response = [(b"results", LongText())]


class WriteShard(amp.Command):
    arguments = [(b"reason", amp.Unicode()), (b"complete", amp.Boolean())]
    response = []


def chunks(items: list, item_bytes: int) -> list[str]:
    """``items`` as JSON arrays of at most MAX_VALUE bytes each (``item_bytes`` is an
    upper estimate of one item's size)."""
    per = max(1, MAX_VALUE // max(1, item_bytes))
    parts = []
    for start in range(0, len(items), per):
        text = json.dumps(items[start:start + per], separators=(",", ":"))
        if len(text.encode()) > MAX_VALUE and per > 1:  # the estimate was low: smaller parts
            return chunks(items, item_bytes * 2)
        parts.append(text)
    return parts or ["[]"]
