"""The broker's password file: ``user:hash`` lines, read and verified without blocking the event loop.

New passwords are hashed with argon2id. For files carried over from other
brokers the verifier also accepts sha512-crypt (``$6$``, older amqtt/hbmqtt
files) and Mosquitto's PBKDF2-SHA512 (``$7$``, ``mosquitto_passwd``), so a site
can reuse the file of the Mosquitto it replaces. Lines starting with ``#`` and
blank lines are ignored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import tempfile
import warnings
from pathlib import Path

import argon2

from shared.errors import TwinedgeError

__all__ = ["Authenticator", "PasswordFileError", "hash_password", "read_password_file", "set_password", "verify_hash"]

log = logging.getLogger(__name__)

_argon2 = argon2.PasswordHasher()
USERNAME_MAX = 128


class PasswordFileError(TwinedgeError):
    """The password file is missing, unreadable or holds a line we cannot use."""


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (a new random salt each time)."""
    return _argon2.hash(password)


def _verify_sha512_crypt(password: str, hashed: str) -> bool:
    with warnings.catch_warnings():
        # passlib imports the stdlib 'crypt' module, deprecated since Python 3.11.
        warnings.simplefilter("ignore", DeprecationWarning)
        from passlib.hash import sha512_crypt
    try:
        return bool(sha512_crypt.verify(password, hashed))
    except ValueError:
        return False


def _verify_mosquitto_pbkdf2(password: str, hashed: str) -> bool:
    """``$7$<iterations>$<b64 salt>$<b64 sha512 pbkdf2>`` as written by mosquitto_passwd 2.x."""
    try:
        _, _, iterations, salt_b64, hash_b64 = hashed.split("$")
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
        rounds = int(iterations)
    except (ValueError, binascii.Error):
        return False
    if not 1 <= rounds <= 10_000_000:
        return False
    computed = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds, dklen=len(expected))
    return hmac.compare_digest(computed, expected)


def verify_hash(password: str, hashed: str) -> bool:
    """True when ``password`` matches ``hashed`` (argon2, $6$ sha512-crypt or $7$ mosquitto). Slow by design."""
    if hashed.startswith("$argon2"):
        try:
            return bool(_argon2.verify(hashed, password))
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False
    if hashed.startswith("$6$"):
        return _verify_sha512_crypt(password, hashed)
    if hashed.startswith("$7$"):
        return _verify_mosquitto_pbkdf2(password, hashed)
    return False


def _known_scheme(hashed: str) -> bool:
    return hashed.startswith(("$argon2", "$6$", "$7$"))


def read_password_file(path: Path) -> dict[str, str]:
    """username -> hash. Raises PasswordFileError naming the file and line of every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PasswordFileError(f"password file {path} not found (create it with `twinedge passwd`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PasswordFileError(f"cannot read password file {path}: {exc}") from None
    users: dict[str, str] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed:
            problems.append(f"line {number}: expected 'user:hash'")
        elif not _known_scheme(hashed):
            problems.append(f"line {number}: user {user!r} has a hash of unknown kind (argon2, $6$ or $7$ expected)")
        else:
            users[user] = hashed
    if problems:
        raise PasswordFileError(f"password file {path}: " + "; ".join(problems))
    return users


def set_password(path: Path, username: str, password: str) -> bool:
    """Add or replace ``username`` in the file (created with mode 0600). Returns True if the user was new.

    The file is rewritten atomically (temporary file + rename), comments kept.
    """
    if not username or len(username) > USERNAME_MAX or ":" in username or any(c.isspace() for c in username):
        raise PasswordFileError(f"user name must be 1..{USERNAME_MAX} characters without ':' or spaces")
    lines: list[str] = []
    if path.exists():
        read_password_file(path)  # refuse to rewrite a file we could not read back
        lines = path.read_text(encoding="utf-8").splitlines()
    entry = f"{username}:{hash_password(password)}"
    new = True
    for index, line in enumerate(lines):
        if line.strip().partition(":")[0] == username and not line.lstrip().startswith("#"):
            lines[index] = entry
            new = False
    if new:
        lines.append(entry)
    fd, tmp = tempfile.mkstemp(prefix=".passwd-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise
    return new


class Authenticator:
    """Checks username/password pairs against the password file.

    Hash verification (argon2: ~0.1 s and 64 MiB) runs in a worker thread, at most
    two at a time, so a reconnect storm cannot stall the broker or exhaust memory.
    A successful check is remembered (as a keyed digest of the password, never the
    password itself) so reconnects of a known device cost microseconds.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users
        self._limit = asyncio.Semaphore(2)
        self._pepper = os.urandom(32)
        self._good: dict[str, bytes] = {}

    @classmethod
    def from_file(cls, path: Path) -> Authenticator:
        users = read_password_file(path)
        log.info("%d MQTT user(s) loaded from %s", len(users), path)
        return cls(users)

    def _digest(self, username: str, password: str) -> bytes:
        return hmac.new(self._pepper, f"{username}\0{password}".encode(), hashlib.sha256).digest()

    async def check(self, username: str | None, password: str | None) -> bool:
        if not username or password is None:
            return False
        hashed = self._users.get(username)
        if hashed is None:
            return False
        digest = self._digest(username, password)
        known = self._good.get(username)
        if known is not None and hmac.compare_digest(known, digest):
            return True
        async with self._limit:
            ok = await asyncio.to_thread(verify_hash, password, hashed)
        if ok:
            self._good[username] = digest
        return ok
