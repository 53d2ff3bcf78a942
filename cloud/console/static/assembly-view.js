// The 3D view of one assembly (three.js, WebGL): each part's mesh at its pose, its faces coloured by the worst
// state of the pairs they are in (interfering red, touching amber, others grey), markers for touching contacts
// and the minimum-clearance pair, the part's name on hover. Drawn on demand (after a change), not every frame.
import * as THREE from "three";
import {OrbitControls} from "three/addons/controls/OrbitControls.js";

export const COLOURS = {interfering: "#d62728", touching: "#ff9f1c", clear: "#b4b9c0", clearance: "#1f5fd6"};
const RANK = {clear: 0, touching: 1, interfering: 2};
const MAGIC = "TWMESH01";

// A part's mesh as GET .../parts/{name}/mesh answers it (docs/physics.md): counts, pose, vertices, faces.
export function decodeMesh(buffer) {
    const magic = new TextDecoder().decode(new Uint8Array(buffer, 0, 8));
    if (magic !== MAGIC) {
        throw new Error("the service answered something that is not a part mesh");
    }
    const [nv, nf] = new Uint32Array(buffer, 8, 2);
    return {
        pose: Array.from(new Float64Array(buffer, 16, 16)),
        vertices: new Float32Array(buffer, 144, nv * 3),
        faces: new Uint32Array(buffer, 144 + 12 * nv, nf * 3),
    };
}

export function webglAvailable() {
    try {
        const canvas = document.createElement("canvas");
        return Boolean(canvas.getContext("webgl2") || canvas.getContext("webgl"));
    } catch (error) {
        return false;
    }
}

export class AssemblyView {
    constructor(container, tip) {
        this.container = container;
        this.tip = tip;
        this.parts = new Map(); // name -> {mesh, faceCount, stored: Matrix4}
        this.scene = new THREE.Scene();
        this.scene.background = new THREE.Color("#ffffff");
        this.scene.add(new THREE.HemisphereLight("#ffffff", "#8a8f96", 1.6));
        const sun = new THREE.DirectionalLight("#ffffff", 1.4);
        sun.position.set(0.4, -0.8, 1.0);
        this.scene.add(sun);
        this.markers = new THREE.Group();
        this.scene.add(this.markers);
        this.camera = new THREE.PerspectiveCamera(35, 1, 1e-4, 1e4);
        this.camera.up.set(0, 0, 1); // CAD: z up
        this.renderer = new THREE.WebGLRenderer({antialias: true, preserveDrawingBuffer: true});
        this.renderer.setPixelRatio(window.devicePixelRatio || 1);
        container.append(this.renderer.domElement);
        this.controls = new OrbitControls(this.camera, this.renderer.domElement);
        this.controls.addEventListener("change", () => this.draw());
        this.raycaster = new THREE.Raycaster();
        this.renderer.domElement.addEventListener("pointermove", (event) => this.hover(event));
        this.renderer.domElement.addEventListener("pointerleave", () => this.showTip(null));
        new ResizeObserver(() => this.resize()).observe(container);
        this.resize();
    }

    addPart(name, mesh) {
        const {vertices, faces, pose} = mesh;
        const faceCount = faces.length / 3;
        const positions = new Float32Array(faceCount * 9);
        for (let f = 0; f < faceCount; f += 1) {
            for (let k = 0; k < 3; k += 1) {
                const v = faces[3 * f + k] * 3;
                positions.set([vertices[v], vertices[v + 1], vertices[v + 2]], 9 * f + 3 * k);
            }
        }
        const geometry = new THREE.BufferGeometry();
        geometry.setAttribute("position", new THREE.BufferAttribute(positions, 3));
        geometry.setAttribute("color", new THREE.BufferAttribute(new Float32Array(faceCount * 9), 3));
        geometry.computeVertexNormals();
        const material = new THREE.MeshLambertMaterial({vertexColors: true, side: THREE.DoubleSide});
        const object = new THREE.Mesh(geometry, material);
        object.matrixAutoUpdate = false;
        object.matrix.set(...pose);
        object.userData.part = name;
        const edges = new THREE.LineSegments(new THREE.EdgesGeometry(geometry, 30),
            new THREE.LineBasicMaterial({color: "#4a5563"}));
        object.add(edges);
        this.scene.add(object);
        this.parts.set(name, {object, faceCount, stored: object.matrix.clone()});
        this.colour(name, null);
    }

    // Faces of a part by state: states is a Map face index -> "touching" | "interfering" (null: all clear).
    colour(name, states) {
        const part = this.parts.get(name);
        const colours = part.object.geometry.getAttribute("color");
        const paint = {};
        for (const [state, hex] of Object.entries(COLOURS)) {
            paint[state] = new THREE.Color(hex);
        }
        for (let f = 0; f < part.faceCount; f += 1) {
            const c = paint[(states && states.get(f)) || "clear"];
            for (let k = 0; k < 3; k += 1) {
                colours.setXYZ(3 * f + k, c.r, c.g, c.b);
            }
        }
        colours.needsUpdate = true;
    }

    // Colour every part from a list of pairs (the collision check's, or picture.json's, made alike).
    highlight(pairs) {
        const states = new Map();
        const mark = (part, faces, state) => {
            if (!states.has(part)) {
                states.set(part, new Map());
            }
            const byFace = states.get(part);
            for (const f of faces) {
                if (RANK[state] > RANK[byFace.get(f) || "clear"]) {
                    byFace.set(f, state);
                }
            }
        };
        for (const pair of pairs) {
            mark(pair.a, pair.faces_a, pair.state);
            mark(pair.b, pair.faces_b, pair.state);
        }
        for (const name of this.parts.keys()) {
            this.colour(name, states.get(name) || null);
        }
    }

    // Markers: a sphere at each touching contact, a line and two spheres between the minimum-clearance points.
    mark(touching, minimum, size) {
        this.markers.clear();
        const radius = Math.max(size * 0.012, 1e-6);
        const ball = (at, colour) => {
            const sphere = new THREE.Mesh(new THREE.SphereGeometry(radius, 16, 12),
                new THREE.MeshBasicMaterial({color: colour, depthTest: false}));
            sphere.position.set(...at);
            sphere.renderOrder = 2;
            this.markers.add(sphere);
        };
        for (const at of touching) {
            ball(at, COLOURS.touching);
        }
        if (minimum && minimum.point_a_m && minimum.point_b_m) {
            ball(minimum.point_a_m, COLOURS.clearance);
            ball(minimum.point_b_m, COLOURS.clearance);
            const line = new THREE.Line(
                new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(...minimum.point_a_m),
                    new THREE.Vector3(...minimum.point_b_m)]),
                new THREE.LineBasicMaterial({color: COLOURS.clearance, depthTest: false}));
            line.renderOrder = 2;
            this.markers.add(line);
        }
    }

    // A part's pose for this view (4×4 row-major, metres); null puts it back where it is stored.
    pose(name, rowMajor) {
        const part = this.parts.get(name);
        if (rowMajor) {
            part.object.matrix.set(...rowMajor);
        } else {
            part.object.matrix.copy(part.stored);
        }
        part.object.matrixWorldNeedsUpdate = true;
    }

    // Look at target from target + direction (picture.json's overview), the whole cube of half_extent in sight.
    look(view) {
        const target = new THREE.Vector3(...view.target_m);
        const direction = new THREE.Vector3(...view.direction).normalize();
        const distance = view.half_extent_m * 1.9 / Math.tan(THREE.MathUtils.degToRad(this.camera.fov / 2));
        this.camera.position.copy(target).addScaledVector(direction, distance);
        this.camera.near = distance / 100;
        this.camera.far = distance * 100;
        this.camera.updateProjectionMatrix();
        this.controls.target.copy(target);
        this.controls.update();
        this.draw();
    }

    resize() {
        const width = this.container.clientWidth || 800;
        const height = this.container.clientHeight || 500;
        this.renderer.setSize(width, height);
        this.camera.aspect = width / height;
        this.camera.updateProjectionMatrix();
        this.draw();
    }

    draw() {
        this.scene.updateMatrixWorld(true);
        this.renderer.render(this.scene, this.camera);
    }

    hover(event) {
        const box = this.renderer.domElement.getBoundingClientRect();
        const ndc = new THREE.Vector2(((event.clientX - box.left) / box.width) * 2 - 1,
            -((event.clientY - box.top) / box.height) * 2 + 1);
        this.raycaster.setFromCamera(ndc, this.camera);
        const objects = [...this.parts.values()].map((p) => p.object);
        const hit = this.raycaster.intersectObjects(objects, false)[0];
        this.showTip(hit ? {name: hit.object.userData.part, x: event.clientX - box.left, y: event.clientY - box.top}
            : null);
    }

    showTip(at) {
        this.tip.hidden = !at;
        if (at) {
            this.tip.textContent = at.name;
            this.tip.style.left = `${at.x + 14}px`;
            this.tip.style.top = `${at.y + 10}px`;
        }
    }
}
