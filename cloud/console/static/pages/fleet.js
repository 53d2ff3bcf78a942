// The Fleet page: every edge (online or not, last sync, queue, lag, drops, model, drift) with its devices,
// searchable and sortable, refreshed every few seconds from the public API.
import {ApiError} from "../api.js";
import {ago, duration, loadFleet} from "../fleet-data.js";

const REFRESH_MS = 5000;
const DRIFT_ORDER = {drift: 0, warn: 1, ok: 2, unknown: 3};
const SORTS = {
    state: (a, b) => Number(a.online) - Number(b.online) || Number(b.alerting) - Number(a.alerting),
    name: () => 0,
    sync: (a, b) => (a.lastSeen ?? 0) - (b.lastSeen ?? 0),
    queue: (a, b) => (b.queueDepth ?? 0) - (a.queueDepth ?? 0),
    drops: (a, b) => b.drops - a.drops,
    drift: (a, b) => (DRIFT_ORDER[a.drift] ?? 4) - (DRIFT_ORDER[b.drift] ?? 4),
};
const COLUMNS = ["Edge / device", "State", "Last sync", "Queue", "Oldest queued", "Drops", "Model", "Drift"];

function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
        if (value !== null && value !== undefined) {
            node.setAttribute(key, value);
        }
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
}

function badge(text, kind) {
    return el("span", {class: `badge ${kind}`}, text);
}

function edgeRow(edge, now) {
    const sources = Object.entries(edge.sources).map(([name, state]) => `${name}: ${state}`).join(", ");
    return el("tr", {class: "edge", "data-edge": edge.name},
        el("th", {scope: "row"}, edge.name, sources ? el("div", {class: "sources"}, sources) : null),
        el("td", {}, badge(edge.online ? "online" : "offline", edge.online ? "ok" : "bad"),
            edge.alerting ? badge("alert", "bad") : null),
        el("td", {}, ago(edge.lastSeen, now)),
        el("td", {class: "num"}, edge.queueDepth === null ? "–" : edge.queueDepth.toLocaleString()),
        el("td", {class: "num"}, duration(edge.lag)),
        el("td", {class: "num"}, edge.drops.toLocaleString()),
        el("td", {}, edge.models.join(", ") || "–"),
        el("td", {}, edge.drift ? badge(edge.drift, edge.drift === "ok" ? "ok" : edge.drift === "unknown" ? "" : "warn")
            : "–"));
}

function deviceRow(device, now) {
    const alerts = device.alerts.length;
    return el("tr", {class: "device", "data-device": device.name},
        el("td", {class: "device-name"}, device.name),
        el("td", {}, badge(device.status || "no data", device.status === "ok" ? "ok" : device.status ? "warn" : ""),
            alerts ? badge(`${alerts} alert${alerts > 1 ? "s" : ""}`, "bad") : null),
        el("td", {}, ago(device.lastSeen, now)),
        el("td", {}), el("td", {}), el("td", {}),
        el("td", {}, device.model ? `${device.model} (${device.modelState})` : "–"),
        el("td", {}, device.drift || "–"));
}

function matches(text, query) {
    return text.toLowerCase().includes(query);
}

export function show(main) {
    const search = el("input", {id: "fleet-search", type: "search", placeholder: "edge or device name"});
    const sort = el("select", {id: "fleet-sort"},
        ...[["state", "offline and alerting first"], ["name", "name"], ["sync", "oldest sync first"],
            ["queue", "longest queue first"], ["drops", "most drops first"], ["drift", "most drift first"]]
            .map(([value, label]) => el("option", {value}, label)));
    const status = el("p", {id: "fleet-status", role: "status", class: "status"}, "Loading the fleet…");
    const table = el("table", {id: "fleet-table"},
        el("thead", {}, el("tr", {}, ...COLUMNS.map((c) => el("th", {scope: "col"}, c)))));
    main.replaceChildren(
        el("h1", {}, "Fleet"),
        el("div", {class: "toolbar"},
            el("label", {}, "Search ", search), el("label", {}, "Sort by ", sort), status),
        table);
    let fleet = null;

    function draw() {
        if (fleet === null) {
            return;
        }
        const query = search.value.trim().toLowerCase();
        const edges = fleet.edges
            .map((edge) => ({edge, devices: matches(edge.name, query) ? edge.devices
                : edge.devices.filter((d) => matches(d.name, query))}))
            .filter(({edge, devices}) => !query || matches(edge.name, query) || devices.length > 0);
        edges.sort((a, b) => SORTS[sort.value](a.edge, b.edge) || a.edge.name.localeCompare(b.edge.name));
        const bodies = edges.map(({edge, devices}) => el("tbody", {},
            edgeRow(edge, fleet.now), ...devices.map((d) => deviceRow(d, fleet.now))));
        if (bodies.length === 0) {
            bodies.push(el("tbody", {}, el("tr", {}, el("td", {colspan: COLUMNS.length, class: "empty"},
                fleet.edges.length ? "No edge or device matches the search." : "No edge is registered yet."))));
        }
        table.querySelectorAll("tbody").forEach((b) => b.remove());
        table.append(...bodies);
    }

    async function refresh() {
        try {
            fleet = await loadFleet();
            const online = fleet.edges.filter((e) => e.online).length;
            status.textContent = `${online} of ${fleet.edges.length} edges online · updated `
                + new Date().toLocaleTimeString();
            status.classList.remove("error");
            draw();
        } catch (error) {
            if (error instanceof ApiError && error.status === 401) {
                return; // on the way to the sign-in page
            }
            status.textContent = `The fleet could not be loaded: ${error.message}. Trying again…`;
            status.classList.add("error");
        }
        setTimeout(refresh, REFRESH_MS);
    }

    search.addEventListener("input", draw);
    sort.addEventListener("change", draw);
    refresh();
}
