"""Topic access rules of the embedded broker: who may publish, subscribe to and receive which topics.

Rules are MQTT topic filters per user, with ``%u`` standing for the username
and ``%c`` for the client id. A subscription is allowed only when the requested
filter lies entirely inside an allowed filter (``twin/#`` is refused to a user
who may only read ``twin/+/telemetry``), so a wildcard cannot widen access.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge.broker.config import AclRule, valid_filter

__all__ = [
    "ANONYMOUS",
    "DEFAULT_PUBLISH",
    "DEFAULT_SUBSCRIBE",
    "Acl",
    "AclAction",
    "filter_within",
    "topic_matches",
    "valid_filter",
]

ANONYMOUS = "anonymous"  # the ACL user name of a client that sent no username
DEFAULT_PUBLISH = ("twin/+/telemetry",)
DEFAULT_SUBSCRIBE = ("twinedge/#", "twin/+/alerts")


class AclAction(enum.StrEnum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    RECEIVE = "receive"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 matching of a concrete topic against a filter ($-topics never match a leading wildcard)."""
    if topic_filter == topic:
        return True
    if "+" not in topic_filter and "#" not in topic_filter:
        return False
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for index, level in enumerate(f_levels):
        if level == "#":
            return True
        if index >= len(t_levels):
            return False
        if level != "+" and level != t_levels[index]:
            return False
    return len(f_levels) == len(t_levels)


def filter_within(requested: str, allowed: str) -> bool:
    """True when every topic matched by ``requested`` is also matched by ``allowed``."""
    r_levels = requested.split("/")
    a_levels = allowed.split("/")
    if requested.startswith("$") and allowed[:1] in ("+", "#"):
        return False  # [MQTT-4.7.2-1]: a leading wildcard does not cover $-topics
    for index, a_level in enumerate(a_levels):
        if a_level == "#":
            return True
        if index >= len(r_levels):
            return False
        r_level = r_levels[index]
        if r_level == "#":
            return False  # requested reaches deeper than allowed at this level
        if a_level == "+":
            continue
        if r_level != a_level:
            return False
    return len(r_levels) == len(a_levels)


@dataclass(frozen=True)
class _Rule:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    deny_publish: tuple[str, ...] = ()
    deny_subscribe: tuple[str, ...] = ()


def _substitute(patterns: Iterable[str], user: str, client_id: str, *, deny: bool) -> list[str]:
    """%u and %c replaced. An allow pattern is dropped when the name holds '/', '+' or '#' (it must
    not widen into other topics); a deny pattern is kept, as a wider deny only refuses more."""
    user_ok = deny or not any(c in user for c in "/+#")
    client_ok = deny or not any(c in client_id for c in "/+#")
    return [
        p.replace("%u", user).replace("%c", client_id)
        for p in patterns
        if (user_ok or "%u" not in p) and (client_ok or "%c" not in p)
    ]


class Acl:
    """Per-user topic rules. Without explicit rules every authenticated user gets the defaults:
    publish ``twin/+/telemetry``, subscribe to (and receive) ``twinedge/#`` and ``twin/+/alerts``.

    A user without a rule of their own falls back to the rule of user ``*`` when
    one exists, else is refused everything. Deny entries are checked before allows.
    """

    def __init__(self, rules: Sequence[AclRule] | None) -> None:
        self._explicit = rules is not None
        self._rules: dict[str, _Rule] = {}
        for rule in rules or ():
            self._rules[rule.username] = _Rule(
                tuple(rule.publish), tuple(rule.subscribe), tuple(rule.deny_publish), tuple(rule.deny_subscribe)
            )
        self._default = (
            self._rules.get("*") if self._explicit else _Rule(DEFAULT_PUBLISH, DEFAULT_SUBSCRIBE)
        )
        self._cache: dict[tuple[str, str, AclAction, str], bool] = {}

    def allowed(self, username: str | None, client_id: str, action: AclAction, topic: str) -> bool:
        """May this client publish to / subscribe to / receive ``topic``?"""
        key = (username or "", client_id, action, topic)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        result = self._decide(username, client_id, action, topic)
        if len(self._cache) > 10_000:  # bounded: ids and topics come from the network
            self._cache.clear()
        self._cache[key] = result
        return result

    def _decide(self, username: str | None, client_id: str, action: AclAction, topic: str) -> bool:
        rule = self._rules.get(username or ANONYMOUS, self._default)
        if rule is None:
            return False
        user = username or ANONYMOUS
        if action is AclAction.PUBLISH:
            denied = _substitute(rule.deny_publish, user, client_id, deny=True)
            allowed = _substitute(rule.publish, user, client_id, deny=False)
            return not any(topic_matches(d, topic) for d in denied) and any(topic_matches(f, topic) for f in allowed)
        denied = _substitute(rule.deny_subscribe, user, client_id, deny=True)
        allowed = _substitute(rule.subscribe, user, client_id, deny=False)
        if action is AclAction.SUBSCRIBE:
            # A filter inside a denied one is refused; one that merely overlaps is granted, and the
            # denied topics are then held back at delivery (RECEIVE).
            return (
                valid_filter(topic)
                and not any(filter_within(topic, d) for d in denied)
                and any(filter_within(topic, f) for f in allowed)
            )
        return not any(topic_matches(d, topic) for d in denied) and any(topic_matches(f, topic) for f in allowed)
