// The Programs page: the CNC programs the edges harvested, searched by text, tool, work offset and errors, and one
// program's detail (header, tools, offsets, estimate, diagnostics, renames) with its runs on the machines and the
// estimate calibrated on each. All from the public API (/api/v1/programs...).
import {getJSON} from "../api.js";
import {el, num, say, status, table, when} from "../widgets.js";
import {badge, params, remember} from "../ui.js";

const PAGE = 50;

function seconds(value) {
    if (value === null || value === undefined) {
        return "–";
    }
    const m = Math.floor(value / 60);
    const s = value - m * 60;
    return m ? `${m}:${s.toFixed(1).padStart(4, "0")}` : `${s.toFixed(1)} s`;
}

function programRow(p, open) {
    const link = el("a", {href: `?sha=${p.sha256}`, "data-sha": p.sha256}, p.path);
    link.addEventListener("click", (event) => {
        event.preventDefault();
        open(p.sha256);
    });
    return el("tr", {"data-sha": p.sha256},
        el("th", {scope: "row"}, link), el("td", {}, p.number || "–"), el("td", {}, p.edge),
        el("td", {}, p.tools.map((t) => `T${t}`).join(" ") || "–"), el("td", {}, p.offsets.join(" ") || "–"),
        el("td", {class: "num"}, String(p.holes)), el("td", {class: "num"}, seconds(p.estimate_s)),
        el("td", {}, p.errors ? badge(`${p.errors} error${p.errors === 1 ? "" : "s"}`, "bad") : "–"),
        el("td", {}, when(p.last_seen)));
}

function toolTable(uses) {
    return table("program-tools", ["Tool", "Type", "Diameter", "Comment", "Holes", "Feed path", "Time"],
        uses.map((t) => el("tr", {}, el("th", {scope: "row"}, `T${t.tool}`), el("td", {}, t.type || "–"),
            el("td", {class: "num"}, t.diameter_mm === null ? "–" : `${num(t.diameter_mm, 4)} mm`),
            el("td", {}, t.comment || ""), el("td", {class: "num"}, String(t.holes)),
            el("td", {class: "num"}, `${num(t.feed_mm, 4)} mm`), el("td", {class: "num"}, seconds(t.time_s)))),
        "No tool change in this program.");
}

function runTable(page) {
    return table("program-runs", ["Machine", "Started", "Duration", "Ended", "Estimate", "Calibrated"],
        page.runs.map((r) => el("tr", {}, el("th", {scope: "row"}, r.device), el("td", {}, when(r.start)),
            el("td", {class: "num"}, seconds(r.duration_s)),
            el("td", {}, r.completed ? badge("completed", "ok") : badge((r.end_state || "running").toLowerCase(), "warn")),
            el("td", {class: "num"}, seconds(r.estimate_s)), el("td", {class: "num"}, seconds(r.calibrated_s)))),
        "No run of this program in the last 30 days.");
}

function detailView(p, runs) {
    const est = p.estimate;
    const parts = est ? `feed ${seconds(est.feed_s)} · rapid ${seconds(est.rapid_s)} · ${est.tool_changes} tool `
        + `changes ${seconds(est.tool_change_s)} · dwell ${seconds(est.dwell_s)} (profile ${est.profile})` : "no estimate";
    return el("article", {id: "program-detail", "data-sha": p.sha256},
        el("h2", {}, p.path),
        el("p", {}, `${p.number || "no number"} · ${p.dialect}, ${p.units} · ${p.lines.toLocaleString()} lines · `
            + `edge ${p.edge}, folder ${p.folder} · sha256 ${p.sha256.slice(0, 12)}…`),
        p.header.length ? el("pre", {class: "header"}, p.header.map((h) => `(${h})`).join("\n")) : null,
        el("dl", {},
            el("dt", {}, "work offsets"), el("dd", {}, p.offsets.join(" ") || "–"),
            el("dt", {}, "holes"), el("dd", {}, String(p.holes)),
            el("dt", {}, "paths"), el("dd", {}, `${num(p.feed_mm, 5)} mm at feed, ${num(p.rapid_mm, 5)} mm rapid`),
            el("dt", {}, "estimate"), el("dd", {}, `${seconds(p.estimate_s)} (${parts})`),
            el("dt", {}, "subprograms"), el("dd", {}, p.subprograms.join(" ") || "–"),
            el("dt", {}, "renamed"), el("dd", {}, p.renames.map((r) => `${r.from} → ${r.to}`).join("; ") || "–")),
        el("h3", {}, "Tools"), toolTable(p.tool_uses),
        el("h3", {}, "Diagnostics"),
        table("program-diagnostics", ["Line", "Level", "Message"], p.diagnostics.map((d) => el("tr", {},
            el("td", {class: "num"}, String(d.line)), el("td", {}, badge(d.level, d.level === "error" ? "bad" : "warn")),
            el("td", {}, d.message))), "None."),
        el("h3", {}, "Runs"), runs ? runTable(runs) : el("p", {class: "status"}, "The runs could not be read."),
        runs && runs.calibrations.length ? el("p", {id: "program-calibration"}, runs.calibrations.map((c) =>
            `${c.device}: calibrated on ${c.runs} measured run${c.runs === 1 ? "" : "s"} (${c.method})`).join("; "))
            : null);
}

export function show(main) {
    const query = params();
    const text = el("input", {id: "programs-text", type: "search", maxlength: 100, value: query.get("text") || ""});
    const tool = el("input", {id: "programs-tool", type: "search", maxlength: 64, placeholder: "T12 or drill",
        value: query.get("tool") || ""});
    const offset = el("input", {id: "programs-offset", type: "search", maxlength: 16, placeholder: "G54",
        value: query.get("offset") || ""});
    const errors = el("input", {id: "programs-errors", type: "checkbox", checked: query.get("has_errors") === "true"});
    const go = el("button", {type: "submit"}, "Search");
    const note = status("programs-status", "Loading the programs…");
    const body = el("div", {id: "programs-list"});
    const more = el("button", {id: "programs-more", type: "button", hidden: true}, "More programs");
    const detail = el("section", {id: "program"});
    const form = el("form", {class: "toolbar", role: "search"},
        el("label", {}, "Text ", text), el("label", {}, "Tool ", tool), el("label", {}, "Work offset ", offset),
        el("label", {}, errors, " with errors only"), go);
    main.replaceChildren(el("h1", {}, "Programs"), form, note, body, more, detail);
    let cursor = null;
    let shown = [];

    function asked() {
        const out = new URLSearchParams({limit: String(PAGE)});
        for (const [key, input] of [["text", text], ["tool", tool], ["offset", offset]]) {
            if (input.value.trim()) {
                out.set(key, input.value.trim());
            }
        }
        if (errors.checked) {
            out.set("has_errors", "true");
        }
        return out;
    }

    function draw() {
        body.replaceChildren(table("programs-table", ["Program", "Number", "Edge", "Tools", "Offsets", "Holes",
            "Estimate", "Errors", "Last seen"], shown.map((p) => programRow(p, open)),
        "No program matches (the edges' program harvesters send them)."));
        more.hidden = !cursor;
    }

    async function search(next) {
        const q = asked();
        if (next) {
            q.set("cursor", cursor);
        }
        try {
            const page = await getJSON(`/api/v1/programs?${q}`);
            shown = next ? shown.concat(page.programs) : page.programs;
            cursor = page.next_cursor;
            draw();
            say(note, `${shown.length} program${shown.length === 1 ? "" : "s"} shown.`);
        } catch (error) {
            say(note, `The programs could not be loaded: ${error.message}`, true);
        }
    }

    function keep(sha) {
        remember({text: text.value.trim(), tool: tool.value.trim(), offset: offset.value.trim(),
            has_errors: errors.checked ? "true" : "", sha});
    }

    async function open(sha) {
        keep(sha);
        detail.replaceChildren(el("p", {class: "status"}, "Loading the program…"));
        try {
            const [p, runs] = await Promise.all([getJSON(`/api/v1/programs/${sha}`),
                getJSON(`/api/v1/programs/${sha}/runs`).catch(() => null)]);
            detail.replaceChildren(detailView(p, runs));
        } catch (error) {
            detail.replaceChildren(el("p", {class: "status error"}, `The program could not be loaded: ${error.message}`));
        }
    }

    form.addEventListener("submit", (event) => {
        event.preventDefault();
        keep("");
        detail.replaceChildren();
        cursor = null;
        search(false);
    });
    more.addEventListener("click", () => search(true));
    search(false);
    if (/^[0-9a-f]{64}$/.test(query.get("sha") || "")) {
        open(query.get("sha"));
    }
}
