// The shell of every console page: sign-out, then the page's own module (pages/<name>.js) draws #page.
import {send} from "./api.js";

const root = document.body.dataset.root || "";
const signOut = document.getElementById("sign-out");
if (signOut) {
    signOut.addEventListener("click", async () => {
        try {
            await send("POST", "/logout");
        } finally {
            location.assign(`${root}/login`);
        }
    });
}

const page = document.body.dataset.page;
if (page) {
    const module = await import(`./pages/${page}.js`);
    module.show(document.getElementById("page"));
}
