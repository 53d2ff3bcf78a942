// The Events page: the edges' event log in plain words, newest first, live (the newest page is asked for every
// few seconds and merged), filtered by level, edge, device and time, with older pages one click away.
import {getJSON} from "../api.js";
import {
    at, badge, el, fromLocalInput, keyedRows, params, poll, remember, role, selectOf, setStatus, timeFilters,
} from "../ui.js";

const REFRESH_MS = 2000;
const PAGE = 100;
const CATCH_UP_PAGES = 10; // pages read behind the newest in one round when a burst arrived
// Who reads what by default: operators and viewers (shift leads) the operator level, admins the technical one.
export const DEFAULT_LEVEL = role === "admin" ? "technical" : "operator";
const LEVELS = [["operator", "operator"], ["technical", "operator and technical"], ["developer", "all levels"]];
const LEVEL_BADGE = {operator: "bad", technical: "warn", developer: ""};

// What an alarm or a data gap says at a glance, beside its message: a machine's severity and native code, how
// many samples were lost and why. The whole details stay one click away.
const GAP_REASONS = {
    agent_restarted: "the MTConnect agent restarted",
    out_of_range: "the edge fell behind the agent's buffer",
};

function alarmFacts(d, kind) {
    const parts = [d.native_code ? `code ${d.native_code}` : null, d.type,
        d.native_severity ? `native severity ${d.native_severity}` : null, d.item ? `item ${d.item}` : null];
    const severity = kind === "alarm_closed" ? badge("cleared", "ok")
        : d.severity ? badge(d.severity, d.severity === "FAULT" ? "bad" : "warn") : null;
    return [severity, parts.filter(Boolean).join(" · ")];
}

function gapFacts(d) {
    const lost = d.lost === null || d.lost === undefined ? "an unknown number of samples lost"
        : `${Number(d.lost).toLocaleString()} sample${d.lost === 1 ? "" : "s"} lost`;
    const span = d.from_sequence != null && d.to_sequence != null
        ? `sequences ${d.from_sequence}–${d.to_sequence}` : null;
    return [badge(lost, d.lost === 0 ? "ok" : "warn"), [span, GAP_REASONS[d.reason] || d.reason]
        .filter(Boolean).join(" · ")];
}

const FACTS = {alarm_opened: alarmFacts, alarm_closed: alarmFacts, data_gap: gapFacts};

function facts(event) {
    const read = FACTS[event.kind];
    return read ? el("div", {class: "facts"}, ...read(event.details || {}, event.kind)) : null;
}

function row(event) {
    const where = [event.device, event.source && event.source !== event.device ? event.source : null]
        .filter(Boolean).join(" · ");
    const details = Object.keys(event.details).length
        ? el("details", {}, el("summary", {}, event.kind), el("pre", {}, JSON.stringify(event.details, null, 1)))
        : el("span", {class: "kind"}, event.kind);
    return el("tr", {"data-id": event.id, "data-level": event.level, "data-kind": event.kind},
        el("td", {class: "when"}, at(event.ts)),
        el("td", {}, badge(event.level, LEVEL_BADGE[event.level])),
        el("td", {}, event.edge),
        el("td", {}, where || "–"),
        el("td", {class: "message"}, event.message, details, facts(event)));
}

async function names(path, pick) {
    try {
        return (await getJSON(path)).map(pick).sort();
    } catch (error) {
        return [];
    }
}

export function show(main) {
    const query = params();
    const level = LEVELS.some(([v]) => v === query.get("level")) ? query.get("level") : DEFAULT_LEVEL;
    const levelSel = selectOf("events-level", LEVELS, level);
    const edgeSel = selectOf("events-edge", [["", "every edge"]], "");
    const deviceSel = selectOf("events-device", [["", "every device"]], "");
    const from = el("input", {id: "events-from", type: "datetime-local", step: 1});
    const to = el("input", {id: "events-to", type: "datetime-local", step: 1});
    const status = el("p", {id: "events-status", role: "status", class: "status"}, "Loading the events…");
    const body = el("tbody");
    const older = el("button", {id: "events-older", type: "button", hidden: true}, "Older events");
    main.replaceChildren(
        el("h1", {}, "Events"),
        el("div", {class: "toolbar"},
            el("label", {}, "Level ", levelSel), el("label", {}, "Edge ", edgeSel),
            el("label", {}, "Device ", deviceSel), el("label", {}, "From ", from), el("label", {}, "To ", to)),
        status,
        el("table", {id: "events-table"}, el("thead", {}, el("tr", {},
            ...["When", "Level", "Edge", "Device / source", "What happened"].map((c) => el("th", {scope: "col"}, c)))),
        body),
        older);

    // Filters from the address first: a bad one is said plainly and nothing is asked for until it is fixed.
    const problems = timeFilters(query, from, to);
    const wanted = {edge: query.get("edge") || "", device: query.get("device") || ""};
    for (const [sel, path, key] of [[edgeSel, "/api/v1/edges", "edge"], [deviceSel, "/api/v1/devices", "device"]]) {
        if (wanted[key]) {
            sel.append(el("option", {value: wanted[key]}, wanted[key]));
            sel.value = wanted[key];
        }
        names(path, (x) => x.name).then((all) => {
            sel.append(...all.filter((n) => n !== wanted[key]).map((n) => el("option", {value: n}, n)));
        });
    }

    const place = keyedRows(body, row);
    let events = new Map();
    let cursor; // undefined: not known yet; null: no older page
    let shown = 0;
    let generation = 0; // bumped when the filters change: answers to older questions are not shown

    function filters() {
        const out = new URLSearchParams({level: levelSel.value, limit: String(PAGE)});
        for (const [key, value] of [["edge", edgeSel.value], ["device", deviceSel.value]]) {
            if (value) {
                out.set(key, value);
            }
        }
        const lo = fromLocalInput(from.value);
        const hi = fromLocalInput(to.value);
        if (lo !== null) {
            out.set("from", String(lo));
        }
        if (hi !== null) {
            out.set("to", String(hi));
        }
        if (lo !== null && hi !== null && lo >= hi) {
            throw new Error("“From” must be before “To”");
        }
        return out;
    }

    function merge(page) {
        for (const event of page.events) {
            events.set(event.id, event);
        }
    }

    function draw() {
        const sorted = [...events.values()].sort((a, b) => b.ts - a.ts || b.id - a.id);
        place(sorted, (e) => e.id);
        if (sorted.length === 0) {
            body.append(el("tr", {}, el("td", {colspan: 5, class: "empty"}, "No event matches these filters.")));
        }
        older.hidden = !cursor;
        shown = sorted.length;
    }

    // The newest page, and behind it, until an event already shown, the pages of a burst larger than one page
    // (an edge back online sends its backlog at once): the log never silently skips what came between rounds.
    async function catchUp(asked, page, gen) {
        const had = new Set(events.keys());
        let reached = page.events.some((e) => had.has(e.id));
        let next = page.next_cursor;
        const read = [page];
        for (let n = 0; !reached && next && n < CATCH_UP_PAGES; n += 1) {
            asked.set("cursor", next);
            const more = await getJSON(`/api/v1/events?${asked}`);
            if (gen !== generation) {
                return false;
            }
            reached = more.events.some((e) => had.has(e.id));
            next = more.next_cursor;
            read.push(more);
        }
        if (!reached && next) { // more came than a catch-up reads: show those, the rest one click away
            events = new Map();
            cursor = next;
        }
        read.forEach(merge);
        return true;
    }

    async function round() {
        const gen = generation;
        const asked = filters();
        const page = await getJSON(`/api/v1/events?${asked}`);
        if (gen !== generation) {
            return; // asked with filters that have changed since: the next round asks again
        }
        if (cursor === undefined) {
            merge(page);
            cursor = page.next_cursor;
        } else if (!await catchUp(asked, page, gen)) {
            return;
        }
        draw();
        setStatus(status, `${shown} event${shown === 1 ? "" : "s"} shown · live, updated ${new Date().toLocaleTimeString()}`);
    }

    function changed() {
        generation += 1;
        events = new Map();
        cursor = undefined;
        remember({level: levelSel.value === DEFAULT_LEVEL ? "" : levelSel.value, edge: edgeSel.value,
            device: deviceSel.value, from: from.value, to: to.value});
        body.replaceChildren();
        feed.now();
    }

    older.addEventListener("click", async () => {
        try {
            const gen = generation;
            const asked = filters();
            asked.set("cursor", cursor);
            const page = await getJSON(`/api/v1/events?${asked}`);
            if (gen !== generation) {
                return;
            }
            merge(page);
            cursor = page.next_cursor;
            draw();
        } catch (error) {
            setStatus(status, `Older events could not be loaded: ${error.message}`, true);
        }
    });
    if (problems.length) {
        setStatus(status, problems.join("; ") + ". ", true);
        status.append(el("a", {href: location.pathname}, "Show the newest events"));
        return;
    }
    const feed = poll(round, REFRESH_MS, (error) => setStatus(status, `The events could not be loaded: ${error.message}`
        + ". Trying again…", true));
    for (const input of [levelSel, edgeSel, deviceSel, from, to]) {
        input.addEventListener("change", changed);
    }
}
