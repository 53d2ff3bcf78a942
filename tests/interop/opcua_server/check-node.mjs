// Exit 0 when this Node.js can run server.mjs (the "engines" of package.json); else say why and exit 1.
// Runs on old versions too: the Makefile and the tests ask it before they install or start the server.
import { readFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8"));
const need = pkg.engines.node.replace(">=", "").split(".").map(Number);
const have = process.versions.node.split(".").map(Number);
for (let i = 0; i < need.length; i++) {
  if ((have[i] ?? 0) > need[i]) process.exit(0);
  if ((have[i] ?? 0) < need[i]) {
    console.log(`Node.js ${process.versions.node} is older than ${need.join(".")}, which node-opcua needs`);
    process.exit(1);
  }
}
