// A node-opcua server that plays a foreign PLC for twinedge's OPC-UA tests and benchmark.
//
//   node server.mjs --port 4840 --pki /tmp/pki [--secure-only] [--users edge:secret,...]
//                   [--no-anonymous] [--tick-ms 100] [--max-nodes-per-read N]
//
// Its certificate store (own/, trusted/, rejected/, issuers/) lives in --pki. A client
// certificate it does not know yet is refused (BadCertificateUntrusted) and filed under
// rejected/; moving that file to trusted/certs/ trusts it while the server runs (the store
// watches its folders). The address space (namespace 1):
//   ns=1;s=Counter     UInt32, +1 every --tick-ms, stamped with the time of the change
//   ns=1;s=Temp        Double 21.5, writable
//   ns=1;s=Machine<k>.V<i>  (k 1..2, i 1..3) UInt32, all set to the tick count on every tick
// When it listens it prints one JSON line: {"ready": true, "url": ..., "certificate": ...}.
// SIGTERM or SIGINT shuts it down (sessions are closed); SIGKILL simulates a crashed PLC.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import { MessageSecurityMode, SecurityPolicy } from "node-opcua-secure-channel";
import { OPCUAServer } from "node-opcua-server";
import { DataType, Variant } from "node-opcua-variant";

const { values: opts } = parseArgs({
    options: {
        port: { type: "string" },
        pki: { type: "string" },
        "secure-only": { type: "boolean", default: false },
        users: { type: "string", default: "" },
        "no-anonymous": { type: "boolean", default: false },
        "tick-ms": { type: "string", default: "100" },
        "max-nodes-per-read": { type: "string", default: "0" },
    },
});
if (!opts.port || !opts.pki) {
    console.error("usage: node server.mjs --port PORT --pki DIR [options]");
    process.exit(2);
}
const port = Number(opts.port);
const tickMs = Number(opts["tick-ms"]);
const users = new Map(
    opts.users.split(",").filter(Boolean).map((pair) => {
        const at = pair.indexOf(":");
        return [pair.slice(0, at), pair.slice(at + 1)];
    }),
);

const certificateManager = new OPCUACertificateManager({
    rootFolder: opts.pki,
    automaticallyAcceptUnknownCertificate: false,
});
await certificateManager.initialize();

const secure = [SecurityPolicy.Basic256Sha256];
const server = new OPCUAServer({
    port,
    host: "127.0.0.1",
    hostname: "127.0.0.1",
    serverCertificateManager: certificateManager,
    securityPolicies: opts["secure-only"] ? secure : [SecurityPolicy.None, ...secure],
    securityModes: opts["secure-only"]
        ? [MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt]
        : [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: !opts["no-anonymous"],
    userManager: { isValidUser: (name, password) => users.has(name) && users.get(name) === password },
    buildInfo: { productName: "twinedge interop PLC (node-opcua)", manufacturerName: "twinedge tests" },
    serverCapabilities: {
        maxSessions: 50,
        operationLimits: { maxNodesPerRead: Number(opts["max-nodes-per-read"]) || undefined },
    },
    isAuditing: false,
});
await server.initialize();

const addressSpace = server.engine.addressSpace;
const ns = addressSpace.getOwnNamespace();
const objects = addressSpace.rootFolder.objects;
const plc = ns.addObject({ organizedBy: objects, browseName: "Plc" });
const uint32 = (value) => new Variant({ dataType: DataType.UInt32, value });

const counter = ns.addVariable({
    componentOf: plc, nodeId: "s=Counter", browseName: "Counter", dataType: "UInt32", minimumSamplingInterval: 0,
});
counter.setValueFromSource(uint32(0), undefined, new Date());
const temp = ns.addVariable({
    componentOf: plc, nodeId: "s=Temp", browseName: "Temp", dataType: "Double", minimumSamplingInterval: 0,
    accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite",
});
temp.setValueFromSource(new Variant({ dataType: DataType.Double, value: 21.5 }), undefined, new Date());
const machineVars = [];
for (const k of [1, 2]) {
    for (const i of [1, 2, 3]) {
        const v = ns.addVariable({
            componentOf: plc, nodeId: `s=Machine${k}.V${i}`, browseName: `Machine${k}.V${i}`, dataType: "UInt32",
            minimumSamplingInterval: 0,
        });
        v.setValueFromSource(uint32(0), undefined, new Date());
        machineVars.push(v);
    }
}

await server.start();

let tick = 0;
const timer = setInterval(() => {
    tick = (tick + 1) >>> 0;
    const now = new Date();
    counter.setValueFromSource(uint32(tick), undefined, now);
    for (const v of machineVars) {
        v.setValueFromSource(uint32(tick), undefined, now);
    }
}, tickMs);

const ownCert = path.join(opts.pki, "own", "certs", "certificate.pem");
console.log(JSON.stringify({
    ready: true,
    url: `opc.tcp://127.0.0.1:${port}`,
    certificate: fs.existsSync(ownCert) ? ownCert : null,
}));

let stopping = false;
async function stop() {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    await server.shutdown(0);
    await certificateManager.dispose();
    process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
