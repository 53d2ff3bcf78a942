"""Console sign-in and sessions over HTTP (the app in-process), and the session store on both backends.

What a person and an attacker meet: a person's token signs in and gets a
session cookie (HttpOnly, SameSite=Strict, Secure only over https) that the
API's role checks take exactly as the token; a wrong token, an edge's token,
a huge or mistyped body are refused with a sentence; changes need the
session's CSRF token and a same-site origin; signing out, rotating or
revoking the token, and the idle and absolute limits end a session; failed
sign-ins past the limit get 429 whatever the token.
"""

from __future__ import annotations

import html
from pathlib import Path

import httpx
import pytest

from cloud.auth import hash_token
from cloud.config import ConsoleConfig
from cloud.identities import add_user, revoke, rotate
from cloud.sessions import CSRF_HEADER, SESSION_COOKIE, SessionKeeper
from cloud.storage.base import Storage
from tests.cloud.apiclient import Api, auth, make_api


async def sign_in(api: Api, token: str, client: httpx.AsyncClient | None = None) -> str:
    """Sign in with ``token`` (JSON); returns the session's CSRF token (the client keeps the cookie)."""
    resp = await (client or api.client).post("/login", json={"token": token})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["csrf"])


def cookie_header(resp: httpx.Response) -> str:
    return resp.headers["set-cookie"]


@pytest.fixture
async def api(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with make_api(tmp_path) as made:
        yield made


@pytest.mark.parametrize("who", ["viewer", "operator", "admin"])
async def test_a_persons_token_signs_in_and_the_cookie_carries_the_role(api: Api, who: str) -> None:
    token = getattr(api, who)
    resp = await api.client.post("/login", data={"token": token, "next": "/kiosk"})
    assert resp.status_code == 303 and resp.headers["location"] == "/kiosk"
    cookie = cookie_header(resp)
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain http here; over https (or secure_cookie = "always") it is Secure
    assert token not in cookie
    me = (await api.client.get("/api/v1/session")).json()
    assert me["name"] == {"viewer": "vic", "operator": "olga", "admin": "root"}[who] and me["role"] == who
    assert me["csrf"] and me["idle_expires_at"] <= me["expires_at"]
    assert (await api.client.get("/api/v1/edges")).status_code == 200  # a viewer's read, with the cookie alone
    users = await api.client.get("/api/v1/users")  # admins only, as with a token
    assert users.status_code == (200 if who == "admin" else 403)


async def test_a_wrong_token_gets_the_page_again_with_a_plain_sentence(api: Api) -> None:
    resp = await api.client.post("/login", data={"token": "twu_not-a-real-token"})
    assert resp.status_code == 401 and resp.headers["content-type"].startswith("text/html")
    assert "That token was not accepted: it is unknown, or it has been rotated or revoked" in resp.text
    assert "set-cookie" not in resp.headers
    edge = await api.client.post("/login", json={"token": api.edge})
    assert edge.status_code == 403
    assert edge.json()["detail"][0]["message"].startswith("an edge's token cannot sign in to the console")
    empty = await api.client.post("/login", data={"token": "  "})
    assert empty.status_code == 422 and "Type your token" in empty.text


@pytest.mark.parametrize(("headers", "body", "status", "message"), [
    pytest.param({"Content-Type": "application/x-www-form-urlencoded"}, b"token=" + b"x" * 10_000, 413,
                 "10,006 bytes; the limit for this route is 4,096 bytes", id="huge"),
    pytest.param({"Content-Type": "text/plain"}, b"token=abc", 415,
                 "sign in with the form (application/x-www-form-urlencoded) or JSON; got text/plain", id="text"),
    pytest.param({"Content-Type": "application/json"}, b"{not json", 400, "not JSON", id="bad-json"),
    pytest.param({"Content-Type": "application/json"}, b'["token"]', 422, 'send {"token": "<your token>"}',
                 id="json-list"),
    pytest.param({"Content-Type": "application/x-www-form-urlencoded"}, b"token=\xff\xfe", 400,
                 "the sign-in body is not UTF-8 text", id="not-utf8"),
])
async def test_hostile_sign_in_bodies_get_a_clear_4xx(api: Api, headers: dict[str, str], body: bytes, status: int,
                                                       message: str) -> None:
    resp = await api.client.post("/login", content=body, headers={**headers, "Accept": "application/json"})
    assert resp.status_code == status
    assert message in resp.json()["detail"][0]["message"]
    assert "set-cookie" not in resp.headers


async def test_changes_need_the_sessions_csrf_token_and_this_sites_origin(api: Api) -> None:
    csrf = await sign_in(api, api.admin)
    new = {"name": "press-9", "edge": "edge-1"}
    refused = await api.client.post("/api/v1/devices", json=new)
    assert refused.status_code == 403
    assert refused.json()["detail"] == [{"path": CSRF_HEADER, "message": (
        "a change made with a console session needs the session's X-CSRF-Token header (the console's pages "
        "send it)")}]
    wrong = await api.client.post("/api/v1/devices", json=new, headers={CSRF_HEADER: "x" * 43})
    assert wrong.status_code == 403
    foreign = await api.client.post("/api/v1/devices", json=new,
                                    headers={CSRF_HEADER: csrf, "Origin": "http://evil.example"})
    assert foreign.status_code == 403 and foreign.json()["detail"][0]["path"] == "Origin"
    assert [d["name"] for d in (await api.client.get("/api/v1/devices")).json()] == []  # nothing was made
    made = await api.client.post("/api/v1/devices", json=new,
                                 headers={CSRF_HEADER: csrf, "Origin": "http://cloud.test"})
    assert made.status_code == 201 and made.json()["name"] == "press-9"


async def test_a_viewers_session_may_not_change_what_a_viewers_token_may_not(api: Api) -> None:
    csrf = await sign_in(api, api.viewer)
    resp = await api.client.post("/api/v1/devices", json={"name": "press-9", "edge": "edge-1"},
                                 headers={CSRF_HEADER: csrf})
    assert resp.status_code == 403 and "role viewer may not do this" in resp.text


async def test_signing_out_ends_the_session_in_the_database(api: Api) -> None:
    csrf = await sign_in(api, api.operator)
    cookie = api.client.cookies[SESSION_COOKIE]
    assert (await api.client.post("/logout")).status_code == 403  # without the CSRF token: not even sign-out
    out = await api.client.post("/logout", headers={CSRF_HEADER: csrf})
    assert out.status_code == 204 and f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    # The same cookie sent again (a copy kept elsewhere): the server has forgotten it.
    api.client.cookies.set(SESSION_COOKIE, cookie)
    again = await api.client.get("/api/v1/edges")
    assert again.status_code == 401
    assert "your console session has ended" in again.json()["detail"][0]["message"]
    page = await api.client.get("/")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/"


@pytest.mark.parametrize("how", ["revoke", "rotate"])
async def test_revoking_or_rotating_the_token_ends_its_sessions(api: Api, how: str) -> None:
    await sign_in(api, api.operator)
    assert (await api.client.get("/api/v1/edges")).status_code == 200
    if how == "revoke":
        resp = await api.client.delete("/api/v1/users/olga/token", headers=auth(api.admin))
        assert resp.status_code == 204
    else:
        await rotate(api.ctx.storage, "user", "olga")
        api.ctx.auth.forget()
    assert (await api.client.get("/api/v1/edges")).status_code == 401


async def test_failed_sign_ins_past_the_limit_get_429_even_with_a_good_token(tmp_path: Path) -> None:
    async with make_api(tmp_path, console={"login_attempts": 3}) as api:
        for _ in range(3):
            assert (await api.client.post("/login", json={"token": "twu_wrong"})).status_code == 401
        resp = await api.client.post("/login", json={"token": api.admin})
        assert resp.status_code == 429 and 1 <= int(resp.headers["retry-after"]) <= 60
        assert resp.json()["detail"][0]["message"].startswith("too many failed sign-ins from 127.0.0.1")


async def test_pages_send_a_person_without_a_session_to_the_sign_in(api: Api) -> None:
    for path in ("/", "/kiosk", "/alerts"):
        resp = await api.client.get(path)
        assert resp.status_code == 303 and resp.headers["location"] == f"/login?next={path}"
    resp = await api.client.get("/devices?d=press-1&range=7d")  # the query goes along, for after the sign-in
    assert resp.headers["location"] == "/login?next=/devices%3Fd%3Dpress-1%26range%3D7d"
    form = await api.client.get(resp.headers["location"])
    assert 'name="next" value="/devices?d=press-1&amp;range=7d"' in form.text
    assert (await api.client.get("/login?next=//evil.example/")).text.count('value="/"') == 1
    await sign_in(api, api.viewer)
    fleet = await api.client.get("/")
    assert fleet.status_code == 200 and 'data-page="fleet"' in fleet.text and "vic (viewer)" in fleet.text
    assert "default-src 'self'" in fleet.headers["content-security-policy"]
    alerts = await api.client.get("/alerts")
    assert alerts.status_code == 200 and 'data-page="alerts"' in alerts.text


async def test_a_token_still_wins_over_a_cookie(api: Api) -> None:
    """Scripts keep working from a browser profile that is signed in: the Authorization header decides."""
    await sign_in(api, api.viewer)
    resp = await api.client.get("/api/v1/users", headers=auth(api.admin))
    assert resp.status_code == 200


# --- the session store, on SQLite and PostgreSQL, with a clock of our own --------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_sessions_end_when_idle_or_too_old_whatever_the_use(storage: Storage) -> None:
    token = await add_user(storage, "ida", "operator")
    clock = Clock()
    keeper = SessionKeeper(storage, ConsoleConfig(session_idle="600s", session_max="1h"), ttl=0, clock=clock)
    cookie, csrf = await keeper.open(hash_token(token))
    found = await keeper.find(cookie)
    assert found is not None and found.principal.name == "ida" and found.csrf == csrf
    for _ in range(6):  # used every 9 minutes: the idle limit never strikes ...
        clock.now += 540
        assert await keeper.find(cookie) is not None
    clock.now += 540  # ... but an hour after sign-in the session ends anyway
    assert await keeper.find(cookie) is None
    idle_cookie, _ = await keeper.open(hash_token(token))
    clock.now += 601
    assert await keeper.find(idle_cookie) is None
    assert await keeper.find("x" * 43) is None


async def test_sign_out_and_revocation_end_sessions_in_the_store(storage: Storage) -> None:
    token = await add_user(storage, "ida", "viewer")
    keeper = SessionKeeper(storage, ConsoleConfig(), ttl=0)
    first, _ = await keeper.open(hash_token(token))
    second, _ = await keeper.open(hash_token(token))
    assert await keeper.end(first) is True and await keeper.find(first) is None
    assert await keeper.end(first) is False
    assert await keeper.find(second) is not None
    await revoke(storage, "user", "ida", )
    assert await keeper.find(second) is None
    await keeper.open(hash_token(await add_user(storage, "bea", "viewer")))  # sign-in purges the dead sessions
    assert await storage.purge_sessions(0, 0) == 0


async def test_a_long_address_keeps_its_filters_through_the_sign_in_and_an_overlong_one_its_page(api: Api) -> None:
    """The pages keep their filters in the address; a long one goes through the sign-in, an absurd one is cut
    back to its page, and neither gets an error instead of the sign-in page."""
    events = ("/events?level=developer&edge=" + "line-1" * 40 + "&device=" + "press-2" * 20
              + "&from=2026-12-01T08:00:00Z")
    assert 300 < len(events) < 1000
    resp = await api.client.get(events)
    assert resp.status_code == 303
    form = await api.client.get(resp.headers["location"])
    assert form.status_code == 200 and f'name="next" value="{html.escape(events)}"' in form.text
    signed = await api.client.post("/login", data={"token": api.viewer, "next": events})
    assert signed.status_code == 303 and signed.headers["location"] == events
    huge = "/alerts?device=" + "x" * 3000
    form = await api.client.get("/login", params={"next": huge})
    assert form.status_code == 200 and 'name="next" value="/alerts"' in form.text


async def test_a_sign_in_posted_from_another_sites_page_opens_no_session(api: Api) -> None:
    """Login CSRF: another site's page must not sign this browser in as the attacker's account."""
    for body in ({"data": {"token": api.viewer, "next": "/"}}, {"json": {"token": api.viewer}}):
        resp = await api.client.post("/login", headers={"Origin": "http://evil.example"}, **body)  # type: ignore[arg-type]
        assert resp.status_code == 403 and "set-cookie" not in resp.headers
        assert "another site's page (http://evil.example)" in html.unescape(resp.text)
    assert (await api.client.get("/api/v1/session")).status_code == 401
    own = await api.client.post("/login", data={"token": api.viewer, "next": "/alerts"},
                                headers={"Origin": "http://cloud.test"})
    assert own.status_code == 303 and own.headers["location"] == "/alerts"
