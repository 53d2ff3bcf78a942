// The device page's charts: one uPlot chart per chosen field, drawn from the aggregate endpoint with buckets
// sized to the chart's width (a bucket per one or two pixel columns) and a min/max envelope, so a single spike
// stays visible however far out the range goes. Frames from the live feed are merged into the newest bucket
// (or start a new one) while the range ends now; dragging across a chart zooms all of them in (history only).
// For tests and the benchmark, window.twinCharts holds each chart and how long each load took to draw.
import uPlot from "./vendor/uplot/uPlot.esm.js";
import {getJSON} from "./api.js";
import {el} from "./ui.js";

export const RANGES = [["15m", 900, "15 min"], ["1h", 3600, "1 h"], ["6h", 21600, "6 h"], ["24h", 86400, "24 h"],
    ["7d", 604800, "7 days"], ["30d", 2592000, "30 days"]];
// Bucket widths the rollups (10 s, 1 min, 1 h) serve whole, or raw points under 10 s.
const WIDTHS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const MIN_ZOOM_S = 30;
const HEIGHT = 220;

export function bucketWidth(span, pixels) {
    const wanted = span / Math.max(100, pixels);
    return WIDTHS.find((w) => w >= wanted) ?? WIDTHS[WIDTHS.length - 1];
}

// charts: field -> uPlot; loads: each history load (ms from request to drawn); frames: live values merged;
// latency: seconds from a live frame's reading to the chart drawn with it (the newest 1,000).
const exposed = window.twinCharts = {charts: {}, loads: [], frames: 0, latency: []};

function emptySeries() {
    return {x: [], mean: [], min: [], max: [], count: []};
}

export class DeviceCharts {
    constructor(container, device, onRange) {
        this.container = container;
        this.device = device;
        this.onRange = onRange;
        this.fields = [];
        this.charts = {}; // field -> {u, s: series arrays}
        this.range = {span: 3600, lo: 0, hi: 0, live: true};
        this.width = 1;
        this.loading = 0;
        this.dirty = false;
        this.arrived = []; // timestamps of live frames not drawn yet
        this.timer = setInterval(() => this.tick(), 1000);
    }

    chartWidth() {
        return Math.max(300, Math.floor(this.container.clientWidth || 800) - 8);
    }

    setFields(fields) {
        this.fields = fields;
        for (const field of Object.keys(this.charts)) {
            if (!fields.includes(field)) {
                this.charts[field].u.destroy();
                this.charts[field].box.remove();
                delete this.charts[field];
                delete exposed.charts[field];
            }
        }
        for (const field of fields) {
            if (!this.charts[field]) {
                this.charts[field] = this.make(field);
            }
        }
        return this.load();
    }

    make(field) {
        const box = el("figure", {class: "chart", "data-field": field});
        this.container.append(box);
        const opts = {
            width: this.chartWidth(), height: HEIGHT, title: field,
            scales: {x: {time: true}},
            series: [{},
                {label: "mean", stroke: "#1565c0", width: 1.5},
                {label: "min", stroke: "#6b8fb3", width: 1},
                {label: "max", stroke: "#6b8fb3", width: 1}],
            bands: [{series: [3, 2], fill: "rgba(21, 101, 192, 0.18)"}],
            cursor: {drag: {x: true, y: false, setScale: false}, sync: {key: `device-${this.device}`}},
            hooks: {setSelect: [(u) => this.selected(u)]},
        };
        const u = new uPlot(opts, [[], [], [], []], box);
        exposed.charts[field] = u;
        return {u, box, s: emptySeries()};
    }

    selected(u) {
        const {left, width} = u.select;
        u.setSelect({left: 0, top: 0, width: 0, height: 0}, false);
        if (width < 4) {
            return;
        }
        let lo = u.posToVal(left, "x");
        let hi = u.posToVal(left + width, "x");
        if (hi - lo < MIN_ZOOM_S) {
            const mid = (lo + hi) / 2;
            [lo, hi] = [mid - MIN_ZOOM_S / 2, mid + MIN_ZOOM_S / 2];
        }
        this.range = {span: hi - lo, lo, hi, live: false};
        this.onRange(this.range);
        this.load();
    }

    // The range ending now, `span` seconds long.
    follow(span) {
        const now = Date.now() / 1000;
        this.range = {span, lo: now - span, hi: now, live: true};
        this.onRange(this.range);
        return this.load();
    }

    async load() {
        const ticket = ++this.loading;
        if (this.range.live) {
            this.range.hi = Date.now() / 1000;
            this.range.lo = this.range.hi - this.range.span;
        }
        const {lo, hi} = this.range;
        const fields = this.fields.filter((f) => this.charts[f]);
        this.width = bucketWidth(hi - lo, this.chartWidth());
        if (fields.length === 0) {
            return;
        }
        const began = performance.now();
        const asked = new URLSearchParams({device: this.device, fields: fields.join(","), start: lo.toFixed(3),
            stop: hi.toFixed(3), window: `${this.width}s`, funcs: "mean,min,max,count"});
        const answer = await getJSON(`/api/v1/twin/history/aggregate?${asked}`);
        if (ticket !== this.loading) {
            return; // a newer range was asked for meanwhile
        }
        const got = Object.fromEntries(answer.series.map((s) => [s.field, s.buckets]));
        let buckets = 0;
        for (const field of fields) {
            const s = emptySeries();
            for (const b of got[field] || []) {
                s.x.push(b.start);
                s.mean.push(b.mean);
                s.min.push(b.min);
                s.max.push(b.max);
                s.count.push(b.count);
            }
            buckets += s.x.length;
            this.charts[field].s = s;
            this.draw(field);
        }
        await new Promise((resolve) => requestAnimationFrame(() => resolve()));
        exposed.loads.push({ms: performance.now() - began, buckets, window_s: this.width, span_s: hi - lo});
        this.container.dataset.loaded = String(exposed.loads.length);
    }

    draw(field) {
        const {u, s, box} = this.charts[field];
        u.setData([s.x, s.mean, s.min, s.max]);
        u.setScale("x", {min: this.range.lo, max: this.range.hi});
        box.dataset.buckets = String(s.x.length);
    }

    // A frame from the live feed: merged into the bucket it falls in while the range follows now.
    add(values, ts) {
        if (!this.range.live) {
            return;
        }
        const w = this.width;
        const start = Math.floor(ts / w) * w;
        let merged = false;
        for (const [field, chart] of Object.entries(this.charts)) {
            let v = values[field];
            if (typeof v === "boolean") {
                v = Number(v);
            }
            if (typeof v !== "number" || !Number.isFinite(v)) {
                continue;
            }
            const s = chart.s;
            const n = s.x.length;
            let i = n - 1;
            if (n === 0 || start > s.x[n - 1]) {
                s.x.push(start);
                s.mean.push(v);
                s.min.push(v);
                s.max.push(v);
                s.count.push(1);
                exposed.frames += 1;
                merged = true;
                continue;
            }
            while (i >= 0 && s.x[i] > start) {
                i -= 1;
            }
            if (i < 0 || s.x[i] !== start) {
                continue; // older than what history gave and in no bucket of it: history is the record
            }
            const c = s.count[i];
            s.mean[i] = (s.mean[i] * c + v) / (c + 1);
            s.min[i] = Math.min(s.min[i], v);
            s.max[i] = Math.max(s.max[i], v);
            s.count[i] = c + 1;
            exposed.frames += 1;
            merged = true;
        }
        if (merged) {
            this.dirty = true;
            this.arrived.push(ts);
        }
        if (this.dirty && !this.scheduled) {
            this.scheduled = true; // drawn with the browser's next frame, however many arrive before it
            requestAnimationFrame(() => this.drawArrived());
        }
    }

    drawArrived() {
        this.scheduled = false;
        if (!this.dirty) {
            return;
        }
        for (const field of Object.keys(this.charts)) {
            this.draw(field);
        }
        this.dirty = false;
        const now = Date.now() / 1000;
        exposed.latency.push(...this.arrived.map((ts) => now - ts));
        exposed.latency.splice(0, Math.max(0, exposed.latency.length - 1000));
        this.arrived = [];
    }

    // Once a second: slide a live range to now, drop what fell out of it, and draw what arrived.
    tick() {
        if (!this.range.live) {
            return;
        }
        const now = Date.now() / 1000;
        this.range.hi = now;
        this.range.lo = now - this.range.span;
        for (const [field, chart] of Object.entries(this.charts)) {
            const s = chart.s;
            let cut = 0;
            while (cut < s.x.length && s.x[cut] + this.width <= this.range.lo) {
                cut += 1;
            }
            if (cut) {
                for (const key of Object.keys(s)) {
                    s[key].splice(0, cut);
                }
            }
            this.draw(field);
        }
    }

    resize() {
        for (const {u} of Object.values(this.charts)) {
            u.setSize({width: this.chartWidth(), height: HEIGHT});
        }
    }
}
