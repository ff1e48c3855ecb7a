"""Validators, conditional requests and ranges in labsim's HTTP server (RFC 9110 8.8, 13,
14): the I/O-free rules first, then the server answering over a StringTransport (cached
files), then over real loopback sockets (streamed files, which a StringTransport cannot
pull)."""

from __future__ import annotations

import calendar
import email.utils
import os
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest as trial
from twisted.web.http import datetimeToString

from labsim.services import http as http_service
from labsim.services.http import HttpServerConfig
from labsim.services.http_web import start_http_server
from labsim.wire.http_conditional import (
    Answer,
    Representation,
    evaluate_request,
    make_etag,
    parse_entity_tags,
    parse_http_date,
    select_byte_range,
)
from tests.unit.test_http_server import FILE_BODY, _Wire, fetch

RFC_EXAMPLE = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT, the example of RFC 9110 5.6.7
NOW = 1_800_000_000.0


def date(seconds: float) -> bytes:
    return datetimeToString(int(seconds))


# --- HTTP-date --------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    b"Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
    b"Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 form
    b"Sun Nov  6 08:49:37 1994",  # ANSI C asctime()
    b"  Sun, 06 Nov 1994 08:49:37 GMT ",  # surrounding whitespace
    b"Sun, 06 NOV 1994 08:49:37 GMT",  # robust about the month's case
])
def test_the_three_date_forms_of_rfc_9110(text):
    assert parse_http_date(text, NOW) == RFC_EXAMPLE


@pytest.mark.parametrize("text", [
    b"", b"yesterday", b"Sun, 06 Nov 1994 08:49:37", b"Sun, 06 Nov 1994 08:49:37 UTC", b"Sun, 6 Nov 1994 08:49:37 GMT",
    b"Sun, 31 Feb 1994 08:49:37 GMT", b"Sun, 06 Nov 1994 24:00:00 GMT", b"Sun, 06 Foo 1994 08:49:37 GMT",
    b"Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",  # a list is not a date
    b"784111777",
])
def test_what_is_not_an_http_date(text):
    assert parse_http_date(text, NOW) is None


def test_two_digit_years_more_than_50_years_ahead_are_in_the_past():
    now = calendar.timegm((2026, 6, 1, 0, 0, 0))
    assert time.gmtime(parse_http_date(b"Monday, 01-Jan-30 00:00:00 GMT", now)).tm_year == 2030
    assert time.gmtime(parse_http_date(b"Monday, 01-Jan-76 00:00:00 GMT", now)).tm_year == 2076
    assert time.gmtime(parse_http_date(b"Monday, 01-Jan-77 00:00:00 GMT", now)).tm_year == 1977


def test_a_leap_second_is_accepted():
    assert parse_http_date(b"Sat, 31 Dec 2016 23:59:60 GMT", NOW) == calendar.timegm((2017, 1, 1, 0, 0, 0))


@given(st.integers(min_value=0, max_value=253402300799))  # up to 9999-12-31
def test_dates_as_python_and_twisted_format_them(seconds):
    imf = email.utils.formatdate(seconds, usegmt=True).encode()
    assert parse_http_date(imf, NOW) == seconds
    assert parse_http_date(datetimeToString(seconds), NOW) == seconds
    assert parse_http_date(time.asctime(time.gmtime(seconds)).encode(), NOW) == seconds


# --- entity tags ---------------------------------------------------------------------------


def test_entity_tag_lists():
    assert parse_entity_tags(b" * ") is None
    assert parse_entity_tags(b'"a", W/"b" ,"c,d",,"e"') == [(False, b'"a"'), (True, b'"b"'), (False, b'"c,d"'),
                                                           (False, b'"e"')]
    assert parse_entity_tags(b'abc, "x", w/"y", "un"terminated, "z"') == [(False, b'"x"'), (False, b'"z"')]
    assert parse_entity_tags(b"") == []
    assert parse_entity_tags(b'""') == [(False, b'""')]


def test_an_etag_is_strong_and_changes_with_every_part_of_the_stat_key():
    base = (1234, 4096, 1_700_000_000_123_456_789, 1_700_000_000_223_456_789)
    tag = make_etag(*base)
    assert re.fullmatch(rb'"[0-9a-f]{16}"', tag)  # quoted, no W/ prefix: strong
    assert make_etag(*base) == tag
    for i in range(4):
        changed = list(base)
        changed[i] += 1
        assert make_etag(*changed) != tag, i
    assert b"1234" not in tag and b"4d2" not in tag  # the inode is not published


# --- ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize("value, answer", [
    (b"bytes=0-99", (206, 0, 99)),
    (b"bytes=500-", (206, 500, 999)),
    (b"bytes=-100", (206, 900, 999)),
    (b"bytes=-2000", (206, 0, 999)),  # longer than the file: all of it
    (b"bytes=0-5000", (206, 0, 999)),  # last-pos past the end is clipped
    (b"bytes=999-999", (206, 999, 999)),
    (b"BYTES = 0-0", (206, 0, 0)),  # the unit is case-insensitive
    (b"bytes=1000-", (416,)),
    (b"bytes=1000-2000", (416,)),
    (b"bytes=-0", (416,)),
    (b"bytes=1000-,-0", (416,)),
    (b"bytes=99999999999999999999999-", (416,)),  # huge numbers saturate
    (b"bytes=0-99999999999999999999999", (206, 0, 999)),
    (b"bytes=-99999999999999999999999", (206, 0, 999)),
    # several: merged where they overlap or touch, else the whole file
    (b"bytes=0-9,10-19", (206, 0, 19)),
    (b"bytes=0-9, 5-20", (206, 0, 20)),
    (b"bytes=500-,-600", (206, 400, 999)),
    (b"bytes=0-1,,2-3", (206, 0, 3)),  # empty list elements are allowed
    (b"bytes=0-9,2000-3000", (206, 0, 9)),  # the unsatisfiable part is dropped
    (b"bytes=0-9,20-29", (200, 0, 999)),
    # ignored: not a byte range we can read
    (b"bytes=5-2", (200, 0, 999)),
    (b"bytes=abc", (200, 0, 999)),
    (b"bytes=-", (200, 0, 999)),
    (b"bytes=", (200, 0, 999)),
    (b"bytes 0-1", (200, 0, 999)),
    (b"items=0-1", (200, 0, 999)),
    (b"bytes=0x10-20", (200, 0, 999)),
    (b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(65)), (200, 0, 999)),  # too many parts
])
def test_select_byte_range(value, answer):
    assert select_byte_range(value, 1000) == Answer(*answer)


def test_ranges_of_an_empty_file():
    assert select_byte_range(b"bytes=0-", 0) == Answer(416)
    assert select_byte_range(b"bytes=-5", 0) == Answer(200, 0, -1)  # satisfiable, yet no byte to name


range_specs = st.one_of(
    st.tuples(st.integers(0, 300), st.none() | st.integers(0, 300)).filter(lambda r: r[1] is None or r[1] >= r[0]),
    st.tuples(st.none(), st.integers(0, 300)),
)


@given(size=st.integers(0, 250), spec=range_specs)
def test_one_range_against_python_slicing(size, spec):
    """RFC 9110 14.1.2's meaning of one range-spec, restated as Python slicing."""
    data = bytes(range(256))[:size]
    first, last = spec
    text = (b"%d" % first if first is not None else b"") + b"-" + (b"%d" % last if last is not None else b"")
    answer = select_byte_range(b"bytes=" + text, size)
    expected = data[first : None if last is None else last + 1] if first is not None else data[-last:] if last else b""
    if first is None and last and size == 0:
        assert answer.status == 200  # our choice for an empty file
    elif not expected:
        assert answer == Answer(416)
    else:
        assert answer.status == 206 and data[answer.first : answer.last + 1] == expected


@given(size=st.integers(1, 200), specs=st.lists(range_specs, min_size=1, max_size=6))
def test_several_ranges_never_lose_a_requested_byte(size, specs):
    text = b",".join((b"%d" % f if f is not None else b"") + b"-" + (b"%d" % l if l is not None else b"")
                     for f, l in specs)
    answer = select_byte_range(b"bytes=" + text, size)
    wanted = set()
    for first, last in specs:
        if first is None:
            wanted.update(range(max(size - last, 0), size) if last else ())
        else:
            wanted.update(range(first, min(size - 1 if last is None else last, size - 1) + 1))
    if not wanted:
        assert answer.status == 416
    else:
        assert answer.status in (200, 206) and 0 <= answer.first and answer.last <= size - 1
        assert wanted <= set(range(answer.first, answer.last + 1))
        if answer.status == 206:  # one span, and nothing in it that was not asked for
            assert set(range(answer.first, answer.last + 1)) == wanted


# --- the order of evaluation (RFC 9110 13.2.2) -----------------------------------------------

T = 1_700_000_000  # the file's Last-Modified second
REP = Representation(b'"v1"', T * 1_000_000_000 + 500_000_000, 1000)


def decide(fields, method=b"GET", rep=REP, now=T + 100.0, **kw):
    return evaluate_request(method, fields, rep, now, **kw).status


@pytest.mark.parametrize("fields, method, status", [
    ({}, b"GET", 200),
    ({b"if-none-match": b'"v1"'}, b"GET", 304),
    ({b"if-none-match": b'"v1"'}, b"HEAD", 304),
    ({b"if-none-match": b'W/"v1"'}, b"GET", 304),  # weak comparison
    ({b"if-none-match": b'"v0", "v1"'}, b"GET", 304),
    ({b"if-none-match": b'"v0"'}, b"GET", 200),
    ({b"if-none-match": b"*"}, b"GET", 304),
    ({b"if-none-match": b"*"}, b"PUT", 412),
    ({b"if-none-match": b'"v1"'}, b"PUT", 412),
    ({b"if-modified-since": date(T)}, b"GET", 304),
    ({b"if-modified-since": date(T + 50)}, b"HEAD", 304),
    ({b"if-modified-since": date(T - 1)}, b"GET", 200),
    ({b"if-modified-since": date(T + 200)}, b"GET", 200),  # ahead of the server's clock: ignored
    ({b"if-modified-since": b"not a date"}, b"GET", 200),
    ({b"if-modified-since": date(T)}, b"PUT", 200),  # GET and HEAD only
    ({b"if-none-match": b'"v0"', b"if-modified-since": date(T)}, b"GET", 200),  # If-None-Match wins
    ({b"if-match": b'"v1"'}, b"GET", 200),
    ({b"if-match": b'"v0", "v1"'}, b"PUT", 200),
    ({b"if-match": b'W/"v1"'}, b"GET", 412),  # strong comparison
    ({b"if-match": b'"v0"'}, b"GET", 412),
    ({b"if-match": b"*"}, b"PUT", 200),
    ({b"if-unmodified-since": date(T)}, b"PUT", 200),
    ({b"if-unmodified-since": date(T - 1)}, b"PUT", 412),
    ({b"if-unmodified-since": date(T - 1)}, b"GET", 412),
    ({b"if-unmodified-since": b"junk"}, b"PUT", 200),
    ({b"if-match": b'"v1"', b"if-unmodified-since": date(T - 1)}, b"PUT", 200),  # If-Match wins
    ({b"if-match": b'"v0"', b"if-none-match": b'"v1"'}, b"GET", 412),  # 412 before 304
    ({b"if-none-match": b'"v1"', b"range": b"bytes=0-9"}, b"GET", 304),  # 304 before a range
    ({b"if-match": b'"v0"', b"range": b"bytes=5000-"}, b"GET", 412),  # 412 before 416
    ({b"range": b"bytes=0-9"}, b"GET", 206),
    ({b"range": b"bytes=0-9"}, b"HEAD", 200),  # Range is for GET only
    ({b"range": b"bytes=5000-"}, b"GET", 416),
    ({b"range": b"bytes=0-9", b"if-range": b'"v1"'}, b"GET", 206),
    ({b"range": b"bytes=0-9", b"if-range": b'"v0"'}, b"GET", 200),
    ({b"range": b"bytes=0-9", b"if-range": b'W/"v1"'}, b"GET", 200),  # If-Range compares strongly
    ({b"range": b"bytes=0-9", b"if-range": date(T)}, b"GET", 206),
    ({b"range": b"bytes=0-9", b"if-range": date(T - 1)}, b"GET", 200),
    ({b"range": b"bytes=0-9", b"if-range": date(T + 1)}, b"GET", 200),  # exact match only
    ({b"range": b"bytes=5000-", b"if-range": b'"v0"'}, b"GET", 200),  # no 416 when the range is off
])
def test_evaluation_order(fields, method, status):
    assert decide(fields, method) == status


def test_if_range_by_date_needs_a_last_modified_at_least_a_second_old():
    fields = {b"range": b"bytes=0-9", b"if-range": date(T)}
    assert decide(fields, now=T + 1.6) == 206
    assert decide(fields, now=T + 1.2) == 200  # two versions could still share that second


def test_without_a_representation():
    assert decide({b"if-match": b"*"}, b"PUT", rep=None) == 412
    assert decide({b"if-match": b'"v1"'}, b"PUT", rep=None) == 412
    assert decide({b"if-none-match": b"*"}, b"PUT", rep=None) == 200
    assert decide({b"if-unmodified-since": date(T - 1)}, b"PUT", rep=None) == 200  # no date to compare
    unversioned = Representation(None, None, 10)  # a directory listing
    assert decide({b"if-none-match": b'"v1"'}, rep=unversioned) == 200
    assert decide({b"if-match": b'"v1"'}, rep=unversioned) == 412
    assert decide({b"if-modified-since": date(T)}, rep=unversioned) == 200
    assert decide({b"range": b"bytes=0-1"}, rep=unversioned, ranges=False) == 200


# --- the server, cached files, byte for byte (no sockets) ---------------------------------------


@pytest.fixture
def wire(tmp_path):
    (tmp_path / "a.cfg").write_bytes(FILE_BODY)
    (tmp_path / "d").mkdir()
    return _Wire(tmp_path)


def get(wire, path=b"/a.cfg", method=b"GET", **fields):
    head = b"".join(b"%s: %s\r\n" % (name.replace("_", "-").encode(), value) for name, value in fields.items())
    (response,) = wire.send(b"%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method, path, head), method)
    return response


def test_files_carry_validators_and_head_matches_get(wire, tmp_path):
    response = get(wire)
    etag = response.header(b"etag")
    assert re.fullmatch(rb'"[0-9a-f]{16}"', etag)
    assert response.header(b"last-modified") == datetimeToString(os.stat(tmp_path / "a.cfg").st_mtime_ns // 10**9)
    assert response.header(b"accept-ranges") == b"bytes"
    head = get(wire, method=b"HEAD")
    names = (b"etag", b"last-modified", b"accept-ranges", b"content-length", b"content-type")
    assert [head.header(n) for n in names] == [response.header(n) for n in names] and head.body == b""
    assert get(wire).header(b"etag") == etag  # stable while the file is


def test_not_modified(wire):
    etag, last_modified = get(wire).header(b"etag"), get(wire).header(b"last-modified")
    for method in (b"GET", b"HEAD"):
        for fields in ({"If-None-Match": etag}, {"If-None-Match": b'"x", ' + etag}, {"If-None-Match": b"*"},
                       {"If-Modified-Since": last_modified}):
            response = get(wire, method=method, **fields)
            assert (response.status, response.body) == (304, b""), (method, fields)
            assert response.header(b"etag") == etag and response.header(b"content-length") is None
    assert get(wire, If_None_Match=b'"other"').status == 200
    assert get(wire, If_None_Match=b'"other"', If_Modified_Since=last_modified).status == 200
    # the connection is still in step: a 304 has no body to mis-frame the next response
    assert get(wire).body == FILE_BODY
    assert wire.site.stats.status[304] == 8 and wire.site.access_log[-2]["status"] == 200


def test_precondition_failed(wire):
    etag = get(wire).header(b"etag")
    assert get(wire, If_Match=etag).status == 200
    response = get(wire, If_Match=b'"not-it"')
    assert (response.status, response.body) == (412, b"412 Precondition Failed\n")
    assert get(wire, If_Unmodified_Since=b"Sat, 01 Jan 2000 00:00:00 GMT").status == 412
    assert get(wire, If_Unmodified_Since=datetimeToString(time.time() + 3600)).status == 200


def test_partial_content(wire):
    size = len(FILE_BODY)
    etag = get(wire).header(b"etag")
    response = get(wire, Range=b"bytes=0-99")
    assert (response.status, response.body) == (206, FILE_BODY[:100])
    assert response.header(b"content-range") == b"bytes 0-99/%d" % size
    assert response.header(b"content-length") == b"100" and response.header(b"etag") == etag
    assert get(wire, Range=b"bytes=-10").body == FILE_BODY[-10:]
    assert get(wire, Range=b"bytes=3000-").body == FILE_BODY[3000:]
    assert get(wire, Range=b"bytes=0-9,20-29").body == FILE_BODY  # disjoint: the whole file
    response = get(wire, Range=b"bytes=%d-" % size)
    assert response.status == 416 and response.header(b"content-range") == b"bytes */%d" % size
    head = get(wire, method=b"HEAD", Range=b"bytes=0-99")
    assert (head.status, head.header(b"content-length")) == (200, b"%d" % size)
    assert get(wire, Range=b"bytes=0-9", If_Range=etag).status == 206
    response = get(wire, Range=b"bytes=0-9", If_Range=b'"old"')
    assert (response.status, response.body) == (200, FILE_BODY)
    # three whole files, the five spans, the 416's text; the HEAD sent no body
    assert wire.site.stats.bytes_sent == 3 * size + 100 + 10 + (size - 3000) + 10 + len(
        b"416 Requested Range not satisfiable\n")


def test_a_replaced_file_is_a_new_version_even_with_the_same_size_and_times(wire, tmp_path):
    path = tmp_path / "a.cfg"
    first = get(wire)
    st = os.stat(path)
    new = tmp_path / "new.tmp"
    new.write_bytes(FILE_BODY.upper())
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime (inode and ctime differ)
    os.replace(new, path)
    second = get(wire, If_None_Match=first.header(b"etag"))
    assert (second.status, second.body) == (200, FILE_BODY.upper())
    assert second.header(b"etag") != first.header(b"etag")
    assert second.header(b"last-modified") == first.header(b"last-modified")


def test_a_rewrite_in_place_with_the_mtime_put_back_is_a_new_version(wire, tmp_path):
    path = tmp_path / "a.cfg"
    first = get(wire)
    st = os.stat(path)
    path.write_bytes(FILE_BODY.lower())  # as ``cp -p`` over the file would: same inode and size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = get(wire, If_None_Match=first.header(b"etag"))
    assert (second.status, second.body) == (200, FILE_BODY.lower())


def test_a_file_stamped_in_the_future_says_modified_now(wire, tmp_path):
    future = time.time() + 86400
    os.utime(tmp_path / "a.cfg", (future, future))
    response = get(wire)
    assert parse_http_date(response.header(b"last-modified"), time.time()) <= time.time()
    assert parse_http_date(response.header(b"last-modified"), time.time()) <= parse_http_date(
        response.header(b"date"), time.time())


def test_directory_listings_have_no_validators(tmp_path):
    (tmp_path / "d").mkdir()
    wire = _Wire(tmp_path)
    wire.site.resource.listing = True
    response = get(wire, b"/d/")
    assert response.status == 200 and response.header(b"etag") is None
    assert get(wire, b"/d/", If_None_Match=b'"x"').status == 200
    response = get(wire, b"/d/", If_None_Match=b"*")
    assert (response.status, response.header(b"content-length")) == (304, None)
    assert get(wire, b"/d/", If_Match=b'"x"').status == 412
    assert get(wire, b"/d/", Range=b"bytes=0-1").status == 200


def test_conditional_fields_do_not_beat_404_or_405(wire):
    assert get(wire, b"/missing.cfg", If_None_Match=b"*").status == 404
    assert get(wire, b"/missing.cfg", Range=b"bytes=0-1").status == 404
    assert get(wire, method=b"DELETE", If_Match=b'"x"').status == 405


# --- over sockets: files large enough to stream -------------------------------------------------


class StreamedFileTests(trial.TestCase):
    timeout = 20

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.big = os.urandom(http_service.CACHE_FILE_MAX + 500_000)
        with open(os.path.join(self.root, "fw.rom"), "wb") as f:
            f.write(self.big)
        self.handle = start_http_server(reactor, HttpServerConfig(root=self.root), port=0)
        self.addCleanup(self.handle.stop)

    def get(self, method="GET", **headers):
        return threads.deferToThread(fetch, self.handle.port, "/fw.rom", method=method,
                                     headers={k.replace("_", "-"): v for k, v in headers.items()})

    @defer.inlineCallbacks
    def test_validators_ranges_and_conditions_on_a_streamed_file(self):
        size = len(self.big)
        status, headers, body = yield self.get()
        self.assertEqual((status, body == self.big, headers["accept-ranges"]), (200, True, "bytes"))
        etag, last_modified = headers["etag"], headers["last-modified"]
        _, head, _ = yield self.get("HEAD")
        self.assertEqual((head["etag"], head["last-modified"], head["content-length"]), (etag, last_modified, str(size)))
        status, headers, body = yield self.get(Range="bytes=1000000-1099999")
        self.assertEqual((status, headers["content-range"], body), (206, f"bytes 1000000-1099999/{size}",
                                                                     self.big[1000000:1100000]))
        status, _, body = yield self.get(Range="bytes=-12345")
        self.assertEqual((status, body), (206, self.big[-12345:]))
        status, headers, body = yield self.get(Range="bytes=1234567-", If_Range=etag)
        self.assertEqual((status, body), (206, self.big[1234567:]))
        status, _, body = yield self.get(Range="bytes=1234567-", If_Range='"stale"')
        self.assertEqual((status, body == self.big), (200, True))
        status, headers, body = yield self.get(Range=f"bytes={size}-")
        self.assertEqual((status, headers["content-range"]), (416, f"bytes */{size}"))
        status, headers, body = yield self.get(If_None_Match=etag)
        self.assertEqual((status, body, headers["etag"]), (304, b"", etag))
        status, _, _ = yield self.get(If_Modified_Since=last_modified)
        self.assertEqual(status, 304)
        status, _, _ = yield self.get(If_Match='"stale"')
        self.assertEqual(status, 412)
        self.assertEqual(self.handle.stats.status, {200: 3, 206: 3, 304: 2, 412: 1, 416: 1})
