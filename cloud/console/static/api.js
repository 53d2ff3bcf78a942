// The console's one way to the API: this host only, the session cookie, and the session's CSRF token on
// every change. A 401 (the session ended) sends the person to the sign-in page.
const root = document.body.dataset.root || "";
let session = null;

export class ApiError extends Error {
    constructor(status, message) {
        super(message);
        this.status = status;
    }
}

// Back to this very view after signing in: the page's path within the console and its query, where the
// pages keep their filters (a device, a level, a time range).
function signIn() {
    const path = location.pathname.startsWith(root) ? location.pathname.slice(root.length) : location.pathname;
    location.assign(`${root}/login?next=${encodeURIComponent((path || "/") + location.search)}`);
}

async function answer(response) {
    if (response.status === 401) {
        signIn();
        throw new ApiError(401, "your session has ended; sign in again");
    }
    if (!response.ok) {
        let reasons = "";
        try {
            reasons = (await response.json()).detail.map((d) => d.message).join("; ");
        } catch (error) { /* not the API's error body */ }
        throw new ApiError(response.status, reasons || `the service answered HTTP ${response.status}`);
    }
    return response.status === 204 ? null : response.json();
}

// The service's clock from the Date header of its last answer: ages are measured with it, not the browser's.
export let serverNow = () => Date.now() / 1000;

export async function getJSON(path) {
    const response = await fetch(root + path, {headers: {Accept: "application/json"}, cache: "no-store"});
    const date = Date.parse(response.headers.get("Date") || "");
    if (!Number.isNaN(date)) {
        const offset = date / 1000 - Date.now() / 1000;
        serverNow = () => Date.now() / 1000 + offset;
    }
    return answer(response);
}

export async function currentSession() {
    if (session === null) {
        session = await getJSON("/api/v1/session");
    }
    return session;
}

export async function send(method, path, body) {
    const {csrf} = await currentSession();
    const headers = {"X-CSRF-Token": csrf || "", Accept: "application/json"};
    const init = {method, headers};
    if (body !== undefined) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
    }
    return answer(await fetch(root + path, init));
}

// Binary answers (a part's mesh for the 3D view): the same host and cookie, an ArrayBuffer back.
export async function getBuffer(path) {
    const response = await fetch(root + path, {headers: {Accept: "application/octet-stream"}});
    if (!response.ok) {
        await answer(response);
    }
    return response.arrayBuffer();
}
