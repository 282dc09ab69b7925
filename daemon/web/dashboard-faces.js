// affectd dashboard (3 of 3): one card per face, the overlay's boxes and
// head pose, the render loop, and the start.
"use strict";

// ---- faces -------------------------------------------------------------
function clearFaces() {
  for (const f of st.faces.values()) removeFace(f);
  st.faces.clear();
  $("nofaces").hidden = false;
}
function removeFace(f) {
  if (f.ui) {
    f.ui.card.remove();
    f.ui.g.remove();
  }
  st.faces.delete(f.id);
}

function sourceLine(src) {
  const model = (st.hello && st.hello.model) || {};
  const groups = new Map();
  for (const [head, from] of Object.entries(src || {})) {
    if (!groups.has(from)) groups.set(from, []);
    groups.get(from).push(HEAD_NAMES[head] || head);
  }
  const parts = [];
  for (const [from, heads] of groups) {
    let who = from;
    if (from === "model") who = `model “${model.name || "?"}”` + (model.demo ? " (demo, random weights)" : "");
    else if (from === "landmarks") who = "landmark backend (68 points, computed every frame)";
    parts.push([heads.join(", "), who]);
  }
  return parts;
}

function barRow(kind, label) {
  const row = el("div", "row");
  row.dataset[kind] = label;
  row.dataset.value = "0";
  const lbl = el("span", "lbl", label);
  lbl.title = label;
  const track = el("div", "track");
  const fill = el("div", "fill");
  track.append(fill);
  const val = el("span", "val", "–");
  row.append(lbl, track, val);
  return { row, fill, val, track };
}

function makeFace(f) {
  const H = st.heads;
  const card = el("article", "card");
  card.dataset.faceId = f.id;
  card.style.setProperty("--fc", f.color);
  const head = el("header", "card-head");
  const sw = el("span", "swatch");
  const fid = el("span", "fid", f.id);
  const meta = el("span", "meta");
  const pose = el("span", "pose");
  head.append(sw, fid, meta, pose);
  const source = el("div", "source");
  source.dataset.source = "";
  const body = el("div", "card-body");
  const ui = { card, meta, pose, source, body, au: new Map(), expr: new Map(), srcKey: null };

  const auSec = el("section", "au");
  if (H.au) {
    const rng = parseRange(H.au.range);
    auSec.append(el("h3", "", `Action units${H.au.range ? " · " + H.au.range : ""}`));
    for (const lb of H.au.labels) {
      const r = barRow("au", lb);
      r.row.dataset.active = "false";
      if (H.au.threshold != null) {
        const thr = el("div", "thr");
        thr.style.left = (frac(H.au.threshold, rng) * 100).toFixed(1) + "%";
        r.track.append(thr);
      }
      auSec.append(r.row);
      ui.au.set(lb, r);
    }
    const lg = el("div", "au-legend");
    const on = el("span");
    const i1 = el("i");
    i1.style.background = "var(--au-on)";
    on.append(i1, `active${H.au.threshold != null ? " (≥ " + H.au.threshold + ")" : ""}`);
    const off = el("span");
    const i2 = el("i");
    i2.style.background = "var(--au)";
    off.append(i2, "inactive");
    lg.append(on, off);
    auSec.append(lg);
  } else {
    auSec.append(el("h3", "", "Action units"), el("div", "waiting", "no AU head"));
  }
  body.append(auSec);

  if (H.va) {
    const vaSec = el("section", "va");
    vaSec.append(el("h3", "", "Valence / arousal"));
    const plane = svg("svg", { viewBox: "-1.08 -1.08 2.16 2.16", "data-va-plane": "", "data-valence": "", "data-arousal": "", "data-points": "0" });
    plane.append(
      svg("rect", { class: "grid", x: -1, y: -1, width: 2, height: 2 }),
      svg("circle", { class: "grid", cx: 0, cy: 0, r: 0.5 }),
      svg("line", { class: "axis0", x1: -1, y1: 0, x2: 1, y2: 0 }),
      svg("line", { class: "axis0", x1: 0, y1: -1, x2: 0, y2: 1 }),
    );
    const labels = [
      ["+V", 0.97, -0.05, "end"], ["−V", -0.97, -0.05, "start"],
      ["+A", 0.05, -0.88, "start"], ["−A", 0.05, 0.96, "start"],
    ];
    for (const [t, x, y, anchor] of labels) {
      const tx = svg("text", { x, y, "text-anchor": anchor });
      tx.textContent = t;
      plane.append(tx);
    }
    const trail = svg("polyline", { class: "trail", points: "", stroke: f.color, "stroke-opacity": "0.45" });
    plane.append(trail);
    const dots = [];
    for (let i = 0; i < TRAIL - 1; i++) {
      const d = svg("circle", { r: 0.03, fill: f.color, "fill-opacity": "0", cx: 0, cy: 0 });
      plane.append(d);
      dots.push(d);
    }
    const cur = svg("circle", { r: 0.075, fill: f.color, stroke: "#fff", "stroke-width": 0.025, cx: 0, cy: 0, visibility: "hidden" });
    plane.append(cur);
    const nums = el("div", "vanum");
    const vN = el("b", "", "–");
    const aN = el("b", "", "–");
    const vS = el("span");
    const aS = el("span");
    vS.append("V ", vN);
    aS.append("A ", aN);
    nums.append(vS, aS);
    vaSec.append(plane, nums);
    body.append(vaSec);
    Object.assign(ui, { plane, trail, dots, cur, vN, aN, vaKey: "" });
  } else {
    body.classList.add("no-va");
  }

  if (H.expr) {
    const exSec = el("section", "expr");
    exSec.append(el("h3", "", "Expression"));
    for (const lb of H.expr.labels) {
      const r = barRow("expr", lb);
      exSec.append(r.row);
      ui.expr.set(lb, r);
    }
    body.append(exSec);
  }
  card.append(head, source, body);
  insertSorted($("faces"), card, f.id, "faceId");

  // Overlay: box, label, landmarks, pose axes.
  const g = svg("g", {});
  const box = svg("rect", { class: "box", stroke: f.color, "data-box": f.id });
  const lbl = svg("text", { class: "lbl", fill: f.color });
  lbl.textContent = f.id;
  const lm = svg("path", { class: "lm", stroke: f.color, d: "" });
  const pg = svg("g", { visibility: "hidden" });
  const axes = ["#ff4b4b", "#3fdc5a", "#4c8dff"].map((c) => svg("line", { class: "axis", stroke: c }));
  pg.append(axes[2], axes[1], axes[0]); // X on top
  const gg = svg("g", { visibility: "hidden" }); // gaze arrows, one per eye
  const gaze = [0, 1].map(() => svg("line", { class: "gaze" }));
  gg.append(...gaze);
  g.append(box, lm, pg, gg, lbl);
  overlay.append(g);
  Object.assign(ui, { g, box, lbl, lm, pg, axes, gg, gaze });
  f.ui = ui;
  st.overlayKey = ""; // draw it now
}

// Keeps cards in face id order (numeric suffix).
function insertSorted(parent, node, id, key) {
  const n = (s) => parseInt(s.slice(s.lastIndexOf("/") + 1), 10) || 0;
  for (const c of parent.children) {
    if (c.dataset[key] && n(c.dataset[key]) > n(id)) {
      parent.insertBefore(node, c);
      return;
    }
  }
  parent.append(node);
}

function updateFace(f) {
  if (!f.ui) makeFace(f);
  const ui = f.ui;
  const d = f.data;
  const H = st.heads;
  f.dirty = false;

  // header line
  const lag = d.estimate_seq ? f.seq - d.estimate_seq : null;
  setText(ui.meta, `score ${fmt(d.score, 2)}` + (lag === null ? " · waiting for the model" : ` · estimate ${lag} frame${lag === 1 ? "" : "s"} old`));
  const p = d.pose;
  setText(ui.pose, p ? `yaw ${signed(p.yaw, 1)}°  pitch ${signed(p.pitch, 1)}°  roll ${signed(p.roll, 1)}°` : "");

  // sources
  const srcKey = d.source ? Object.entries(d.source).map(([k, v]) => k + "=" + v).join(",") : "";
  if (srcKey !== ui.srcKey) {
    ui.srcKey = srcKey;
    ui.source.dataset.source = srcKey;
    ui.source.textContent = "";
    const parts = sourceLine(d.source);
    if (!parts.length) ui.source.append("source: no estimates yet");
    parts.forEach(([heads, who], i) => {
      if (i) ui.source.append(" · ");
      const b = el("b", "", heads);
      ui.source.append(b, " from " + who);
    });
  }

  // AUs
  if (H.au) {
    const rng = parseRange(H.au.range);
    const active = new Set(d.au_active || []);
    const vals = d.au || {};
    const dec = rng && rng[1] > 1 ? 1 : 2;
    for (const [lb, r] of ui.au) {
      const v = vals[lb];
      const has = typeof v === "number";
      setAttr(r.row, "data-value", has ? String(v) : "");
      setAttr(r.row, "data-active", active.has(lb) ? "true" : "false");
      r.fill.style.width = (frac(v, rng) * 100).toFixed(1) + "%";
      setText(r.val, has ? fmt(v, dec) : "–");
    }
  }

  // valence / arousal
  if (ui.plane) {
    const va = d.va;
    if (f.vaKey !== ui.vaKey) {
      ui.vaKey = f.vaKey;
      const t = f.trail;
      const n = t.length;
      setAttr(ui.plane, "data-points", String(n));
      if (n) {
        const [v, a] = t[n - 1];
        setAttr(ui.plane, "data-valence", String(v));
        setAttr(ui.plane, "data-arousal", String(a));
        ui.cur.setAttribute("cx", clamp1(v));
        ui.cur.setAttribute("cy", -clamp1(a));
        ui.cur.setAttribute("visibility", "visible");
        ui.trail.setAttribute("points", t.map(([x, y]) => clamp1(x).toFixed(3) + "," + (-clamp1(y)).toFixed(3)).join(" "));
        // older points fade out
        for (let i = 0; i < ui.dots.length; i++) {
          const dot = ui.dots[i];
          const k = n - 2 - i; // the i-th point before the current one
          if (k < 0) {
            dot.setAttribute("fill-opacity", "0");
            continue;
          }
          dot.setAttribute("cx", clamp1(t[k][0]));
          dot.setAttribute("cy", -clamp1(t[k][1]));
          dot.setAttribute("fill-opacity", (0.7 * (1 - (i + 1) / TRAIL)).toFixed(2));
        }
      }
    }
    setText(ui.vN, va ? signed(va.valence) : "–");
    setText(ui.aN, va ? signed(va.arousal) : "–");
  }

  // expression
  if (H.expr) {
    const vals = d.expr || {};
    let top = null;
    let best = -Infinity;
    for (const lb of ui.expr.keys()) {
      if (typeof vals[lb] === "number" && vals[lb] > best) {
        best = vals[lb];
        top = lb;
      }
    }
    const rng = parseRange(H.expr.range);
    for (const [lb, r] of ui.expr) {
      const v = vals[lb];
      const has = typeof v === "number";
      setAttr(r.row, "data-value", has ? String(v) : "");
      r.row.classList.toggle("top", lb === top);
      r.fill.style.width = (frac(v, rng) * 100).toFixed(1) + "%";
      setText(r.val, has ? fmt(v, 2) : "–");
    }
  }

}

// The faces of the frame that the picture shows: the newest frame not
// after the picture's seq; the latest frame without a picture.
function overlayFrame() {
  const pv = st.preview;
  if (pv.state === "live" && pv.seq) {
    let best = null;
    let bestSeq = -1;
    for (const [seq, faces] of st.history) {
      if (seq <= pv.seq && seq > bestSeq) {
        best = faces;
        bestSeq = seq;
      }
    }
    if (best) return [bestSeq, best];
  }
  return [st.lastSeq, st.history.get(st.lastSeq) || []];
}

function renderOverlay() {
  const [seq, faces] = overlayFrame();
  const key = seq + "@" + st.scale;
  if (key === st.overlayKey) return;
  st.overlayKey = key;
  const byId = new Map();
  for (const fc of faces) byId.set(fc.id, fc);
  for (const f of st.faces.values()) {
    if (!f.ui) continue;
    const fc = byId.get(f.id);
    if (fc) drawFace(f.ui, f.id, fc);
    setAttr(f.ui.g, "visibility", fc ? "visible" : "hidden");
  }
}

// drawFace draws a face's box, label, landmarks and pose axes, in source
// pixels.
function drawFace(ui, id, d) {
  const p = d.pose;
  const [x, y, w, h] = d.box;
  ui.box.setAttribute("x", x);
  ui.box.setAttribute("y", y);
  ui.box.setAttribute("width", Math.max(0, w));
  ui.box.setAttribute("height", Math.max(0, h));
  const s = st.scale || 1;
  const above = y - 5 / s;
  ui.lbl.setAttribute("x", x);
  ui.lbl.setAttribute("y", above > 14 / s ? above : y + h + 15 / s);
  const name = d.identity ? id + " · " + d.identity : id; // an enrolled person's name
  if (ui.lbl.textContent !== name) ui.lbl.textContent = name;
  const lmk = d.landmarks;
  if (lmk && lmk.length) {
    let path = "";
    for (const q of lmk) path += `M${q[0]} ${q[1]}h0.01`;
    ui.lm.setAttribute("d", path);
  } else if (ui.lm.getAttribute("d")) {
    ui.lm.setAttribute("d", "");
  }
  if (p && isFinite(p.yaw) && isFinite(p.pitch) && isFinite(p.roll)) {
    const o = lmk && lmk[30] ? lmk[30] : [x + w / 2, y + h / 2]; // nose tip, else the box centre
    const len = 0.5 * w;
    const ax = poseAxes(p.yaw, p.pitch, p.roll);
    ax.forEach(([dx, dy], i) => {
      const line = ui.axes[i];
      line.setAttribute("x1", o[0]);
      line.setAttribute("y1", o[1]);
      line.setAttribute("x2", o[0] + len * dx);
      line.setAttribute("y2", o[1] + len * dy);
    });
    ui.pg.setAttribute("visibility", "visible");
    setAttr(ui.pg, "data-pose", id);
  } else if (ui.pg.hasAttribute("data-pose")) {
    ui.pg.setAttribute("visibility", "hidden");
    ui.pg.removeAttribute("data-pose");
  }
  // Gaze (mesh468 with the iris model): an arrow from each iris centre
  // along the gaze vector's x, y.
  const gz = d.gaze;
  if (gz && gz.at0 && gz.at1) {
    [[gz.at0, gz.eye0], [gz.at1, gz.eye1]].forEach(([[cx, cy], v], i) => {
      const line = ui.gaze[i];
      line.setAttribute("x1", cx);
      line.setAttribute("y1", cy);
      line.setAttribute("x2", cx + 0.8 * w * v[0]);
      line.setAttribute("y2", cy + 0.8 * w * v[1]);
    });
    ui.gg.setAttribute("visibility", "visible");
    setAttr(ui.gg, "data-gaze", id);
  } else if (ui.gg.hasAttribute("data-gaze")) {
    ui.gg.setAttribute("visibility", "hidden");
    ui.gg.removeAttribute("data-gaze");
  }
}
const clamp1 = (v) => Math.max(-1, Math.min(1, v));

// ---- render loop -------------------------------------------------------
function schedule() {
  if (!st.raf) st.raf = requestAnimationFrame(render);
}
function render() {
  st.raf = 0;
  const now = performance.now();
  document.body.dataset.frames = String(st.frames);
  showPending(now);
  for (const f of [...st.faces.values()]) {
    if (now - f.seen > STALE_MS) removeFace(f);
    else if (f.dirty) updateFace(f);
  }
  renderOverlay();
  $("nofaces").hidden = st.faces.size > 0;
  setText($("latency"), st.lastLatency == null ? "–" : `${fmt(st.lastLatency, 0)} ms`);
  setText($("dropped"), String(st.dropped));
  $("dropped").dataset.dropped = String(st.dropped);
}

// Once a second: the frame rate and the stream list.
function tick() {
  const now = performance.now();
  const dt = (now - st.rate.t) / 1000;
  if (dt > 0) setText($("rate"), ((st.frames - st.rate.frames) / dt).toFixed(1));
  st.rate = { frames: st.frames, t: now };
  poll();
  schedule();
}

// ---- start -------------------------------------------------------------
setInterval(tick, POLL_MS);
setInterval(schedule, 250); // removes stale faces when no frames come
new ResizeObserver(rescale).observe(stage);
renderDetails();
if (st.selected) select(st.selected);
else connect(); // the hello names the streams; the first is selected
poll();
