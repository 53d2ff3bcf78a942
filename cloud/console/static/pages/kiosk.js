// The shop-floor kiosk: full screen, one large tile per machine (device), red while it has an open alert,
// grey when its edge is offline or the kiosk cannot refresh; refreshed every few seconds.
import {ApiError} from "../api.js";
import {ago, loadFleet} from "../fleet-data.js";

const REFRESH_MS = 5000;

function tile(device, edgeOnline, now) {
    const alerting = device.alerts.length > 0;
    const node = document.createElement("section");
    node.className = `tile ${alerting ? "alerting" : !edgeOnline ? "offline" : "ok"}`;
    node.dataset.device = device.name;
    const name = document.createElement("h2");
    name.textContent = device.name;
    const state = document.createElement("p");
    state.className = "state";
    state.textContent = alerting ? (device.alerts[0].message || device.alerts[0].label || "alert")
        : !edgeOnline ? "edge offline" : (device.status || "no data");
    const seen = document.createElement("p");
    seen.className = "seen";
    seen.textContent = `last data ${ago(device.lastSeen, now)}`;
    node.append(name, state, seen);
    return node;
}

// The tiles were drawn from data that can no longer be refreshed: a green tile must not go on saying "running"
// from across the hall. Green ones turn grey, red ones stay red, and a line says since when.
function stale(main, since, error) {
    main.classList.add("stale");
    let line = main.querySelector(".kiosk-stale");
    if (!line) {
        line = document.createElement("p");
        line.className = "kiosk-stale";
        line.setAttribute("role", "alert");
        main.prepend(line);
    }
    const when = since ? `since ${since.toLocaleTimeString()}` : "yet";
    line.textContent = `Not updated ${when}: the service does not answer (${error.message}). Trying again…`;
}

export function show(main) {
    main.classList.add("tiles");
    let updated = null;
    async function refresh() {
        try {
            const fleet = await loadFleet();
            const tiles = fleet.edges.flatMap((e) => e.devices.map((d) => tile(d, e.online, fleet.now)));
            tiles.push(...fleet.unowned.map((d) => tile(d, false, fleet.now)));
            main.classList.remove("stale");
            main.replaceChildren(...tiles);
            if (tiles.length === 0) {
                main.textContent = "No machine has sent data yet.";
            }
            updated = new Date();
        } catch (error) {
            if (error instanceof ApiError && error.status === 401) {
                return;
            }
            stale(main, updated, error);
        }
        setTimeout(refresh, REFRESH_MS);
    }
    refresh();
}
