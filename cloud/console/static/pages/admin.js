// The Admin page (admins only; the API refuses anyone else): edges and their tokens (create, rotate, revoke),
// people and their roles (add, change role, rotate, revoke). A new token is shown once, here, and kept nowhere.
import {getJSON, send} from "../api.js";
import {el, say, status, table, when} from "../widgets.js";

const ROLES = ["viewer", "operator", "admin"];

export function show(main) {
    const note = status("admin-status", "Loading edges and people…");
    const secret = el("div", {id: "new-token", "aria-live": "polite"});
    const edges = el("section", {id: "edges"});
    const people = el("section", {id: "people"});
    main.replaceChildren(el("h1", {}, "Admin"), note, secret, edges, people);

    function reveal(kind, answer) {
        secret.replaceChildren(el("div", {class: "secret", role: "alert"},
            el("p", {}, `The new token of ${kind} ${answer.name}, shown this once (the service keeps only its hash); `
                + "copy it now:"), el("code", {id: "token-value"}, answer.token)));
    }

    async function act(text, call) {
        secret.replaceChildren();
        try {
            const answer = await call();
            say(note, text);
            await draw();
            return answer;
        } catch (error) {
            say(note, `Refused: ${error.message}`, true);
            return null;
        }
    }

    async function rotate(kind, name, path) {
        if (!window.confirm(`Issue a new token for ${kind} ${name}? The current one stops working at once.`)) {
            return;
        }
        const answer = await act(`${kind} ${name} has a new token; the old one no longer works.`,
            () => send("POST", path));
        if (answer) {
            reveal(kind, answer);
        }
    }

    async function revoke(kind, name, path) {
        if (window.confirm(`Revoke the token of ${kind} ${name}? It stops working at once.`)) {
            await act(`The token of ${kind} ${name} is revoked.`, () => send("DELETE", path));
        }
    }

    function buttons(kind, name, base) {
        const turn = el("button", {type: "button", class: "rotate"}, "New token");
        turn.addEventListener("click", () => rotate(kind, name, `${base}/${name}/token`));
        const stop = el("button", {type: "button", class: "revoke"}, "Revoke");
        stop.addEventListener("click", () => revoke(kind, name, `${base}/${name}/token`));
        return el("td", {}, turn, " ", stop);
    }

    function addForm(id, label, extra, submit) {
        const name = el("input", {id: `${id}-name`, required: true, maxlength: "64", pattern: "[A-Za-z0-9][A-Za-z0-9._:\\-]{0,63}",
            title: "letters, digits and . _ : - (at most 64, starting with a letter or digit)"});
        const form = el("form", {class: "actions", id}, el("label", {}, "Name", name), ...extra,
            el("button", {type: "submit"}, label));
        form.addEventListener("submit", async (event) => {
            event.preventDefault();
            await submit(name.value.trim());
        });
        return form;
    }

    async function draw() {
        const [edgeList, userList] = await Promise.all([getJSON("/api/v1/edges"), getJSON("/api/v1/users")]);
        edges.replaceChildren(el("h2", {}, "Edges"),
            addForm("add-edge", "Add edge", [], async (name) => {
                const answer = await act(`Edge ${name} is registered.`, () => send("POST", "/api/v1/edges", {name}));
                if (answer) {
                    reveal("edge", answer);
                }
            }),
            table("edges-table", ["Edge", "Token", "Registered", "Last sync", ""], edgeList.map((e) =>
                el("tr", {"data-edge": e.name}, el("th", {scope: "row"}, e.name),
                    el("td", {}, e.revoked ? el("span", {class: "badge bad"}, "revoked") : el("span", {class: "badge ok"},
                        "valid")),
                    el("td", {}, when(e.created_at)), el("td", {}, when(e.last_seen)),
                    buttons("edge", e.name, "/api/v1/edges"))), "No edge is registered."));
        const role = el("select", {id: "add-person-role"}, ...ROLES.map((r) => el("option", {value: r}, r)));
        people.replaceChildren(el("h2", {}, "People"),
            addForm("add-person", "Add person", [el("label", {}, "Role", role)], async (name) => {
                const answer = await act(`${name} is added as ${role.value}.`,
                    () => send("POST", "/api/v1/users", {name, role: role.value}));
                if (answer) {
                    reveal("person", answer);
                }
            }),
            table("people-table", ["Person", "Role", "Token", "Added", ""], userList.map((u) => {
                const pick = el("select", {"aria-label": `role of ${u.name}`},
                    ...ROLES.map((r) => el("option", {value: r, selected: r === u.role}, r)));
                pick.addEventListener("change", () => act(`${u.name} is now ${pick.value}.`,
                    () => send("PUT", `/api/v1/users/${u.name}/role`, {role: pick.value})));
                return el("tr", {"data-person": u.name}, el("th", {scope: "row"}, u.name), el("td", {}, pick),
                    el("td", {}, u.revoked ? el("span", {class: "badge bad"}, "revoked") : el("span", {class: "badge ok"},
                        "valid")),
                    el("td", {}, when(u.created_at)), buttons("person", u.name, "/api/v1/users"));
            }), "Nobody yet."));
    }

    draw().then(() => say(note, "Tokens are shown once, when made; the service keeps only their hashes."))
        .catch((error) => say(note, `Could not load edges and people: ${error.message}`, true));
}
