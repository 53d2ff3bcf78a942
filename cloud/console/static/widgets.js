// Small DOM helpers shared by the Assemblies, Models and Admin pages: elements, tables, numbers, times.
export function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) {
            continue;
        }
        if (key.startsWith("on")) {
            node.addEventListener(key.slice(2), value);
        } else {
            node.setAttribute(key, value === true ? "" : value);
        }
    }
    node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
    return node;
}

export function table(id, columns, rows, empty) {
    const body = rows.length ? rows
        : [el("tr", {}, el("td", {class: "empty", colspan: String(columns.length)}, empty))];
    return el("table", {id},
        el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {scope: "col"}, c)))),
        el("tbody", {}, ...body));
}

export function status(id, text) {
    return el("p", {id, role: "status", class: "status"}, text);
}

export function say(node, text, error = false) {
    node.textContent = text;
    node.classList.toggle("error", error);
}

export function when(epochSeconds) {
    if (epochSeconds === null || epochSeconds === undefined) {
        return "–";
    }
    return new Date(epochSeconds * 1000).toLocaleString(undefined, {dateStyle: "medium", timeStyle: "short"});
}

export function num(value, digits = 3) {
    if (value === null || value === undefined || Number.isNaN(value)) {
        return "–";
    }
    return Number(value).toLocaleString(undefined, {maximumSignificantDigits: digits});
}

export function bytes(n) {
    if (n === null || n === undefined) {
        return "–";
    }
    const units = ["B", "KB", "MB", "GB"];
    let k = 0;
    while (n >= 1024 && k < units.length - 1) {
        n /= 1024;
        k += 1;
    }
    return `${num(n, 3)} ${units[k]}`;
}

export const role = () => document.body.dataset.role;
const RANK = {viewer: 1, operator: 2, admin: 3};
export const may = (needed) => (RANK[role()] || 0) >= RANK[needed];
