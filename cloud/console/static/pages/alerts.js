// The Alerts page: an inbox of the models' alerts, newest first, live (asked for every few seconds), filtered
// by device, state and the time raised. Operators and admins acknowledge an alert with a comment; a viewer sees
// no button (and the service refuses a viewer's acknowledgement anyway).
import {getJSON, send} from "../api.js";
import {
    at, badge, canAct, el, fromLocalInput, keyedRows, params, poll, remember, root, selectOf, setStatus, timeFilters,
} from "../ui.js";

const REFRESH_MS = 2000;
const PAGE = 200;
const STATES = [["", "every state"], ["open", "open"], ["unacknowledged", "not acknowledged"],
    ["acknowledged", "acknowledged"], ["cleared", "cleared"]];

function number(value) {
    return value === null || value === undefined ? "–" : Number(value).toPrecision(3);
}

function ackCell(alert, onAcked) {
    const cell = el("td", {class: "ack"});
    if (alert.acknowledged) {
        cell.append(`${alert.acked_by}, ${at(alert.acked_at)}`,
            alert.ack_comment ? el("div", {class: "comment"}, alert.ack_comment) : null);
        return cell;
    }
    if (!canAct) {
        cell.append("not yet");
        return cell;
    }
    const open = el("button", {type: "button", class: "ack-open"}, "Acknowledge");
    const comment = el("input", {type: "text", maxlength: 500, "aria-label": `Comment on alert ${alert.id}`,
        placeholder: "what was found or done"});
    const submit = el("button", {type: "submit"}, "Acknowledge");
    const cancel = el("button", {type: "button"}, "Cancel");
    const said = el("p", {class: "status error", role: "alert"});
    const form = el("form", {class: "ack-form", hidden: true}, comment, submit, cancel, said);
    open.addEventListener("click", () => {
        form.hidden = false;
        open.hidden = true;
        comment.focus();
    });
    cancel.addEventListener("click", () => {
        form.hidden = true;
        open.hidden = false;
    });
    form.addEventListener("submit", async (event) => {
        event.preventDefault();
        submit.disabled = true;
        try {
            const acked = await send("POST", `/api/v1/alerts/${alert.id}/ack`, {comment: comment.value.trim()});
            form.hidden = true; // done: the row may be drawn anew
            onAcked(acked);
        } catch (error) {
            said.textContent = `Not acknowledged: ${error.message}`;
            submit.disabled = false;
        }
    });
    cell.append(open, form);
    return cell;
}

export function show(main) {
    const query = params();
    const stateSel = selectOf("alerts-state", STATES, STATES.some(([v]) => v === query.get("state"))
        ? query.get("state") : "");
    const deviceSel = selectOf("alerts-device", [["", "every device"]], "");
    const from = el("input", {id: "alerts-from", type: "datetime-local", step: 1});
    const to = el("input", {id: "alerts-to", type: "datetime-local", step: 1});
    const status = el("p", {id: "alerts-status", role: "status", class: "status"}, "Loading the alerts…");
    const body = el("tbody");
    main.replaceChildren(
        el("h1", {}, "Alerts"),
        el("div", {class: "toolbar"},
            el("label", {}, "State ", stateSel), el("label", {}, "Device ", deviceSel),
            el("label", {}, "Raised from ", from), el("label", {}, "to ", to)),
        status,
        el("table", {id: "alerts-table"}, el("thead", {}, el("tr", {},
            ...["Raised", "Device", "State", "Model", "Score / peak / threshold", "Message", "Acknowledged"]
                .map((c) => el("th", {scope: "col"}, c)))), body));

    const problems = timeFilters(query, from, to);
    const device = query.get("device") || "";
    if (device) {
        deviceSel.append(el("option", {value: device}, device));
        deviceSel.value = device;
    }
    getJSON("/api/v1/devices").then((all) => deviceSel.append(...all.map((d) => d.name).filter((n) => n !== device)
        .sort().map((n) => el("option", {value: n}, n)))).catch(() => {});

    let alerts = [];
    const place = keyedRows(body, row);

    function row(alert) {
        const state = alert.state === "open" ? badge("open", "bad") : badge("cleared", "ok");
        return el("tr", {"data-id": alert.id, "data-device": alert.device, "data-state": alert.state,
            class: alert.acknowledged ? "acked" : ""},
        el("td", {class: "when"}, at(alert.raised_at ?? alert.at)),
        el("td", {}, el("a", {href: `${root}/devices?d=${encodeURIComponent(alert.device)}`}, alert.device),
            el("div", {class: "sources"}, alert.edge)),
        el("td", {}, state, alert.acknowledged ? badge("acknowledged") : null),
        el("td", {}, `${alert.model} v${alert.version}`),
        el("td", {class: "num"}, `${number(alert.score)} / ${number(alert.peak)} / ${number(alert.threshold)}`),
        el("td", {}, alert.message || alert.label || "–"),
        ackCell(alert, (acked) => {
            alerts = alerts.map((a) => (a.id === acked.id ? acked : a));
            draw();
        }));
    }

    function filters() {
        const out = new URLSearchParams({limit: String(PAGE)});
        if (stateSel.value) {
            out.set("state", stateSel.value);
        }
        if (deviceSel.value) {
            out.set("device", deviceSel.value);
        }
        const lo = fromLocalInput(from.value);
        const hi = fromLocalInput(to.value);
        if (lo !== null && hi !== null && lo >= hi) {
            throw new Error("“Raised from” must be before “to”");
        }
        if (lo !== null) {
            out.set("from", String(lo));
        }
        if (hi !== null) {
            out.set("to", String(hi));
        }
        return out;
    }

    function draw() {
        // A row whose acknowledgement form is open is left alone until it is sent or cancelled.
        place(alerts, (a) => a.id, (node) => node.querySelector(".ack-form:not([hidden])") !== null);
        if (alerts.length === 0) {
            body.append(el("tr", {}, el("td", {colspan: 7, class: "empty"}, "No alert matches these filters.")));
        }
    }

    async function round() {
        const page = await getJSON(`/api/v1/alerts?${filters()}`);
        alerts = page.alerts;
        draw();
        const open = alerts.filter((a) => a.state === "open").length;
        setStatus(status, `${alerts.length}${page.next_cursor ? "+" : ""} alerts, ${open} open · live, updated `
            + new Date().toLocaleTimeString());
    }

    if (problems.length) {
        setStatus(status, problems.join("; ") + ". ", true);
        status.append(el("a", {href: location.pathname}, "Show every alert"));
        return;
    }
    const feed = poll(round, REFRESH_MS, (error) => setStatus(status,
        `The alerts could not be loaded: ${error.message}. Trying again…`, true));
    for (const input of [stateSel, deviceSel, from, to]) {
        input.addEventListener("change", () => {
            remember({state: stateSel.value, device: deviceSel.value, from: from.value, to: to.value});
            feed.now();
        });
    }
}
