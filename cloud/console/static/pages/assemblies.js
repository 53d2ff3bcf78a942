// The Assemblies page: the uploads (newest first), and one assembly in 3D with its colliding faces, touching
// contacts and minimum-clearance pair marked, its mass properties, and a pose edited here re-checked by the API.
import {getBuffer, getJSON, send} from "../api.js";
import {AssemblyView, decodeMesh, webglAvailable} from "../assembly-view.js";
import {bytes, el, num, say, status, table, when} from "../widgets.js";

const METRES_PER = {mm: 1e-3, m: 1, inch: 0.0254};
const BASE = "/api/v1/physics";

export function show(main) {
    const id = new URLSearchParams(location.search).get("id");
    if (id) {
        showAssembly(main, id);
    } else {
        showList(main);
    }
}

function showList(main) {
    const note = status("assemblies-status", "Loading the assemblies…");
    const body = el("tbody");
    const more = el("button", {type: "button", id: "assemblies-more", hidden: true}, "More");
    main.replaceChildren(el("h1", {}, "Assemblies"), note,
        el("table", {id: "assemblies-table"},
            el("thead", {}, el("tr", {}, ...["Assembly", "Parts", "Size", "Uploaded", "Id"]
                .map((c) => el("th", {scope: "col"}, c)))), body), more);
    let cursor = null;
    let shown = 0;

    async function page() {
        try {
            const query = new URLSearchParams({limit: "50"});
            if (cursor) {
                query.set("cursor", cursor);
            }
            const answer = await getJSON(`${BASE}/assemblies?${query}`);
            for (const a of answer.assemblies) {
                body.append(el("tr", {"data-assembly": a.id},
                    el("th", {scope: "row"}, el("a", {href: `?id=${a.id}`}, a.name)),
                    el("td", {class: "num"}, String(a.parts)), el("td", {class: "num"}, bytes(a.size)),
                    el("td", {}, when(a.uploaded_at)), el("td", {}, el("code", {}, a.id))));
            }
            shown += answer.assemblies.length;
            cursor = answer.next_cursor;
            more.hidden = !cursor;
            say(note, shown ? `${shown} assemblies${cursor ? " (more below)" : ""}.`
                : "No assembly has been uploaded yet (POST /api/v1/physics/assemblies, docs/physics.md).");
        } catch (error) {
            say(note, `Could not load the assemblies: ${error.message}`, true);
        }
    }
    more.addEventListener("click", page);
    page();
}

// A part's pose from its row-major 4×4 (metres) as the inputs show it: translation in the assembly unit,
// rotations about the fixed X, Y, Z axes in degrees (as the assembly file's rotation_deg).
function poseInputs(m, unit) {
    const ry = Math.asin(-Math.max(-1, Math.min(1, m[8])));
    const rx = Math.abs(m[8]) < 0.999999 ? Math.atan2(m[9], m[10]) : 0;
    const rz = Math.abs(m[8]) < 0.999999 ? Math.atan2(m[4], m[0]) : Math.atan2(-m[1], m[5]);
    const deg = (r) => Number((r * 180 / Math.PI).toFixed(6));
    const len = (v) => Number((v / METRES_PER[unit]).toFixed(9));
    return {translation: [len(m[3]), len(m[7]), len(m[11])], rotation_deg: [deg(rx), deg(ry), deg(rz)]};
}

// The row-major 4×4 (metres) of a pose as the API reads it: R = Rz·Ry·Rx.
function poseMatrix(pose, unit) {
    const [a, b, c] = pose.rotation_deg.map((d) => d * Math.PI / 180);
    const [ca, sa, cb, sb, cc, sc] = [Math.cos(a), Math.sin(a), Math.cos(b), Math.sin(b), Math.cos(c), Math.sin(c)];
    const [x, y, z] = pose.translation.map((t) => t * METRES_PER[unit]);
    return [cc * cb, cc * sb * sa - sc * ca, cc * sb * ca + sc * sa, x,
        sc * cb, sc * sb * sa + cc * ca, sc * sb * ca - cc * sa, y,
        -sb, cb * sa, cb * ca, z,
        0, 0, 0, 1];
}

function length(metres, unit) {
    return `${num(metres / METRES_PER[unit], 4)} ${unit}`;
}

function pairRows(pairs, unit) {
    return pairs.map((p) => el("tr", {"data-pair": `${p.a}/${p.b}`, class: p.state},
        el("td", {}, `${p.a} / ${p.b}`),
        el("td", {}, el("span", {class: `badge ${p.state === "interfering" ? "bad" : "warn"}`}, p.state)),
        el("td", {class: "num"}, p.volume_m3 ? `${num(p.volume_m3 / METRES_PER[unit] ** 3, 4)} ${unit}³` : "–"),
        el("td", {class: "num"}, p.depth_m ? length(p.depth_m, unit) : "–")));
}

function massTable(mass, unit) {
    const rows = mass.parts.map((p) => el("tr", {},
        el("th", {scope: "row"}, p.name), el("td", {}, p.material),
        el("td", {class: "num"}, p.world ? `${num(p.world.mass_kg, 4)} kg` : p.error || "–"),
        el("td", {class: "num"}, p.world ? `${num(p.world.volume_m3 / METRES_PER[unit] ** 3, 4)} ${unit}³` : "–")));
    const total = mass.assembly;
    if (total) {
        rows.push(el("tr", {class: "total"}, el("th", {scope: "row"}, "assembly"), el("td", {}, ""),
            el("td", {class: "num"}, `${num(total.mass_kg, 4)} kg`),
            el("td", {class: "num"}, `CoM ${total.com_m.map((v) => num(v / METRES_PER[unit], 4)).join(", ")} ${unit}`)));
    }
    return table("mass-table", ["Part", "Material", "Mass", "Volume"], rows, "No part.");
}

async function showAssembly(main, id) {
    const note = status("assembly-status", "Loading the assembly…");
    const stage = el("div", {id: "assembly-view", class: "stage", "data-state": "loading", "data-checks": "0"});
    const tip = el("div", {id: "part-name", role: "tooltip", class: "tip", hidden: true});
    stage.append(tip);
    const pairs = el("div", {id: "assembly-pairs"});
    const clearance = el("p", {id: "assembly-clearance", class: "status"});
    const mass = el("div", {id: "assembly-mass"});
    const editor = el("form", {id: "pose-editor", class: "pose"});
    const title = el("h1", {}, "Assembly");
    const legend = el("p", {class: "legend"}, ...Object.entries({interfering: "interfering faces",
        touching: "touching faces and contacts", clearance: "minimum clearance"}).map(([k, text]) =>
        el("span", {}, el("i", {class: k}), text)));
    main.replaceChildren(el("p", {}, el("a", {href: location.pathname}, "← all assemblies")), title, note,
        el("div", {class: "assembly"}, el("div", {}, stage, legend),
            el("aside", {}, el("h2", {}, "Move a part"), editor, el("h2", {}, "Problems"), pairs, clearance,
                el("h2", {}, "Mass properties"), mass)));
    let info;
    try {
        info = await getJSON(`${BASE}/assemblies/${encodeURIComponent(id)}`);
    } catch (error) {
        say(note, `Could not load assembly ${id}: ${error.message}`, true);
        stage.remove();
        return;
    }
    const unit = info.unit;
    title.textContent = info.name;
    const check = (path, extra) => send("POST", `${BASE}/${path}`, {assembly_id: id, ...extra});
    const [picture, minimum, massAnswer, ...meshes] = await Promise.all([
        getJSON(`${BASE}/assemblies/${id}/picture.json`), check("collision/clearance", {threshold_m: 0}),
        check("mass-properties", {}).catch((error) => ({error: error.message})),
        ...info.parts.map((p) => getBuffer(`${BASE}/assemblies/${id}/parts/${encodeURIComponent(p.name)}/mesh`)
            .then(decodeMesh))]);
    mass.replaceChildren(massAnswer.error ? el("p", {class: "status error"}, massAnswer.error)
        : massTable(massAnswer, unit));
    const size = Math.max(...picture.box_max_m.map((v, k) => v - picture.box_min_m[k]));
    let view = null;
    if (webglAvailable()) {
        view = new AssemblyView(stage, tip);
        info.parts.forEach((p, k) => view.addPart(p.name, meshes[k]));
        view.look(picture.views[0]);
    } else {
        stage.append(el("p", {class: "status error"}, "This browser cannot draw WebGL, so the 3D view is off; "
            + "the problems and mass properties are listed beside it."));
    }
    const stored = new Map(info.parts.map((p, k) => [p.name, poseInputs(meshes[k].pose, unit)]));

    function drawProblems(found, min, pictured) {
        const problems = found.filter((p) => p.state !== "clear");
        pairs.replaceChildren(table("pairs-table", ["Pair", "State", "Overlap", "Depth"], pairRows(problems, unit),
            "No part touches or cuts into another."));
        const counts = ["interfering", "touching"].map((s) => `${problems.filter((p) => p.state === s).length} ${s}`);
        say(note, `${info.parts.length} parts; ${counts.join(", ")}${pictured ? "" : " (with the poses below)"}.`);
        clearance.textContent = min ? `Minimum clearance: ${min.a} / ${min.b}, ${min.status}, `
            + `${length(min.distance_m, unit)}.` : "Minimum clearance: one part only.";
        if (view) {
            view.highlight(problems);
            const touching = problems.filter((p) => p.state === "touching").map((p) => p.at);
            view.mark(touching, min, size);
            view.draw();
        }
        stage.dataset.state = "ready";
    }
    // picture.json's pairs and per-part faces, in the collision check's shape.
    const pictured = picture.pairs.map((p) => {
        const faces = (name) => (picture.parts.find((q) => q.name === name)?.faces || [])
            .filter((f) => f.pair === p.index).flatMap((f) => f.faces);
        return {a: p.a, b: p.b, state: p.state, faces_a: faces(p.a), faces_b: faces(p.b), at: p.centroid_m,
            volume_m3: p.volume_m3, depth_m: p.depth_m};
    });
    drawProblems(pictured, minimum.minimum, true);
    buildEditor(editor, info, stored, unit, async (poses) => {
        stage.dataset.state = "checking";
        say(note, "Checking the new poses…");
        try {
            const [found, min] = await Promise.all([check("collision/check", {poses}),
                check("collision/clearance", {poses, threshold_m: 0})]);
            if (view) {
                for (const name of stored.keys()) {
                    view.pose(name, poses[name] ? poseMatrix(poses[name], unit) : null);
                }
            }
            drawProblems(found.pairs.map((p) => ({...p, state: p.status, at: p.contact
                ? p.contact.box_min_m.map((v, k) => (v + p.contact.box_max_m[k]) / 2) : p.point_a_m})),
            min.minimum, false);
            stage.dataset.checks = String(Number(stage.dataset.checks) + 1);
        } catch (error) {
            say(note, `The check was refused: ${error.message}`, true);
            stage.dataset.state = "ready";
        }
    });
}

function buildEditor(form, info, stored, unit, recheck) {
    const choose = el("select", {id: "pose-part", name: "part"},
        ...info.parts.map((p) => el("option", {value: p.name}, p.name)));
    const edited = new Map(); // part -> pose, as typed
    const fields = [];
    const inputs = ["x", "y", "z"].map((axis) => el("input", {type: "number", step: "any", required: true,
        name: `t${axis}`, "aria-label": `${axis} (${unit})`}))
        .concat(["x", "y", "z"].map((axis) => el("input", {type: "number", step: "any", required: true,
            name: `r${axis}`, "aria-label": `rotation about ${axis} (°)`})));
    fields.push(...inputs);
    const fill = () => {
        const pose = edited.get(choose.value) || stored.get(choose.value);
        [...pose.translation, ...pose.rotation_deg].forEach((v, k) => {
            inputs[k].value = String(v);
        });
    };
    choose.addEventListener("change", fill);
    const problem = el("p", {class: "status error", role: "alert", id: "pose-problem"});
    const reset = el("button", {type: "button", id: "pose-reset"}, "Put every part back");
    form.replaceChildren(
        el("label", {}, "Part ", choose),
        el("fieldset", {}, el("legend", {}, `Translation (${unit})`),
            ...inputs.slice(0, 3).map((i) => el("label", {}, `${i.name.slice(1)} `, i))),
        el("fieldset", {}, el("legend", {}, "Rotation about the fixed axes (°)"),
            ...inputs.slice(3).map((i) => el("label", {}, `${i.name.slice(1)} `, i))),
        el("button", {type: "submit", id: "pose-check"}, "Check this pose"), reset, problem);
    fill();
    const poses = () => Object.fromEntries(edited);
    form.addEventListener("submit", (event) => {
        event.preventDefault();
        const values = inputs.map((i) => Number(i.value));
        if (inputs.some((i) => i.value.trim() === "") || values.some((v) => !Number.isFinite(v))) {
            problem.textContent = "Each of the six values must be a number.";
            return;
        }
        problem.textContent = "";
        edited.set(choose.value, {translation: values.slice(0, 3), rotation_deg: values.slice(3)});
        recheck(poses());
    });
    reset.addEventListener("click", () => {
        edited.clear();
        fill();
        recheck({});
    });
}
