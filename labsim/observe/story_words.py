"""A phone's DHCP exchanges and downloads in plain words, as its story says them: the
dashboard's phone view (ui/story.py) and ``labsim story`` (observe/phone_history.py)."""

from __future__ import annotations


def dhcp_words(message_type: str, direction: str, yiaddr: str, xid_text: str) -> str:
    """``DHCP OFFER received (offers 10.1.0.12), xid 0x1a2b3c4d``."""
    words = f"DHCP {message_type} {'sent' if direction == 'out' else 'received'}"
    if yiaddr and yiaddr != "0.0.0.0":
        words += f" ({'offers' if message_type == 'OFFER' else 'address'} {yiaddr})"
    return words + f", xid {xid_text}"


def fetch_words(kind: str, url: str, status: str, size: int, latency: float, detail: str, md5: str) -> str:
    """``GET http://…/y000000000066.cfg: ok, 131 bytes, MD5 …, 1.0 ms`` (PUT for an upload)."""
    verb = "PUT" if kind == "upload" else "GET"
    text = f"{verb} {url}: {status}"
    if status == "ok":
        text += f", {size} bytes" + (f", MD5 {md5}" if md5 and kind == "fetch" else "")
    elif detail:
        text += f" ({detail})"
    return text + f", {latency * 1000:.1f} ms"
