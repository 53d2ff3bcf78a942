"""Password file (argon2, legacy sha512-crypt, mosquitto_passwd files), `twinedge passwd`, and topic ACLs."""

from __future__ import annotations

import argparse
import io
import shutil
import stat
import subprocess
import warnings
from pathlib import Path

import pytest

from edge.broker import passwd_cli
from edge.broker.acl import Acl, AclAction, filter_within, topic_matches, valid_filter
from edge.broker.auth import Authenticator, PasswordFileError, read_password_file, set_password, verify_hash
from edge.broker.config import AclRule

P, S, R = AclAction.PUBLISH, AclAction.SUBSCRIBE, AclAction.RECEIVE


def test_set_password_creates_a_private_file_and_updates_in_place(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    assert set_password(path, "dev-1", "first password") is True
    path.write_text("# plant 3 devices\n" + path.read_text())
    assert set_password(path, "dev-2", "second") is True
    assert set_password(path, "dev-1", "changed password") is False
    users = read_password_file(path)
    assert sorted(users) == ["dev-1", "dev-2"]
    assert verify_hash("changed password", users["dev-1"])
    assert not verify_hash("first password", users["dev-1"])
    assert path.read_text().startswith("# plant 3 devices\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dev-1\n", "line 1: expected 'user:hash'"),
        ("# ok\n\ndev-1:plaintext\n", "line 3: user 'dev-1' has a hash of unknown kind"),
    ],
)
def test_bad_password_file_lines_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "passwd"
    path.write_text(text)
    with pytest.raises(PasswordFileError, match=message):
        read_password_file(path)


def test_legacy_sha512_crypt_hash_verifies() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from passlib.hash import sha512_crypt
    hashed = sha512_crypt.using(rounds=5000).hash("s3cret!")
    assert verify_hash("s3cret!", hashed)
    assert not verify_hash("wrong", hashed)


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed (apt mosquitto)")
def test_a_mosquitto_passwd_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "mosquitto.passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "press-3", "pa55word"], check=True, timeout=30)
    users = read_password_file(path)
    assert users["press-3"].startswith("$7$")
    assert verify_hash("pa55word", users["press-3"])
    assert not verify_hash("pa55wore", users["press-3"])


async def test_authenticator_checks_and_remembers_good_passwords(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    set_password(path, "dev-1", "correct horse")
    auth = Authenticator.from_file(path)
    assert await auth.check("dev-1", "correct horse")
    assert await auth.check("dev-1", "correct horse")  # from memory
    assert not await auth.check("dev-1", "correct horsf")
    assert not await auth.check("nobody", "correct horse")
    assert not await auth.check(None, None)


def _cli(tmp_path: Path, stdin: str, *extra: str, monkeypatch: pytest.MonkeyPatch) -> int:
    parser = argparse.ArgumentParser()
    passwd_cli.add_arguments(parser)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return passwd_cli.run(parser.parse_args([str(tmp_path / "passwd"), "dev-9", *extra]))


def test_passwd_cli_reads_the_password_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _cli(tmp_path, "a long password\n", monkeypatch=monkeypatch) == 0
    assert verify_hash("a long password", read_password_file(tmp_path / "passwd")["dev-9"])
    assert _cli(tmp_path, "short\n", monkeypatch=monkeypatch) != 0
    assert _cli(tmp_path, "short\n", "--allow-short", monkeypatch=monkeypatch) == 0
    assert _cli(tmp_path, "\n", monkeypatch=monkeypatch) != 0


@pytest.mark.parametrize(
    ("topic_filter", "topic", "match"),
    [
        ("twin/+/telemetry", "twin/a/telemetry", True),
        ("twin/+/telemetry", "twin/a/b/telemetry", False),
        ("twin/#", "twin", True),
        ("twin/#", "twin/a/b", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/b", "a/b", True),
        ("a/+", "a/", True),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, match: bool) -> None:
    assert topic_matches(topic_filter, topic) is match


@pytest.mark.parametrize(
    ("requested", "allowed", "inside"),
    [
        ("twinedge/e1/frames/+", "twinedge/#", True),
        ("twin/#", "twin/+/telemetry", False),
        ("twin/+/telemetry", "twin/+/telemetry", True),
        ("twin/a/telemetry", "twin/+/telemetry", True),
        ("twin/+/#", "twin/+/telemetry", False),
        ("#", "twinedge/#", False),
        ("$SYS/#", "#", False),
    ],
)
def test_filter_within(requested: str, allowed: str, inside: bool) -> None:
    assert filter_within(requested, allowed) is inside


def test_valid_filter() -> None:
    assert valid_filter("a/+/#")
    assert not valid_filter("a/#/b")
    assert not valid_filter("a/b+")
    assert not valid_filter("")


def test_default_acl_lets_devices_publish_telemetry_and_read_the_edge_topics() -> None:
    acl = Acl(None)
    assert acl.allowed("dev-1", "c", P, "twin/dev-9/telemetry")
    assert not acl.allowed("dev-1", "c", P, "twinedge/e1/frames/dev-9")
    assert acl.allowed("dev-1", "c", S, "twinedge/e1/frames/+")
    assert not acl.allowed("dev-1", "c", S, "#")
    assert acl.allowed(None, "c", R, "twinedge/e1/alerts")


def test_explicit_rules_with_user_and_client_placeholders() -> None:
    acl = Acl([
        AclRule(username="*", publish=["twin/%u/telemetry"], subscribe=["twinedge/%c/#"]),
        AclRule(username="admin", publish=["#"], subscribe=["#"]),
    ])
    assert acl.allowed("press-3", "c1", P, "twin/press-3/telemetry")
    assert not acl.allowed("press-3", "c1", P, "twin/press-4/telemetry")
    assert acl.allowed("press-3", "c1", S, "twinedge/c1/x")
    assert not acl.allowed("+", "c1", P, "twin/+/telemetry")  # a wildcard user name widens nothing
    assert not acl.allowed("a/b", "c1", P, "twin/a/b/telemetry")
    assert acl.allowed("admin", "c", S, "#")
    assert not Acl([AclRule(username="admin", publish=["#"])]).allowed("other", "c", P, "x")


def test_deny_entries_are_checked_before_the_allows() -> None:
    acl = Acl([
        AclRule(username="dash", publish=["#"], subscribe=["#"], deny_publish=["plant/secret/#"],
                deny_subscribe=["plant/secret/#", "twin/%u/#"]),
    ])
    assert not acl.allowed("dash", "c", P, "plant/secret/recipe")
    assert acl.allowed("dash", "c", P, "plant/open")
    # A filter inside a denied one is refused (SUBACK 0x80); a wider one is granted ...
    assert not acl.allowed("dash", "c", S, "plant/secret/recipe")
    assert not acl.allowed("dash", "c", S, "plant/secret/+")
    assert acl.allowed("dash", "c", S, "#")
    assert acl.allowed("dash", "c", S, "plant/+/recipe")
    # ... and what it would match inside the denied topics is not delivered.
    assert not acl.allowed("dash", "c", R, "plant/secret/recipe")
    assert acl.allowed("dash", "c", R, "plant/open")
    assert not acl.allowed("dash", "c", R, "twin/dash/x")  # %u in a deny entry


def test_a_deny_entry_with_a_wildcard_user_name_still_denies() -> None:
    acl = Acl([AclRule(username="*", subscribe=["#"], deny_subscribe=["private/%u/#"])])
    # Substituted as it is: "private/+/#" then denies every user's private topics to this user (an
    # allow entry would be dropped instead; a deny that grows only refuses more).
    assert not acl.allowed("+", "c", R, "private/other/x")
    assert acl.allowed("+", "c", R, "public/x")
