"""`twinedge passwd FILE USER`: add or change a user of the embedded broker's password file.

The password is asked twice on a terminal, or read as the first line of
standard input when it is not a terminal (``echo secret | twinedge passwd ...``),
so it never appears on the command line or in the shell history.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from edge.broker.auth import PasswordFileError, set_password

__all__ = ["add_arguments", "run"]

MIN_PASSWORD = 8
EX_DATAERR = 65
EX_CANTCREAT = 73


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="the password file (created with mode 0600 if missing)")
    parser.add_argument("user", help="the MQTT user name")
    parser.add_argument(
        "--allow-short", action="store_true", help=f"accept a password shorter than {MIN_PASSWORD} characters"
    )


def _read_password() -> str | None:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password again: "):
            print("the two passwords differ; nothing changed", file=sys.stderr)
            return None
        return first
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    password = _read_password()
    if password is None:
        return EX_DATAERR
    if not password:
        print("empty password; nothing changed", file=sys.stderr)
        return EX_DATAERR
    if len(password) < MIN_PASSWORD and not args.allow_short:
        print(f"password shorter than {MIN_PASSWORD} characters; use --allow-short to accept it", file=sys.stderr)
        return EX_DATAERR
    try:
        new = set_password(args.file, args.user, password)
    except PasswordFileError as exc:
        print(exc, file=sys.stderr)
        return EX_DATAERR
    except OSError as exc:
        print(f"cannot write {args.file}: {exc}", file=sys.stderr)
        return EX_CANTCREAT
    print(f"{'added' if new else 'updated'} user {args.user!r} in {args.file}")
    return 0
