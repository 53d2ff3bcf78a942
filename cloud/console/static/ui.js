// Small helpers the Devices, Alerts and Events pages share: elements, badges, times, the query string and a
// poller that waits between rounds (never two requests of one kind at once).
import {ApiError} from "./api.js";

export function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
        if (value !== null && value !== undefined && value !== false) {
            node.setAttribute(key, value === true ? "" : value);
        }
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
}

export function badge(text, kind = "") {
    return el("span", {class: `badge ${kind}`}, text);
}

export const root = document.body.dataset.root || "";
export const role = document.body.dataset.role || "viewer";
export const canAct = role === "operator" || role === "admin";

export function at(seconds) {
    if (seconds === null || seconds === undefined) {
        return "–";
    }
    const d = new Date(seconds * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
        + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// A datetime-local input's value <-> epoch seconds (the browser's time zone, as the input shows it).
export function fromLocalInput(value) {
    if (!value) {
        return null;
    }
    const t = Date.parse(value);
    return Number.isNaN(t) ? null : t / 1000;
}

export function toLocalInput(seconds) {
    return seconds === null ? "" : at(seconds).replace(" ", "T");
}

// A time as the API takes it: epoch seconds or ISO 8601. Anything else is a sentence for the person.
export function parseTime(name, value) {
    if (value === null || value === "") {
        return {value: null};
    }
    if (/^-?\d+(\.\d+)?$/.test(value)) {
        return {value: Number(value)};
    }
    const t = Date.parse(value);
    if (Number.isNaN(t)) {
        return {error: `“${name}” must be a time (epoch seconds or like 2026-01-31T12:00), not “${value.slice(0, 40)}”`};
    }
    return {value: t / 1000};
}

// The address's "from" and "to" filters into their inputs; each bad one is a sentence in the list returned.
export function timeFilters(query, from, to) {
    const problems = [];
    for (const [name, input] of [["from", from], ["to", to]]) {
        const parsed = parseTime(name, query.get(name));
        if (parsed.error) {
            problems.push(parsed.error);
        } else if (parsed.value !== null) {
            input.value = toLocalInput(parsed.value);
        }
    }
    return problems;
}

export function params() {
    return new URLSearchParams(location.search);
}

// Keep the page's filters in its address, so a link or a reload shows the same thing.
export function remember(values) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(values)) {
        if (value !== null && value !== undefined && value !== "") {
            query.set(key, value);
        }
    }
    const text = query.toString();
    history.replaceState(null, "", location.pathname + (text ? `?${text}` : ""));
}

export function selectOf(id, options, chosen) {
    return el("select", {id}, ...options.map(([value, label]) => el("option",
        {value, selected: value === chosen}, label)));
}

// Run `round` now and then every `ms` after each round ends; stop once the session has ended (401).
export function poll(round, ms, onError) {
    let timer = null;
    let stopped = false;
    let again = false;
    async function go() {
        timer = null;
        again = false;
        try {
            await round();
        } catch (error) {
            if (error instanceof ApiError && error.status === 401) {
                return;
            }
            onError(error);
        }
        if (!stopped) {
            timer = setTimeout(go, again ? 0 : ms);
        }
    }
    go();
    return {
        now() { // a round at once (a filter changed), unless one is running
            if (timer !== null) {
                clearTimeout(timer);
                go();
            } else {
                again = true; // a round is running: another right after it
            }
        },
        stop() {
            stopped = true;
            if (timer !== null) {
                clearTimeout(timer);
            }
        },
    };
}

export function setStatus(node, text, error = false) {
    node.textContent = text;
    node.classList.toggle("error", error);
}

// Keep a table body in step with `items` (in order) without rebuilding rows that did not change, so a row
// being read or edited (an open form, an expanded detail) stays as it is while the list updates around it.
export function keyedRows(body, render) {
    const rows = new Map(); // key -> {text, node}
    return (items, key, keep = () => false) => {
        const wanted = [];
        for (const item of items) {
            const k = String(key(item));
            const text = JSON.stringify(item);
            let entry = rows.get(k);
            if (!entry || (entry.text !== text && !keep(entry.node))) {
                entry = {text, node: render(item)};
                rows.set(k, entry);
            }
            wanted.push(entry.node);
        }
        const live = new Set(wanted);
        for (const [k, entry] of rows) {
            if (!live.has(entry.node)) {
                rows.delete(k);
            }
        }
        wanted.forEach((node, i) => {
            if (body.children[i] !== node) {
                body.insertBefore(node, body.children[i] || null);
            }
        });
        while (body.children.length > wanted.length) {
            body.lastElementChild.remove();
        }
    };
}
