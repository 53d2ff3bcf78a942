// What the fleet and kiosk pages show, gathered from the public API: edges, devices, drift, open alerts and
// each device's latest state. Nothing here draws; pages/fleet.js and pages/kiosk.js do.
import {getJSON, serverNow} from "./api.js";

export const ONLINE_S = 60; // an edge that synced within this many seconds is online
const MAX_STATES = 200; // devices whose latest state is asked for on each refresh
const DRIFT_RANK = {unknown: 0, ok: 1, warn: 2, drift: 3};

async function states(devices) {
    const asked = devices.slice(0, MAX_STATES).map(async (d) => {
        try {
            return [d.name, await getJSON(`/api/v1/twin/${encodeURIComponent(d.name)}/state`)];
        } catch (error) {
            return [d.name, null];
        }
    });
    return Object.fromEntries(await Promise.all(asked));
}

export async function loadFleet() {
    const [edges, devices, drift, alerts] = await Promise.all([
        getJSON("/api/v1/edges"), getJSON("/api/v1/devices"), getJSON("/api/v1/drift"),
        getJSON("/api/v1/alerts?state=open&limit=1000"),
    ]);
    const latest = await states(devices);
    const now = serverNow();
    const openAlerts = {};
    for (const alert of alerts.alerts) {
        (openAlerts[alert.device] ||= []).push(alert);
    }
    const models = {};
    for (const report of drift) {
        models[report.device] = report;
    }
    const byEdge = {};
    for (const device of devices) {
        const state = latest[device.name];
        const report = models[device.name];
        (byEdge[device.edge || ""] ||= []).push({
            name: device.name,
            edge: device.edge,
            lastSeen: device.last_seen,
            status: state ? state.status : null,
            model: report ? `${report.model} v${report.version}` : null,
            modelState: report ? report.state : null,
            drift: report ? report.drift : null,
            alerts: openAlerts[device.name] || [],
        });
    }
    const rows = edges.filter((e) => !e.revoked).map((edge) => {
        const own = byEdge[edge.name] || [];
        const reports = own.filter((d) => d.model);
        const worst = reports.reduce((w, d) => (DRIFT_RANK[d.drift] > DRIFT_RANK[w] ? d.drift : w), "unknown");
        return {
            name: edge.name,
            online: edge.last_seen !== null && now - edge.last_seen <= ONLINE_S,
            lastSeen: edge.last_seen,
            queueDepth: edge.queue_depth,
            lag: edge.lag_s,
            drops: Object.values(edge.drops).reduce((a, b) => a + b, 0),
            sources: edge.sources,
            models: [...new Set(reports.map((d) => d.model))],
            drift: reports.length ? worst : null,
            devices: own,
            alerting: own.some((d) => d.alerts.length > 0),
        };
    });
    const unowned = byEdge[""] || [];
    return {now, edges: rows, unowned};
}

export function ago(seconds, now) {
    if (seconds === null || seconds === undefined) {
        return "never";
    }
    const age = Math.max(0, now - seconds);
    if (age < 90) {
        return `${Math.round(age)} s ago`;
    }
    if (age < 5400) {
        return `${Math.round(age / 60)} min ago`;
    }
    if (age < 172800) {
        return `${Math.round(age / 3600)} h ago`;
    }
    return `${Math.round(age / 86400)} days ago`;
}

export function duration(seconds) {
    if (seconds === null || seconds === undefined) {
        return "–";
    }
    return seconds < 90 ? `${seconds.toFixed(0)} s` : seconds < 5400 ? `${(seconds / 60).toFixed(0)} min`
        : `${(seconds / 3600).toFixed(1)} h`;
}
