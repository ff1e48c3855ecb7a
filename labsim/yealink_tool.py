"""``labsim yealink encrypt|decrypt``: Yealink's Configuration Encryption Tool, offline.

Encrypting writes OUT and, beside it, ``<OUT stem>_Security.enc`` (the key under
Yealink's fixed key), the pair a phone with ``aes_key_in_file = 1`` downloads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labsim.wire import yealink_aes


def security_file_for(out: Path) -> Path:
    return out.with_name(f"{out.stem}_Security.enc")


def main_encrypt(args: argparse.Namespace) -> int:
    key = args.key or yealink_aes.generate_key()
    out = Path(args.output)
    out.write_bytes(yealink_aes.encrypt_file(Path(args.input).read_bytes(), key))
    security = security_file_for(out)
    security.write_bytes(yealink_aes.encrypt_key(key))
    print(f"wrote {out} and {security} (key {key})")
    return 0


def main_decrypt(args: argparse.Namespace) -> int:
    try:
        if args.key_file:
            key = yealink_aes.decrypt_key(Path(args.key_file).read_bytes())
        else:
            key = args.key
        plain = yealink_aes.decrypt_file(Path(args.input).read_bytes(), key)
    except ValueError as exc:
        print(f"labsim yealink decrypt: {exc}", file=sys.stderr)
        return 2
    Path(args.output).write_bytes(plain)
    print(f"wrote {args.output}")
    return 0


def _key_arg(value: str) -> str:
    if len(value) != 16 or not all(c in yealink_aes.KEY_ALPHABET for c in value):
        raise argparse.ArgumentTypeError("a Yealink key is 16 characters from [A-Za-z0-9]")
    return value


def add_yealink_commands(subparsers) -> None:
    """Register ``yealink encrypt`` and ``yealink decrypt`` on a top-level subparsers."""
    yealink = subparsers.add_parser("yealink", help="encrypt/decrypt Yealink config files")
    commands = yealink.add_subparsers(dest="yealink_command", required=True)

    enc = commands.add_parser("encrypt", help="encrypt a config file (AES-128-ECB)")
    enc.add_argument("input", metavar="IN")
    enc.add_argument("-o", "--output", required=True, metavar="OUT")
    enc.add_argument("--key", type=_key_arg, help="16 characters [A-Za-z0-9]; random if omitted")
    enc.set_defaults(func=main_encrypt)

    dec = commands.add_parser("decrypt", help="decrypt a config file")
    dec.add_argument("input", metavar="IN")
    dec.add_argument("-o", "--output", required=True, metavar="OUT")
    which = dec.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", type=_key_arg)
    which.add_argument("--key-file", metavar="NAME_Security.enc")
    dec.set_defaults(func=main_decrypt)
