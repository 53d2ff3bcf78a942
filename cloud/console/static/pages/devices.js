// The Devices page: every device with its state (/devices), and one device (/devices?d=NAME): live charts of
// the chosen fields over a chosen range (15 min to 30 days, drag to zoom), its current values, its alerts, the
// model scoring it, its latest scores and its drift.
import {getJSON, serverNow} from "../api.js";
import {ago, loadFleet} from "../fleet-data.js";
import {DeviceCharts, RANGES} from "../device-chart.js";
import {at, badge, el, params, poll, remember, root, setStatus} from "../ui.js";

const LIST_REFRESH_MS = 2000;
const DETAIL_REFRESH_MS = 3000;

// What a device is doing, in one word, from what its edge last reported and its newest frame.
export function deviceState(device, edge) {
    if (!edge) {
        return ["no edge", ""];
    }
    if (!edge.online) {
        return ["edge offline", "bad"];
    }
    const source = edge.sources[device.name];
    if (source && source !== "connected") {
        return [source, "bad"];
    }
    if (device.alerts.length) {
        return ["alerting", "bad"];
    }
    return [device.status || "no data", device.status === "ok" ? "ok" : device.status ? "warn" : ""];
}

function link(name) {
    return el("a", {href: `${root}/devices?d=${encodeURIComponent(name)}`}, name);
}

function showList(main) {
    const status = el("p", {id: "devices-status", role: "status", class: "status"}, "Loading the devices…");
    const body = el("tbody");
    main.replaceChildren(el("h1", {}, "Devices"), status,
        el("table", {id: "devices-table"}, el("thead", {}, el("tr", {},
            ...["Device", "Edge", "State", "Last data", "Open alerts", "Model", "Drift"]
                .map((c) => el("th", {scope: "col"}, c)))), body));
    poll(async () => {
        const fleet = await loadFleet();
        const rows = [];
        for (const edge of [...fleet.edges, {name: null, devices: fleet.unowned}]) {
            for (const device of edge.devices) {
                const [state, kind] = deviceState(device, edge.name === null ? null : edge);
                rows.push(el("tr", {"data-device": device.name, "data-state": state},
                    el("td", {}, link(device.name)), el("td", {}, edge.name || "–"),
                    el("td", {class: "state"}, badge(state, kind)), el("td", {}, ago(device.lastSeen, fleet.now)),
                    el("td", {class: "num"}, String(device.alerts.length)),
                    el("td", {}, device.model ? `${device.model} (${device.modelState})` : "–"),
                    el("td", {}, device.drift || "–")));
            }
        }
        rows.sort((a, b) => a.dataset.device.localeCompare(b.dataset.device));
        body.replaceChildren(...rows);
        if (rows.length === 0) {
            body.append(el("tr", {}, el("td", {colspan: 7, class: "empty"}, "No device has sent data yet.")));
        }
        setStatus(status, `${rows.length} devices · updated ${new Date().toLocaleTimeString()}`);
    }, LIST_REFRESH_MS, (error) => setStatus(status, `The devices could not be loaded: ${error.message}. `
        + "Trying again…", true));
}

function numeric(value) {
    return typeof value === "number" || typeof value === "boolean";
}

function shown(value) {
    if (typeof value === "number") {
        return Number.isInteger(value) ? String(value) : value.toPrecision(4);
    }
    return String(value);
}

// The fields of a frame as the API names them: sensors as sent, derived metrics as metrics.<name>.
function flatten(frame) {
    const values = {...(frame.sensors || {})};
    for (const [name, value] of Object.entries(frame.metrics || {})) {
        values[`metrics.${name}`] = value;
    }
    return values;
}

// Without a choice in the address: the first two numeric fields (by name) whose readings changed in the
// last 15 minutes, so that a machine's page opens on what moves rather than on a constant (an alarm code, the
// ambient temperature); then the other numeric fields.
async function movingFields(device, values) {
    const numbers = Object.entries(values).filter(([, v]) => typeof v.value === "number").map(([f]) => f).sort();
    const now = Math.ceil(serverNow());
    const asked = new URLSearchParams({device, start: String(now - 900), stop: String(now + 1), window: "15m",
        funcs: "min,max"});
    try {
        const answer = await getJSON(`/api/v1/twin/history/aggregate?${asked}`);
        const moved = new Set(answer.series.filter((s) => {
            const seen = s.buckets.flatMap((b) => [b.min, b.max]).filter((v) => typeof v === "number");
            return seen.length > 0 && Math.max(...seen) > Math.min(...seen);
        }).map((s) => s.field));
        return [...numbers.filter((f) => moved.has(f)), ...numbers.filter((f) => !moved.has(f))].slice(0, 2);
    } catch (error) {
        return numbers.slice(0, 2); // no history to tell: the first two
    }
}

function follow(device, onFrame, onState) {
    let wait = 1000;
    const open = () => {
        const scheme = location.protocol === "https:" ? "wss:" : "ws:";
        const socket = new WebSocket(`${scheme}//${location.host}${root}/api/v1/twin/ws/${encodeURIComponent(device)}`);
        socket.addEventListener("open", () => {
            wait = 1000;
            onState("live");
        });
        socket.addEventListener("message", (message) => {
            const event = JSON.parse(message.data);
            if (event.type === "frame") {
                onFrame(event.frame);
            }
        });
        socket.addEventListener("close", () => {
            onState("reconnecting");
            setTimeout(open, wait);
            wait = Math.min(wait * 2, 15000);
        });
    };
    open();
}

function showDevice(main, name) {
    const query = params();
    const css = el("link", {rel: "stylesheet", href: `${root}/console/assets/vendor/uplot/uPlot.min.css`});
    document.head.append(css);
    const rangeKey = RANGES.some(([k]) => k === query.get("range")) ? query.get("range") : "1h";
    const rangeSel = el("select", {id: "device-range"},
        ...RANGES.map(([key, , label]) => el("option", {value: key, selected: key === rangeKey}, label)));
    const back = el("button", {id: "device-live", type: "button", hidden: true}, "Back to live");
    const rangeText = el("span", {id: "device-range-text", class: "status"});
    const feedState = el("span", {id: "device-feed", class: "badge"}, "connecting");
    const stateBadge = el("span", {id: "device-state"});
    const status = el("p", {id: "device-status", role: "status", class: "status"});
    const values = el("tbody");
    const charts = el("div", {id: "device-charts"});
    const model = el("div", {id: "device-model"}, "–");
    const alerts = el("ul", {id: "device-alerts", class: "plain"});
    main.replaceChildren(
        el("p", {class: "crumbs"}, el("a", {href: `${root}/devices`}, "Devices"), " › "),
        el("h1", {}, name, " ", stateBadge, " ", feedState),
        status,
        el("div", {class: "toolbar"}, el("label", {}, "Range ", rangeSel), back, rangeText,
            el("span", {class: "hint"}, "Drag across a chart to zoom in.")),
        charts,
        el("div", {class: "columns"},
            el("section", {}, el("h2", {}, "Current values"), el("p", {class: "hint"}, "Tick a field to chart it."),
                el("table", {id: "device-values"}, el("thead", {}, el("tr", {},
                    ...["Chart", "Field", "Value", "At"].map((c) => el("th", {scope: "col"}, c)))), values)),
            el("section", {}, el("h2", {}, "Model, scores and drift"), model,
                el("h2", {}, "Alerts"), alerts,
                el("p", {}, el("a", {href: `${root}/alerts?device=${encodeURIComponent(name)}`},
                    "All alerts of this device")))));

    const chart = new DeviceCharts(charts, name, (range) => {
        back.hidden = range.live;
        rangeText.textContent = range.live ? "" : `${at(range.lo)} – ${at(range.hi)}`;
    });
    let chosen = (query.get("fields") || "").split(",").filter(Boolean);
    const current = {}; // field -> {ts, value}
    const rows = {};
    const units = {}; // field -> units, from the device's MTConnect model when it has one
    getJSON(`/api/v1/devices/${encodeURIComponent(name)}/mtconnect`).then((models) => {
        for (const item of models.flatMap((m) => m.items)) {
            if (item.units && !(item.key in units)) {
                units[item.key] = item.units;
            }
        }
        showValues();
    }).catch(() => {}); // an older cloud, or no MTConnect model: the fields go without units

    function keep() {
        remember({d: name, range: rangeSel.value === "1h" ? "" : rangeSel.value, fields: chosen.join(",")});
    }

    function valueRow(field) {
        const box = el("input", {type: "checkbox", "aria-label": `Chart ${field}`, "data-field": field,
            checked: chosen.includes(field)});
        box.disabled = !numeric(current[field].value);
        box.addEventListener("change", () => {
            chosen = box.checked ? [...chosen, field] : chosen.filter((f) => f !== field);
            keep();
            chart.setFields(chosen).catch((error) => setStatus(status, `The chart could not be drawn: ${error.message}`,
                true));
        });
        const tr = el("tr", {"data-field": field}, el("td", {}, box),
            el("th", {scope: "row"}, field, el("span", {class: "unit"})),
            el("td", {class: "num value"}), el("td", {class: "when"}));
        rows[field] = tr;
        return tr;
    }

    function showValues() {
        const fields = Object.keys(current).sort();
        for (const field of fields) {
            const tr = rows[field] || valueRow(field);
            tr.querySelector(".value").textContent = shown(current[field].value);
            tr.querySelector(".unit").textContent = units[field] ? ` (${units[field]})` : "";
            tr.querySelector(".when").textContent = ago(current[field].ts, serverNow());
        }
        values.replaceChildren(...fields.map((f) => rows[f]));
    }

    function onFrame(frame) {
        const flat = flatten(frame);
        for (const [field, value] of Object.entries(flat)) {
            current[field] = {ts: frame.ts, value};
        }
        chart.add(flat, frame.ts);
        showValues();
    }

    async function details() {
        const [state, edges, drift, recent] = await Promise.all([
            getJSON(`/api/v1/twin/${encodeURIComponent(name)}/state`), getJSON("/api/v1/edges"),
            getJSON("/api/v1/drift"), getJSON(`/api/v1/alerts?device=${encodeURIComponent(name)}&limit=10`)]);
        for (const [field, v] of Object.entries(state.values)) {
            if (!current[field] || current[field].ts <= v.ts) {
                current[field] = v;
            }
        }
        showValues();
        const edge = edges.find((e) => e.name === state.edge);
        const open = recent.alerts.filter((a) => a.state === "open");
        const [word, kind] = deviceState({name, status: state.status, alerts: open}, edge
            ? {...edge, online: edge.last_seen !== null && serverNow() - edge.last_seen <= 60} : null);
        stateBadge.replaceChildren(badge(word, kind));
        stateBadge.dataset.state = word;
        status.textContent = `Edge ${state.edge || "–"} · last data ${ago(state.ts, serverNow())}`;
        const report = drift.find((d) => d.device === name);
        const scores = Object.entries(current).filter(([f]) => f.startsWith("model.") || f.startsWith("metrics."));
        model.replaceChildren(...(report ? [
            el("p", {}, `${report.model} v${report.version} (${report.state}) `,
                badge(`drift: ${report.drift}`, report.drift === "ok" ? "ok" : report.drift === "unknown" ? "" : "warn")),
            report.message ? el("p", {class: "hint"}, report.message) : null,
            el("p", {}, `Last score ${report.last_score === null ? "–" : shown(report.last_score)}`
                + ` (${ago(report.last_scored_at, serverNow())}) over ${report.rows} rows`),
            report.features.length ? el("p", {class: "hint"}, "Inputs that moved most (PSI): "
                + report.features.slice(0, 5).map((f) => `${f.name} ${f.psi.toFixed(2)}`).join(", ")) : null,
        ] : [el("p", {class: "hint"}, "No model scores this device.")]),
        ...scores.map(([f, v]) => el("p", {class: "score", "data-field": f}, `${f} = ${shown(v.value)}`)));
        alerts.replaceChildren(...recent.alerts.map((a) => el("li", {"data-id": a.id},
            badge(a.state, a.state === "open" ? "bad" : "ok"), a.acknowledged ? badge("acknowledged") : null,
            ` ${at(a.raised_at ?? a.at)} — ${a.message || a.label || a.model}`)));
        if (recent.alerts.length === 0) {
            alerts.append(el("li", {class: "hint"}, "No alert."));
        }
        return state;
    }

    rangeSel.addEventListener("change", () => {
        keep();
        chart.follow(RANGES.find(([k]) => k === rangeSel.value)[1]);
    });
    back.addEventListener("click", () => chart.follow(RANGES.find(([k]) => k === rangeSel.value)[1]));
    window.addEventListener("resize", () => chart.resize());

    let first = true;
    poll(async () => {
        const state = await details();
        if (first) {
            first = false;
            if (chosen.length === 0) {
                chosen = await movingFields(name, state.values);
            }
            for (const field of chosen) {
                const box = rows[field] && rows[field].querySelector("input");
                if (box) {
                    box.checked = true;
                }
            }
            chart.range.span = RANGES.find(([k]) => k === rangeSel.value)[1];
            await chart.setFields(chosen);
            follow(name, onFrame, (word) => {
                feedState.textContent = word;
                feedState.className = `badge ${word === "live" ? "ok" : "warn"}`;
            });
        }
    }, DETAIL_REFRESH_MS, (error) => setStatus(status, error.status === 404 ? `No device “${name}” has sent data.`
        : `The device could not be loaded: ${error.message}. Trying again…`, true));
}

export function show(main) {
    const name = params().get("d");
    if (name) {
        showDevice(main, name);
    } else {
        showList(main);
    }
}
