"""Plain-text tables for the CLI: what an operator reads at the machine."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["render_quarantine", "render_queue_peek", "render_queue_stats", "render_status"]


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


def render_queue_stats(q: dict[str, Any]) -> str:
    drops = ", ".join(f"{k} {v:,}" for k, v in sorted(q.get("drops", {}).items()) if v) or "none"
    lines = [
        f"queue:        {q['depth']} frames waiting, oldest {_age(q.get('oldest_age_s'))}",
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


def render_status(s: dict[str, Any]) -> str:
    out = [f"twinedge {s['version']} — edge {s['edge_id']}, up {_age(s['uptime_s'])}", ""]
    rows = []
    for src in s["sources"]:
        rows.append([
            src["name"], src["kind"], src["state"], _ago(src.get("last_success")),
            str(src["frames"]), str(src["errors"]), src.get("reason") or "",
        ])
    out.append(_table(["SOURCE", "KIND", "STATE", "LAST DATA", "FRAMES", "ERRORS", "REASON"], rows)
               if rows else "sources:      none configured")
    out.append("")
    mqtt = s.get("mqtt")
    if mqtt:
        clients = mqtt.get("clients_connected", "?")
        rejected = mqtt.get("rejected", {})
        if isinstance(rejected, dict):
            rejected = ", ".join(f"{k} {v}" for k, v in sorted(rejected.items()) if v)
        rej = rejected
        out.append(f"mqtt:         {clients} clients, {mqtt.get('messages_in', 0)} messages, "
                   f"{mqtt.get('frames_in', 0)} frames in; rejected: {rej or 'none'}")
        refused = (mqtt.get("refused_connections", 0), mqtt.get("refused_publishes", 0))
        if any(refused):
            out.append(f"              refused {refused[0]} connections, {refused[1]} publishes (auth/ACL)")
    cloud = s.get("cloud")
    if cloud:
        state = cloud["state"]
        line = f"cloud:        {state} ({cloud['url']}); last sync {_ago(cloud.get('last_sync'))}; " \
               f"{cloud['frames_sent']} frames sent"
        if cloud.get("backlog_through") is not None:
            line += "; draining a backlog behind live data"
        out.append(line)
        if state in ("retrying", "refused_auth") and cloud.get("last_error"):
            retry = cloud.get("retry_in")
            out.append(f"              {cloud['last_error'][:200]}" + (f"; retrying in {retry:.0f} s" if retry else ""))
    else:
        out.append("cloud:        no uplink configured")
    out.append(render_queue_stats(s["queue"]))
    w = s["writer"]
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(w.get("rejected", {}).items())) or "none"
    out.append(f"writer:       {w['committed_frames']} frames in {w['commits']} commits; "
               f"{w['queued_in_memory']} in memory; backpressure engaged {w['backpressure_waits']} times")
    out.append(f"rejected:     {rejected}")
    return "\n".join(out)


def render_queue_peek(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "the queue is empty"
    table = []
    for r in rows:
        f = r["frame"]
        sensors = " ".join(f"{k}={v}" for k, v in list(f.get("sensors", {}).items())[:6])
        table.append([str(r["seq"]), f["device_id"], f"{f['ts']:.3f}", _ago(r["stored_at"]), sensors])
    return _table(["SEQ", "DEVICE", "TS", "STORED", "SENSORS"], table)


def render_quarantine(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "the quarantine is empty"
    return _table(
        ["ID", "WHEN", "ORIGIN", "BYTES", "REASON"],
        [[str(r["id"]), _ago(r["at"]), r["origin"], str(r["bytes"]), r["reason"][:100]] for r in rows],
    )
