"""Schema version 8: the web console's sessions, kept in the database so that every process and replica sees them.

A row is one signed-in browser. ``id`` is the SHA-256 of the session cookie's
value (the cookie itself is never stored), ``token_hash`` the hash of the
person's token that signed in: a session is valid only while an identity
still holds that token unrevoked, so rotating or revoking the token ends every
session it opened. ``csrf`` is the session's anti-CSRF token, which the page
sends back in a header with every change it asks for. ``created_at`` and
``last_seen`` (µs) decide the absolute and idle expiry, with the limits the
config has when a request comes (``console.session_max``, ``console.session_idle``).
"""

_TABLE = """
CREATE TABLE console_sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at {big} NOT NULL,
    last_seen {big} NOT NULL
);
CREATE INDEX console_sessions_token ON console_sessions (token_hash);
"""

SQLITE = _TABLE.format(big="INTEGER")
POSTGRES = _TABLE.format(big="BIGINT")
