"""Yealink's configuration-file encryption (the "Configuration Encryption Tool" scheme).

The scheme, checked against files made by Yealink's own tool
(/work/shared/vectors/yealink-aes):

- a random 16-character key from ``[A-Za-z0-9]``; its ASCII bytes are the AES-128 key;
- the file is AES-128-ECB encrypted with **no PKCS#7 padding**: the plaintext is padded
  with spaces (0x20) up to a multiple of 16 (the vector decrypts to text ending in
  ``"\\r\\n    "``: CRLF then four spaces to reach 800 bytes). A plaintext that is
  already a multiple of 16 gets no padding, which is what lets the decrypted vector
  re-encrypt to the very same file;
- the key itself is AES-128-ECB encrypted under a fixed key and stored as
  ``<name>_Security.enc`` (16 bytes).

ECB is what the phones implement; it is not a choice this module gets to improve.
"""

from __future__ import annotations

import re
import secrets
import string

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FIXED_KEY = b"EKs35XacP6eybA25"
BLOCK = 16
KEY_ALPHABET = string.ascii_letters + string.digits
PAD_BYTE = b" "
# What decrypt_file strips: the spec says phones strip trailing NUL or space padding
# (other tools pad with NULs).
_STRIP = b"\x00 "


def _aes_ecb(key: bytes, data: bytes, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


def _key_bytes(key: str) -> bytes:
    raw = key.encode("ascii")
    if len(raw) != BLOCK:
        raise ValueError(f"a Yealink key is 16 characters, got {len(raw)}")
    return raw


def generate_key(rng=secrets) -> str:
    """A fresh 16-character key; ``rng`` is anything with ``choice`` (e.g. a seeded
    ``random.Random`` for reproducible runs)."""
    return "".join(rng.choice(KEY_ALPHABET) for _ in range(BLOCK))


def pad(plaintext: bytes) -> bytes:
    """Space-pad to a whole number of blocks (nothing added when already aligned)."""
    return plaintext + PAD_BYTE * (-len(plaintext) % BLOCK)


def encrypt_file(plaintext: bytes, key: str) -> bytes:
    return _aes_ecb(_key_bytes(key), pad(plaintext), encrypt=True)


def decrypt_blocks(ciphertext: bytes, key: str) -> bytes:
    """Decrypt every block, padding included (byte for byte what was encrypted)."""
    if len(ciphertext) % BLOCK:
        raise ValueError(f"ciphertext length {len(ciphertext)} is not a multiple of 16")
    return _aes_ecb(_key_bytes(key), ciphertext, encrypt=False)


def decrypt_file(ciphertext: bytes, key: str) -> bytes:
    """Decrypt and drop the trailing NUL/space padding, as a phone does."""
    return decrypt_blocks(ciphertext, key).rstrip(_STRIP)


def encrypt_key(key: str) -> bytes:
    """The content of ``<name>_Security.enc``."""
    return _aes_ecb(FIXED_KEY, _key_bytes(key), encrypt=True)


def decrypt_key(security_enc: bytes) -> str:
    if len(security_enc) != BLOCK:
        raise ValueError(f"a _Security.enc file is 16 bytes, got {len(security_enc)}")
    raw = _aes_ecb(FIXED_KEY, security_enc, encrypt=False)
    # A wrong fixed key or a corrupt file gives random bytes: refuse rather than hand a
    # phone a key that will only produce garbage later.
    if not all(32 < b < 127 for b in raw):
        raise ValueError("_Security.enc does not decrypt to a printable key")
    return raw.decode("ascii")


_INI_SECTION = re.compile(rb"\[[ -~]{1,64}\][ \t]*(\r?\n|$)")  # a whole printable [section] line


def looks_encrypted(data: bytes) -> bool:
    """The phone's guess whether a downloaded config needs decrypting.

    Plain Yealink configs start with ``#!version`` (V70+) or an old INI style section
    line (``[ autoprovision ]``); any other text is still mostly printable, while AES
    output is uniformly random bytes. A lone ``[`` is not enough: one ciphertext in 256
    starts with that byte, and a fleet of phones with their own keys would have a few
    such files taken for plain text.
    """
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")  # BOM and blank lines are not content
    if head.startswith(b"#!version") or _INI_SECTION.match(head):
        return False
    if not data or len(data) % BLOCK:
        return False  # ECB output is always whole blocks
    sample = data[:512]
    printable = sum(1 for b in sample if 32 <= b < 127 or b in (9, 10, 13))
    return printable / len(sample) < 0.9
