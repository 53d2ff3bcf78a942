"""Plain-text tables for the CLI: what an operator reads at the machine."""

from __future__ import annotations

import textwrap
import time
from datetime import datetime
from typing import Any

__all__ = [
    "format_value",
    "local_time",
    "render_frame_line",
    "render_model_status",
    "render_quarantine",
    "render_queue_peek",
    "render_queue_stats",
    "render_sources",
    "render_status",
]

WIDTH = 100  # columns a status table fits in (a terminal, a journal line, an SSH session on a phone)
_MIN_REASON = 30


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _ago(ts: float | None) -> str:
    return "never" if ts is None else _age(time.time() - ts) + " ago"


def local_time(ts: float) -> str:
    """An epoch time as local ISO 8601 with milliseconds and the UTC offset."""
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def format_value(value: Any) -> str:
    """A sensor value as a person reads it: floats to 10 significant digits (no binary noise)."""
    if isinstance(value, float):
        return format(value, ".10g")
    return str(value)


def _sensors(sensors: dict[str, Any], limit: int | None = None) -> str:
    items = list(sensors.items())[:limit]
    return " ".join(f"{name}={format_value(value)}" for name, value in items)


def render_frame_line(frame: dict[str, Any]) -> str:
    """One stored frame on one line, as `twinedge tail` prints it."""
    return f"{local_time(frame['ts'])} {frame['device_id']} {frame.get('status', 'ok')} " \
           f"{_sensors(frame.get('sensors', {}))}"


def render_event_line(event: dict[str, Any]) -> str:
    """One edge event on one line, as `twinedge events` prints it: time, level, kind, what about, the sentence."""
    about = event.get("device") or event.get("source") or "-"
    pending = "" if event.get("synced", True) else "  (not in the cloud yet)"
    return f"{local_time(event['ts'])} {event['level']:<9} {event['kind']:<18} {about:<14} {event['message']}{pending}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _disk_line(q: dict[str, Any]) -> str:
    """Where the queue stands on disk; when the policy is applying, what it does, in plain words."""
    used, budget = q["used_bytes"], q["budget_bytes"]
    configured = q.get("budget_configured_bytes", budget)
    capped, free = q.get("capped_by_disk", False), q.get("fs_free_bytes", 0)
    if q.get("full"):
        where = (f"the filesystem has {_mb(free)} free; keeping {_mb(used)} of queue "
                 f"(budget {configured / 1e6:.0f} MB capped by the disk)" if capped
                 else f"{_mb(used)} of the {configured / 1e6:.0f} MB budget in use")
        drops = q.get("drops", {})
        if q.get("when_full") == "drop_newest":
            unacked, dropped = q.get("refused_unacked", 0), drops.get("disk_budget_newest", 0)
            what = (f"refusing new frames ({unacked:,} from MQTT devices not acknowledged so far: they resend; "
                    f"{dropped:,} from pollers dropped)")
        else:
            what = f"dropping the oldest frames ({drops.get('disk_budget_oldest', 0):,} so far)"
        return f"disk:         FULL — {where}; {what}"
    if capped:
        return (f"disk:         {_mb(used)} of {_mb(budget)} (budget {configured / 1e6:.0f} MB capped by the disk: "
                f"the filesystem has {_mb(free)} free)")
    return f"disk:         {_mb(used)} of {configured / 1e6:.0f} MB budget"


def _alerts_line(a: dict[str, Any]) -> str:
    """Model alerts waiting for the cloud (never dropped for the disk budget; past store.alerts_max the oldest)."""
    line = f"alerts:       {a.get('pending', 0)} waiting for the cloud"
    if a.get("pending"):
        line += f", oldest {_age(a.get('oldest_age_s'))}"
    if dropped := ", ".join(f"{k} {v:,}" for k, v in sorted((a.get("dropped") or {}).items()) if v):
        line += f"; DROPPED: {dropped}"
    return line


def _documents_line(d: dict[str, Any]) -> str:
    """Documents waiting for the cloud (past store.documents_max the oldest go, counted)."""
    line = f"documents:    {d.get('pending', 0)} waiting for the cloud (programs, assets, device models)"
    if dropped := ", ".join(f"{k} {v:,}" for k, v in sorted((d.get("dropped") or {}).items()) if v):
        line += f"; DROPPED: {dropped}"
    return line


def _download_lines(d: dict[str, Any]) -> list[str]:
    """Trouble fetching models from the cloud (nothing while all is well: the models line says what serves)."""
    out = []
    if d.get("last_error"):
        out.append(f"models from the cloud: {str(d['last_error'])[:200]}")
    for sha256, reason in sorted((d.get("refused_packages") or {}).items())[:3]:
        out.append(f"package {sha256[:12]} refused: {str(reason)[:160]}")
    return [f"{_INDENT}{line}" for line in out]


def render_queue_stats(q: dict[str, Any]) -> str:
    drops = ", ".join(f"{k} {v:,}" for k, v in sorted(q.get("drops", {}).items()) if v) or "none"
    lines = [
        f"queue:        {q['depth']} frames waiting, oldest {_age(q.get('oldest_age_s'))}",
        _alerts_line(q.get("alerts") or {}),
        *([_documents_line(q["documents"])] if q.get("documents") else []),
        _disk_line(q),
        f"drops:        {drops}",
    ]
    if q.get("refused_unacked"):
        lines.append(f"refused:      {q['refused_unacked']:,} frames from MQTT devices while the queue was full "
                     "(not acknowledged: the devices resend them)")
    lines += [
        f"duplicates:   {q.get('duplicates', 0)} (skipped, already queued)",
        f"quarantined:  {q.get('quarantined', 0)}",
    ]
    if q.get("store_resets"):
        lines.append(f"WARNING:      the queue file was found damaged and reset {q['store_resets']} time(s)")
    return "\n".join(lines)


def _reason(src: dict[str, Any]) -> str:
    reason = src.get("reason") or ""
    retry_at = src.get("retry_at")
    if retry_at is not None and reason:
        reason += f"; retrying in {max(0.0, retry_at - time.time()):.0f} s"
    return reason


def render_sources(sources: list[dict[str, Any]], width: int = WIDTH) -> str:
    """The sources table; a long REASON wraps within ``width`` columns, under its own column."""
    headers = ["SOURCE", "KIND", "STATE", "LAST DATA", "FRAMES", "ERRORS", "REASON"]
    rows = [[src["name"], src["kind"], src["state"], _ago(src.get("last_success")), str(src["frames"]),
             str(src["errors"]), _reason(src)] for src in sources]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:-1])]
    indent = sum(widths) + 2 * len(widths)
    room = max(_MIN_REASON, width - indent)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, [*widths, 0], strict=True)).rstrip(),
           "  ".join("-" * w for w in [*widths, min(room, max((len(r[-1]) for r in rows), default=6) or 6)])]
    for row in rows:
        # a path or a thumbprint is never cut: it may overrun the width rather than lose its copy-paste
        lines = textwrap.wrap(row[-1], room, break_long_words=False, break_on_hyphens=False) or [""]
        out.append(("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + lines[0]).rstrip())
        out += [" " * indent + line for line in lines[1:]]
    return "\n".join(out)


def render_status(s: dict[str, Any]) -> str:
    out = [f"twinedge {s['version']} — edge {s['edge_id']}, up {_age(s['uptime_s'])}"]
    for part, crash in sorted(s.get("restarts", {}).items()):
        out.append(f"WARNING: the {part} crashed and was restarted {crash['count']} time(s); "
                   f"last: {str(crash['last_reason'])[:120]}")
    out.append("")
    out.append(render_sources(s["sources"]) if s["sources"] else "sources:      none configured")
    out.append("")
    mqtt = s.get("mqtt")
    if mqtt:
        out.extend(_mqtt_lines(mqtt))
    cloud = s.get("cloud")
    if cloud:
        state = cloud["state"]
        line = f"cloud:        {state} ({cloud['url']}); last sync {_ago(cloud.get('last_sync'))}; " \
               f"{cloud['frames_sent']} frames and {cloud.get('alerts_sent', 0)} alerts sent"
        if cloud.get("backlog_through") is not None:
            line += "; draining a backlog behind live data"
        out.append(line)
        if state in ("retrying", "refused_auth") and cloud.get("last_error"):
            retry = cloud.get("retry_in")
            out.append(f"              {cloud['last_error'][:200]}" + (f"; retrying in {retry:.0f} s" if retry else ""))
        out.extend(_download_lines(s.get("model_downloads") or {}))
    else:
        out.append("cloud:        no uplink configured")
    out.extend(_model_lines(s.get("models") or {}))
    out.append(render_queue_stats(s["queue"]))
    w = s["writer"]
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(w.get("rejected", {}).items())) or "none"
    out.append(f"writer:       {w['committed_frames']} frames in {w['commits']} commits; "
               f"{w['queued_in_memory']} in memory; backpressure engaged {w['backpressure_waits']} times")
    out.append(f"rejected:     {rejected}")
    return "\n".join(out)


_INDENT = " " * 14
_GUARD = [  # status key, wording (counts of connections the broker closed, by cause)
    ("refused_at_limit", "refused at the limit"),
    ("closed_for_newer", "closed for newer (no CONNECT yet)"),
    ("connect_timeouts", "connect timeouts"),
    ("stalled_packets", "stalled packets"),
    ("oversized_packets", "oversized packets"),
    ("protocol_errors", "protocol errors"),
]


def _wrap(head: str, items: list[str], width: int = 100) -> list[str]:
    """``head`` then comma-separated items, wrapped at ``width`` columns between items (never inside one)."""
    lines, line = [], head
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        if len(line) + 1 + len(piece) > width and line != head:
            lines.append(line)
            line = _INDENT + "  " + piece
        else:
            line = f"{line} {piece}"
    lines.append(line)
    return lines


def _mqtt_lines(mqtt: dict[str, Any]) -> list[str]:
    rejected = mqtt.get("rejected", {})
    if isinstance(rejected, dict):
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(rejected.items()) if v)
    out = [f"mqtt:         {mqtt.get('clients_connected', '?')} clients, {mqtt.get('messages_in', 0)} messages, "
           f"{mqtt.get('frames_in', 0)} frames in; rejected: {rejected or 'none'}"]
    listeners = [f"{x['name']} {x['connections']}/{x['limit']}" for x in mqtt.get("listeners", ())
                 if "limit" in x]
    if listeners:
        out += _wrap(_INDENT + "connections:", listeners)
    closed = [f"{mqtt[key]} {words}" for key, words in _GUARD if mqtt.get(key)]
    if closed:
        out += _wrap(_INDENT + "closed:", closed)
    refused = [f"{mqtt['refused_connections']} logins"] if mqtt.get("refused_connections") else []
    by_kind = mqtt.get("refused_publishes_by_kind") or {}
    refused += [f"{n} {kind} publishes" for kind, n in sorted(by_kind.items()) if n]
    if refused:
        out += _wrap(_INDENT + "refused:", [*refused[:-1], refused[-1] + " (password/ACL)"])
    return out


def render_queue_peek(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "the queue is empty"
    table = []
    for r in rows:
        f = r["frame"]
        table.append([str(r["seq"]), f["device_id"], local_time(f["ts"]), _ago(r["stored_at"]),
                      _sensors(f.get("sensors", {}), 6)])
    return _table(["SEQ", "DEVICE", "TS", "STORED", "SENSORS"], table)


def render_quarantine(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "the quarantine is empty"
    return _table(
        ["ID", "WHEN", "ORIGIN", "BYTES", "REASON"],
        [[str(r["id"]), _ago(r["at"]), r["origin"], str(r["bytes"]), r["reason"][:100]] for r in rows],
    )


_MODEL_LINES = 20  # devices listed in `status`; `model status` lists them all


def _score(value: float | None) -> str:
    return "-" if value is None else format(value, ".4g")


def _scored_ago(ts: float | None) -> str:
    """How long ago a frame was scored, by its own timestamp (a device clock ahead of ours reads as 0 s)."""
    return "-" if ts is None else _age(max(0.0, time.time() - ts)) + " ago"


def _model_lines(models: dict[str, dict[str, Any]]) -> list[str]:
    """One line per device with a model in `twinedge status`: model, version, state and the last score."""
    if not models:
        return []
    out = []
    for index, (device, m) in enumerate(sorted(models.items())):
        if index == _MODEL_LINES:
            out.append(f"{_INDENT}and {len(models) - _MODEL_LINES} more devices (twinedge model status)")
            break
        head = "models:      " if index == 0 else _INDENT[:-1]
        model = f"{m['model']} v{m['version']}" if m.get("model") else "no model"
        line = f"{head} {device}: {model} {m.get('state') or '-'}"
        if m.get("last_scored_at") is not None:
            line += f"; last score {_score(m.get('last_score'))} ({_scored_ago(m['last_scored_at'])})"
        if m.get("drift") in ("warn", "drift"):
            line += f"; DRIFT {m['drift']}"
        out.append(line)
    return out


def _drift(d: dict[str, Any]) -> str:
    top = ", ".join(f"{name} {value:.2f}" for name, value in list(d.get("psi", {}).items())[:3])
    if d.get("drift", "unknown") == "unknown":
        return f"unknown ({d.get('drift_rows', 0)} rows)" if d.get("model") else "-"
    return f"{d['drift']} ({top})" if top else d["drift"]


def render_model_status(s: dict[str, Any], width: int = WIDTH) -> str:
    """`twinedge model status`: per device its model and how it fares; then the rules and the rejected models."""
    lines = []
    devices = s.get("devices", [])
    if devices:
        rows = [[d["device_id"], d.get("model") or "-", f"v{d['version']}" if d.get("version") else "-",
                 (d.get("sha256") or "-")[:12], (d.get("state") or "-") + (" (pinned)" if d.get("pinned") else ""),
                 _score(d.get("last_score")), _scored_ago(d.get("last_scored_at")),
                 _drift(d)] for d in devices]
        lines.append(_table(["DEVICE", "MODEL", "VERSION", "SHA256", "STATE", "LAST SCORE", "WHEN", "DRIFT"], rows))
        for d in devices:
            if d.get("message"):
                lines += textwrap.wrap(f"{d['device_id']}: {d['message']}", width, subsequent_indent="  ",
                                       break_long_words=False, break_on_hyphens=False)
    else:
        lines.append("no device is scored by a model")
    rules = s.get("rules", [])
    if rules:
        lines += ["", "assigned:"]
        for r in rules:
            target = "the fleet" if r["scope"] == "fleet" else f"{r['scope']} {r['target']}"
            lines.append(f"  {target}: {r['model']} v{r['version']} ({r['origin']})")
    rejected = s.get("rejected", [])
    if rejected:
        lines += ["", "rejected:"]
        for r in rejected:
            where = f" for device {r['device']}" if r.get("device") else ""
            sha = f" (sha256 {r['sha256'][:12]})" if r.get("sha256") else ""
            lines += textwrap.wrap(f"{r['model']} v{r['version']}{sha}{where}, {_ago(r['at'])}: {r['reason']}",
                                   width, initial_indent="  ", subsequent_indent="    ",
                                   break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)
