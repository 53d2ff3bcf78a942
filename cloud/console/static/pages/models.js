// The Models page: the registry (every model and version, each version's card), the assignment rules with
// canary-then-fleet rollout and roll back (operators), and each device's drift. All from the public API.
import {getJSON, send} from "../api.js";
import {bytes, el, may, num, say, status, table, when} from "../widgets.js";

const DRIFT_BADGE = {ok: "ok", warn: "warn", drift: "bad"};

function metricsTable(card) {
    const names = [...new Set(Object.values(card.metrics).flatMap((m) => Object.keys(m)))].sort();
    const rows = names.map((name) => el("tr", {}, el("th", {scope: "row"}, name),
        ...["fp32", "int8"].map((v) => el("td", {class: "num"}, num(card.metrics[v]?.[name], 4)))));
    rows.push(el("tr", {}, el("th", {scope: "row"}, "model size"),
        ...["fp32", "int8"].map((v) => el("td", {class: "num"}, bytes(card.size_bytes[v])))));
    return table(null, ["Metric", "FP32", "INT8"], rows, "No metrics recorded.");
}

function statsTable(card) {
    return table(null, ["Input", "Mean", "Std", "Min", "Max"], card.feature_stats.map((f) => el("tr", {},
        el("th", {scope: "row"}, f.name), ...[f.mean, f.std, f.min, f.max].map((v) => el("td", {class: "num"},
            num(v, 4))))), "No feature statistics.");
}

function cardView(card) {
    const source = Object.entries(card.source).filter(([, v]) => v !== null && v !== "").map(([k, v]) => `${k}: ${v}`).join(", ");
    const where = card.assignments.map((r) => (r.scope === "fleet" ? "the fleet" : `${r.scope} ${r.target}`));
    return el("article", {class: "card", "data-model": card.name, "data-version": String(card.version)},
        el("h3", {}, `${card.name} v${card.version}`),
        el("p", {}, card.description || ""),
        el("dl", {},
            el("dt", {}, "kind"), el("dd", {}, card.kind),
            el("dt", {}, "package"), el("dd", {}, `${bytes(card.size)}, sha256 ${card.sha256.slice(0, 12)}…`),
            el("dt", {}, "trained"), el("dd", {}, when(card.created_at)),
            el("dt", {}, "uploaded"), el("dd", {}, `${when(card.uploaded_at)} by ${card.uploaded_by}`),
            el("dt", {}, "source"), el("dd", {}, source || "–"),
            el("dt", {}, "assigned to"), el("dd", {}, where.join(", ") || "nothing")),
        metricsTable(card), el("h4", {}, "Training data per input"), statsTable(card));
}

export function show(main) {
    const note = status("models-status", "Loading the models…");
    const registry = el("section", {id: "registry"});
    const rules = el("section", {id: "assignments"});
    const drift = el("section", {id: "drift"});
    main.replaceChildren(el("h1", {}, "Models"), note, registry, rules, drift);
    let models = [];
    let edges = [];

    async function showCard(holder, name, version) {
        try {
            holder.replaceChildren(cardView(await getJSON(`/api/v1/models/${name}/versions/${version}`)));
        } catch (error) {
            holder.replaceChildren(el("p", {class: "status error"}, error.message));
        }
    }

    function drawRegistry() {
        const cards = el("div", {class: "cards"});
        for (const m of models) {
            const holder = el("div");
            const pick = el("select", {"aria-label": `version of ${m.name}`},
                ...m.versions.slice().reverse().map((v) => el("option", {value: String(v)}, `v${v}`)));
            pick.addEventListener("change", () => showCard(holder, m.name, pick.value));
            cards.append(el("div", {}, el("label", {}, `${m.name} `, pick), holder));
            showCard(holder, m.name, m.latest);
        }
        registry.replaceChildren(el("h2", {}, "Registry"),
            table("models-table", ["Model", "Kind", "Latest", "Versions", "Description"], models.map((m) =>
                el("tr", {"data-model": m.name}, el("th", {scope: "row"}, m.name), el("td", {}, m.kind),
                    el("td", {class: "num"}, `v${m.latest}`), el("td", {}, m.versions.map((v) => `v${v}`).join(", ")),
                    el("td", {}, m.description))), "No model has been uploaded yet (twincloud model upload)."),
            cards);
    }

    async function assign(rule) {
        say(note, `Assigning ${rule.model} v${rule.version} to ${rule.scope === "fleet" ? "the fleet"
            : `${rule.scope} ${rule.target}`}…`);
        try {
            await send("PUT", "/api/v1/model-assignments", rule);
            say(note, `${rule.model} v${rule.version} now serves ${rule.scope === "fleet" ? "the fleet"
                : `${rule.scope} ${rule.target}`}.`);
        } catch (error) {
            say(note, `The assignment was refused: ${error.message}`, true);
        }
        await drawRules();
    }

    function assignForm() {
        const model = el("select", {id: "assign-model"}, ...models.map((m) => el("option", {value: m.name}, m.name)));
        const version = el("select", {id: "assign-version"});
        const fillVersions = () => {
            const m = models.find((x) => x.name === model.value);
            version.replaceChildren(...(m ? m.versions.slice().reverse() : [])
                .map((v) => el("option", {value: String(v)}, `v${v}`)));
        };
        model.addEventListener("change", fillVersions);
        fillVersions();
        const edge = el("select", {id: "assign-edge"}, ...edges.map((e) => el("option", {value: e.name}, e.name)));
        const device = el("input", {id: "assign-device", placeholder: "device name", maxlength: "64"});
        const rule = (scope, target) => ({scope, target, model: model.value, version: Number(version.value)});
        const canary = el("button", {type: "button", id: "assign-canary"}, "Assign to this edge (canary)");
        const fleet = el("button", {type: "button", id: "assign-fleet"}, "Assign to the fleet");
        const one = el("button", {type: "button", id: "assign-device-button"}, "Assign to this device");
        canary.addEventListener("click", () => assign(rule("edge", edge.value)));
        fleet.addEventListener("click", () => assign(rule("fleet", null)));
        one.addEventListener("click", () => {
            if (!device.value.trim()) {
                say(note, "Type the device's name first.", true);
                return;
            }
            assign(rule("device", device.value.trim()));
        });
        return el("div", {class: "actions"}, el("label", {}, "Model", model), el("label", {}, "Version", version),
            el("label", {}, "Edge", edge), canary, fleet, el("label", {}, "Device", device), one);
    }

    function ruleRow(r) {
        const cells = [el("td", {}, r.scope), el("td", {}, r.target ?? "(every device)"),
            el("td", {}, `${r.model} v${r.version}`), el("td", {}, `${r.assigned_by}, ${when(r.assigned_at)}`)];
        const actions = el("td");
        if (may("operator")) {
            const m = models.find((x) => x.name === r.model);
            const previous = m ? m.versions.filter((v) => v < r.version).pop() : undefined;
            if (previous !== undefined) {
                const back = el("button", {type: "button", class: "rollback"}, `Roll back to v${previous}`);
                back.addEventListener("click", () => assign({scope: r.scope, target: r.target, model: r.model,
                    version: previous}));
                actions.append(back);
            }
            const drop = el("button", {type: "button", class: "unassign"}, "Unassign");
            drop.addEventListener("click", async () => {
                const query = new URLSearchParams({scope: r.scope});
                if (r.target) {
                    query.set("target", r.target);
                }
                try {
                    await send("DELETE", `/api/v1/model-assignments?${query}`);
                } catch (error) {
                    say(note, `Unassigning was refused: ${error.message}`, true);
                }
                await drawRules();
            });
            actions.append(drop);
        }
        return el("tr", {"data-rule": `${r.scope}:${r.target ?? ""}`}, ...cells, actions);
    }

    async function drawRules() {
        const list = await getJSON("/api/v1/model-assignments");
        rules.replaceChildren(el("h2", {}, "Assignments"),
            el("p", {class: "hint"}, "A device is scored by its device rule, else its edge's, else the fleet's. "
                + "Roll out to one edge first (canary), then the fleet; roll back by assigning the previous version."),
            may("operator") && models.length ? assignForm() : null,
            table("rules-table", ["Scope", "Target", "Version", "Assigned", ""], list.map(ruleRow),
                "No rule: no device is scored."));
    }

    async function drawDrift() {
        const list = await getJSON("/api/v1/drift");
        drift.replaceChildren(el("h2", {}, "Drift per device"), table("drift-table",
            ["Device", "Edge", "Model", "State", "Drift", "Inputs that moved most (PSI)", "Reported"],
            list.map((d) => el("tr", {"data-device": d.device}, el("th", {scope: "row"}, d.device),
                el("td", {}, d.edge), el("td", {}, `${d.model} v${d.version}`), el("td", {}, d.state),
                el("td", {}, el("span", {class: `badge ${DRIFT_BADGE[d.drift] || ""}`}, d.drift)),
                el("td", {}, d.features.slice(0, 3).map((f) => `${f.name} ${num(f.psi, 2)}`).join(", ") || "–"),
                el("td", {}, when(d.reported_at)))), "No edge has reported a model's drift yet."));
    }

    (async () => {
        try {
            [models, edges] = await Promise.all([getJSON("/api/v1/models"), getJSON("/api/v1/edges")]);
            drawRegistry();
            await Promise.all([drawRules(), drawDrift()]);
            say(note, `${models.length} model${models.length === 1 ? "" : "s"}.`);
        } catch (error) {
            say(note, `Could not load the models: ${error.message}`, true);
        }
    })();
}
