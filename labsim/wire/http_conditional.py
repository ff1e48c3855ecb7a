"""HTTP validators, preconditions and ranges (RFC 9110 sections 8.8, 13, 14), I/O-free.

The server answers a conditional or range request in two steps: these functions decide
the status (and the byte span) from the request's fields and what identifies the file's
current version (a ``Representation``); ``StaticRoot`` then builds that response.

Choices where RFC 9110 leaves one:
- several ranges: those that overlap or touch are merged; if one span remains it is
  answered 206 with that span, otherwise the whole file goes out as a 200 (RFC 9110 14.2
  lets a server ignore Range). No multipart/byteranges: phones resume one span;
- a Range that does not parse (unknown unit, ``5-2``, junk, more than MAX_RANGES parts)
  is ignored (200), as 14.2 allows; one that parses but names no byte of the file is 416;
- an empty file ignores a suffix range (``-n``: satisfiable, yet no span can be named);
- Range applies to GET only (14.2: "GET is the only method for which range handling is
  defined"): a HEAD with Range gets the 200 headers.
"""

from __future__ import annotations

import calendar
import time
import hashlib
import re
from dataclasses import dataclass

MAX_RANGES = 64  # more parts than any client resuming a download sends: ignore the field

# Request fields that make a request more than "send the file", as twisted.web names them
# (it canonicalises names as they arrive). A request with none of them (almost every
# phone request) skips all of this with one set test.
CONDITIONAL_FIELDS = frozenset(
    (b"If-Match", b"If-None-Match", b"If-Modified-Since", b"If-Unmodified-Since", b"Range", b"If-Range"))

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Representation:
    """What the rules need to know about the selected representation: its strong entity
    tag (quotes included) and modification time, either None when it has none, and its
    length."""

    etag: bytes | None
    mtime_ns: int | None
    size: int


@dataclass(frozen=True)
class Answer:
    """The outcome: 200 (the whole file), 206 (bytes ``first``..``last`` inclusive), 304,
    412 or 416. Also 200 when the method should simply go ahead (PUT)."""

    status: int
    first: int = 0
    last: int = -1


def make_etag(ino: int, size: int, mtime_ns: int, ctime_ns: int) -> bytes:
    """A strong entity tag for one version of a file, from its stat key, never its body.

    Any write or ``utime`` changes ctime, a replace (``os.replace``, an upload) changes the
    inode; mtime and size ride along. Hashed so the tag does not publish inode numbers
    (the information leak Apache's ETags were reported for); stable across restarts.
    """
    key = b"%x:%x:%x:%x" % (ino, size, mtime_ns, ctime_ns)
    return b'"%s"' % hashlib.blake2b(key, digest_size=8).hexdigest().encode()


_MONTHS = {name: number for number, name in enumerate(
    (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"), 1)}
_TIME = rb"(\d\d):(\d\d):(\d\d)"
# RFC 9110 5.6.7: IMF-fixdate, and the two obsolete forms a recipient must still accept.
_IMF_FIXDATE = re.compile(rb"[A-Za-z]{3}, (\d\d) ([A-Za-z]{3}) (\d{4}) " + _TIME + rb" GMT")
_RFC850_DATE = re.compile(rb"[A-Za-z]{6,9}, (\d\d)-([A-Za-z]{3})-(\d\d) " + _TIME + rb" GMT")
_ASCTIME_DATE = re.compile(rb"[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) " + _TIME + rb" (\d{4})")


def parse_http_date(value: bytes, now: float) -> int | None:
    """An HTTP-date as whole seconds since the epoch; None if it is not one (a list of
    dates is not one). ``now`` places rfc850's two-digit years (RFC 9110 5.6.7: one more
    than 50 years ahead is the most recent past year with those digits)."""
    value = value.strip(b" \t")
    if match := _IMF_FIXDATE.fullmatch(value):
        day, month, year, hour, minute, second = match.groups()
    elif match := _ASCTIME_DATE.fullmatch(value):
        month, day, hour, minute, second, year = match.groups()
    elif match := _RFC850_DATE.fullmatch(value):
        day, month, year, hour, minute, second = match.groups()
        this_year = time.gmtime(now).tm_year
        year = this_year - this_year % 100 + int(year)
        if year > this_year + 50:
            year -= 100
    else:
        return None
    month = _MONTHS.get(month.lower())
    year, day, hour, minute, second = int(year), int(day), int(hour), int(minute), int(second)
    if month is None or not 1 <= day <= calendar.monthrange(year, month)[1] or hour > 23 or minute > 59 or second > 60:
        return None
    return calendar.timegm((year, month, day, hour, minute, second))


_ENTITY_TAG = re.compile(rb'[ \t]*(W/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|$)')


def parse_entity_tags(value: bytes) -> list[tuple[bool, bytes]] | None:
    """``If-Match``/``If-None-Match``: None for ``*``, else [(weak, opaque-tag)] in order.
    A member that is not an entity-tag (unquoted, say) is skipped: it matches nothing. An
    opaque-tag may hold a comma, so the list is scanned, not split."""
    if value.strip(b" \t") == b"*":
        return None
    tags, pos, end = [], 0, len(value)
    while pos < end:
        match = _ENTITY_TAG.match(value, pos)
        if match is None:  # junk: skip to the next member
            comma = value.find(b",", pos)
            pos = end if comma < 0 else comma + 1
            continue
        tags.append((match.group(1) is not None, match.group(2)))
        pos = match.end()
    return tags


def _if_match(value: bytes, rep: Representation | None) -> bool:
    """RFC 9110 13.1.1: ``*`` needs a current representation; a list, a strong match."""
    tags = parse_entity_tags(value)
    if tags is None:
        return rep is not None
    return rep is not None and rep.etag is not None and any(not weak and tag == rep.etag for weak, tag in tags)


def _if_none_match(value: bytes, rep: Representation | None) -> bool:
    """RFC 9110 13.1.2: false when ``*`` and a representation exists, or when a tag
    matches weakly (W/ disregarded: ours are all strong)."""
    tags = parse_entity_tags(value)
    if tags is None:
        return rep is None
    return rep is None or rep.etag is None or all(tag != rep.etag for _, tag in tags)


def _if_range(value: bytes, rep: Representation, now: float) -> bool:
    """RFC 9110 13.1.5: an entity-tag must match strongly; a date must equal Last-Modified
    exactly, and Last-Modified must be strong: the file unchanged for at least a second
    before now (8.8.2.2), else two versions could share that second."""
    value = value.strip(b" \t")
    if value[:1] == b'"' or value[:2] == b"W/":
        tags = parse_entity_tags(value)
        return tags is not None and len(tags) == 1 and not tags[0][0] and tags[0][1] == rep.etag
    date = parse_http_date(value, now)
    return (date is not None and rep.mtime_ns is not None and date == rep.mtime_ns // NS_PER_S
            and now * NS_PER_S - rep.mtime_ns >= NS_PER_S)


_RANGE_SPEC = re.compile(rb"(\d*)-(\d*)")
_BEYOND_ANY_FILE = 1 << 62


def _position(digits: bytes) -> int:
    # Longer than any file size could be: saturate rather than parse a huge number.
    return int(digits) if len(digits) <= 18 else _BEYOND_ANY_FILE


def select_byte_range(value: bytes, size: int) -> Answer:
    """A Range field's value against a representation of ``size`` bytes (RFC 9110 14.1):
    206 with one span, 416 when nothing is satisfiable, 200 when the field is ignored (see
    the choices above)."""
    whole = Answer(200, 0, size - 1)
    unit, equals, range_set = value.partition(b"=")
    if not equals or unit.strip(b" \t").lower() != b"bytes":
        return whole  # a unit we do not know is ignored (14.2)
    specs = []
    for element in range_set.split(b","):
        element = element.strip(b" \t")
        if not element:
            continue  # empty list elements are allowed (5.6.1)
        match = _RANGE_SPEC.fullmatch(element)
        if match is None or not (match.group(1) or match.group(2)) or len(specs) == MAX_RANGES:
            return whole
        first = _position(match.group(1)) if match.group(1) else None
        last = _position(match.group(2)) if match.group(2) else None
        if first is not None and last is not None and last < first:
            return whole  # an invalid int-range (14.1.1)
        specs.append((first, last))
    if not specs:
        return whole
    spans = []
    for first, last in specs:
        if first is None:  # suffix-range: the last ``last`` bytes
            if last == 0:
                continue
            if size == 0:
                return whole  # satisfiable, but there is no byte to name
            spans.append((max(size - last, 0), size - 1))
        elif first < size:
            spans.append((first, size - 1 if last is None else min(last, size - 1)))
    if not spans:
        return Answer(416)
    spans.sort()
    first, last = spans[0]
    for next_first, next_last in spans[1:]:
        if next_first > last + 1:
            return whole  # disjoint spans: the whole file rather than multipart
        last = max(last, next_last)
    return Answer(206, first, last)


def evaluate_request(method: bytes, fields: dict[bytes, bytes], rep: Representation | None, now: float,
                     ranges: bool = True) -> Answer:
    """RFC 9110 13.2.2, in its order, for a request whose answer would otherwise be 2xx.

    ``fields``: lower-case names of the CONDITIONAL_FIELDS present, each field's lines
    joined with ", ". ``rep``: the target's current representation, None when there is
    none (a PUT creating a file). ``ranges``: whether Range applies to this resource.
    ``now``: the server's wall clock, as in its Date field.
    """
    if_match = fields.get(b"if-match")
    if if_match is not None:
        if not _if_match(if_match, rep):
            return Answer(412)
    elif rep is not None and rep.mtime_ns is not None and b"if-unmodified-since" in fields:
        date = parse_http_date(fields[b"if-unmodified-since"], now)
        if date is not None and rep.mtime_ns // NS_PER_S > date:
            return Answer(412)
    safe = method == b"GET" or method == b"HEAD"
    if_none_match = fields.get(b"if-none-match")
    if if_none_match is not None:
        if not _if_none_match(if_none_match, rep):
            return Answer(304 if safe else 412)
    elif safe and rep is not None and rep.mtime_ns is not None and b"if-modified-since" in fields:
        date = parse_http_date(fields[b"if-modified-since"], now)
        # A date ahead of our clock is ignored (RFC 2616 14.25 called it invalid; 9110 no
        # longer says so): a client with a clock set wrong must still get new files.
        if date is not None and rep.mtime_ns // NS_PER_S <= date <= now:
            return Answer(304)
    size = rep.size if rep is not None else 0
    if ranges and method == b"GET" and rep is not None and b"range" in fields:
        if_range = fields.get(b"if-range")
        if if_range is None or _if_range(if_range, rep, now):
            return select_byte_range(fields[b"range"], size)
    return Answer(200, 0, size - 1)
