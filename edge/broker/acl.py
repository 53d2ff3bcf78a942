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

from edge.broker.config import AclRule

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
DEFAULT_SUBSCRIBE = ("twinedge/#",)


class AclAction(enum.StrEnum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    RECEIVE = "receive"


def valid_filter(topic_filter: str) -> bool:
    """True for a well-formed filter: '#' only as the whole last level, '+' only as a whole level."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


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


class Acl:
    """Per-user topic rules. Without explicit rules every authenticated user gets the defaults:
    publish ``twin/+/telemetry``, subscribe to (and receive) ``twinedge/#``.

    A user without a rule of their own falls back to the rule of user ``*`` when
    one exists, else is refused everything.
    """

    def __init__(self, rules: Sequence[AclRule] | None) -> None:
        self._explicit = rules is not None
        self._rules: dict[str, _Rule] = {}
        for rule in rules or ():
            self._rules[rule.username] = _Rule(tuple(rule.publish), tuple(rule.subscribe))
        self._default = (
            self._rules.get("*") if self._explicit else _Rule(DEFAULT_PUBLISH, DEFAULT_SUBSCRIBE)
        )
        self._cache: dict[tuple[str, str, AclAction, str], bool] = {}

    def _filters(self, username: str | None, client_id: str, action: AclAction) -> Iterable[str]:
        rule = self._rules.get(username or ANONYMOUS, self._default)
        if rule is None:
            return ()
        patterns = rule.publish if action is AclAction.PUBLISH else rule.subscribe
        user = username or ANONYMOUS
        # a name holding '/', '+' or '#' must not widen a %u/%c rule into other topics
        user_ok = not any(c in user for c in "/+#")
        client_ok = not any(c in client_id for c in "/+#")
        return (
            p.replace("%u", user).replace("%c", client_id)
            for p in patterns
            if (user_ok or "%u" not in p) and (client_ok or "%c" not in p)
        )

    def allowed(self, username: str | None, client_id: str, action: AclAction, topic: str) -> bool:
        """May this client publish to / subscribe to / receive ``topic``?"""
        key = (username or "", client_id, action, topic)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if action is AclAction.SUBSCRIBE:
            filters = self._filters(username, client_id, action)
            result = valid_filter(topic) and any(filter_within(topic, f) for f in filters)
        else:
            result = any(topic_matches(f, topic) for f in self._filters(username, client_id, action))
        if len(self._cache) > 10_000:  # bounded: ids and topics come from the network
            self._cache.clear()
        self._cache[key] = result
        return result
