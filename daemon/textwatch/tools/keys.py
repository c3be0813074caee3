"""`textwatch keys generate DIR --name NAME`: a CURVE key pair for the bus (docs/operations.md, "Secure").

Writes DIR/NAME.key (the public key, 0644: it is handed out) and
DIR/NAME.key_secret (public + secret key, 0600: it never leaves this host), in
ZeroMQ's certificate format (`zmq.auth.create_certificates`). Both are
created under umask 077, so the secret is never readable by others, not even
for a moment. Existing files are never overwritten.

One pair for the daemon (bus.curve_secret_key; its .key is every client's
bus.curve_server_key) and one per client (subscriber, remote worker: its
bus.curve_client_secret_key; its .key goes into the daemon's
bus.curve_allowed_keys folder).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import zmq.auth

from textwatch.errors import ExitCode

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _key_name(value: str) -> str:
    if not NAME.match(value) or value.startswith("."):
        raise argparse.ArgumentTypeError(f"{value!r}: use 1-64 letters, digits, '.', '_' or '-' (a file name)")
    return value


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    generate = actions.add_parser("generate", help="write a new key pair: DIR/NAME.key and DIR/NAME.key_secret")
    generate.add_argument("dir", type=Path, metavar="DIR", help="folder for the two files (created 0700 if absent)")
    generate.add_argument("--name", required=True, type=_key_name, help="file name of the pair, e.g. daemon or the host name")


def run_keys(args: argparse.Namespace) -> int:
    if args.keys_action == "generate":
        return _run_generate(args.dir, args.name)
    raise AssertionError(f"unknown keys action {args.keys_action}")


def generate(folder: Path, name: str) -> tuple[Path, Path]:
    """Create the pair; (public, secret) paths. FileExistsError if either file is already there."""
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists() or path.is_symlink():
            raise FileExistsError(f"{path} exists; remove it or choose another --name")
    old_umask = os.umask(0o077)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        zmq.auth.create_certificates(folder, name)
    finally:
        os.umask(old_umask)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return public, secret


def _run_generate(folder: Path, name: str) -> int:
    try:
        public, secret = generate(folder, name)
    except FileExistsError as err:
        print(f"textwatch keys: {err}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except OSError as err:
        print(f"textwatch keys: cannot write into {folder}: {err.strerror}", file=sys.stderr)
        return int(ExitCode.PARTIAL)
    public, secret = public.resolve(), secret.resolve()
    print(f"secret key: {secret} (mode 0600; keep it on this host)")
    print(f"public key: {public}")
    print("for the daemon (the binding side):")
    print(f'  [bus] curve_secret_key = "{secret}"')
    print(f"  give {public.name} to every client; it is their bus.curve_server_key")
    print("for a client (textwatch subscribe, textwatch worker):")
    print(f'  [bus] curve_client_secret_key = "{secret}"')
    print(f"  copy {public.name} into the daemon's bus.curve_allowed_keys folder, then restart the daemon")
    return int(ExitCode.OK)
