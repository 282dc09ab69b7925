// affectd dashboard (1 of 3: state, streams, websocket; then
// dashboard-preview.js and dashboard-faces.js, classic scripts sharing one
// global scope, loaded in that order): the live picture of one stream with its faces' boxes
// and head pose, and one card per face with its AUs, valence/arousal and
// expression. Plain ES2020, no dependencies, served by the daemon at /.
//
// Data: GET /v1/streams every second (the stream list), the websocket
// /v1/ws?streams=<selected> (hello, frame, status, dropped), and the
// preview /v1/streams/<id>/preview?mjpeg=1. A bearer token comes from
// ?token= (kept in sessionStorage) or from the form shown on a 401.
//
// The preview is read with fetch() rather than as an <img src> of the
// MJPEG: each part's X-Frame-Seq says which frame the picture is, so the
// overlay draws that frame's boxes (the picture comes at preview.fps, the
// frames at the stream's rate) and a picture is shown once its frame has
// arrived. The <img> shows each part as a blob: URL.
//
// Rendering: messages only update plain objects (the latest values of each
// face, the last frames' faces for the overlay); the DOM is updated on
// requestAnimationFrame, by changing attributes, styles and text of
// elements made once per face.
//
// Test hooks (a contract with daemon/dashboard_test.go, keep them stable):
// body[data-frames]; [data-stream][data-state][data-fps];
// [data-face-id] cards with [data-au][data-value][data-active] rows,
// [data-va-plane][data-valence][data-arousal][data-points],
// [data-expr][data-value] rows and [data-source]; the overlay's
// [data-box] and [data-pose]; the preview img[data-preview].
"use strict";


const SVGNS = "http://www.w3.org/2000/svg";
const TRAIL = 30; // valence/arousal points kept per face
const STALE_MS = 1000; // a face without frames this long is removed
const HISTORY = 75; // frames kept to match preview pictures (3 s at 25 fps)
const PICTURE_WAIT_MS = 400; // longest a picture waits for its frame
const POLL_MS = 1000;
const COLORS = ["#5cc8ff", "#ffb13d", "#c58cff", "#7ee08a", "#ff7eb0", "#f4e260", "#4fd1c5", "#ff8a65"];
const HEAD_NAMES = { au: "AU", va: "VA", expr: "expression" };

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

// ---- token -------------------------------------------------------------
const params = new URLSearchParams(location.search);
let token = "";
try { token = sessionStorage.getItem("affectd.token") || ""; } catch (e) { /* storage off */ }
if (params.get("token")) {
  token = params.get("token");
  try { sessionStorage.setItem("affectd.token", token); } catch (e) { /* storage off */ }
}
const tokenQuery = () => (token ? "token=" + enc(token) : "");
const authHeaders = () => (token ? { Authorization: "Bearer " + token } : {});

// ---- state -------------------------------------------------------------
const st = {
  selected: params.get("stream") || "",
  streams: new Map(), // id → latest /v1/streams entry (or hello's)
  items: new Map(), // id → stream list elements
  hello: null,
  heads: {}, // name → head info of hello.model
  faces: new Map(), // face id → face state
  frames: 0, // frame messages of the selected stream
  lastLatency: null,
  rate: { frames: 0, t: performance.now() },
  dropped: 0,
  ws: null,
  wsGen: 0,
  wsRetry: 0,
  wsTimer: 0,
  unauthorized: false,
  polling: false,
  raf: 0,
  srcW: 0, // the selected stream's source size (boxes are in its pixels)
  srcH: 0,
  scale: 1, // displayed pixels per source pixel
  history: new Map(), // seq → faces of the selected stream's last frames
  lastSeq: 0,
  preview: { state: "none", timer: 0, retry: 0, abort: null, gen: 0, pending: null, seq: 0, url: "" },
  overlayKey: "", // what the overlay shows: "<seq>@<scale>"
};

// ---- small DOM helpers -------------------------------------------------
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}
function setText(e, s) {
  if (e.textContent !== s) e.textContent = s;
}
function setAttr(e, k, v) {
  if (e.getAttribute(k) !== v) e.setAttribute(k, v);
}
const fmt = (v, d = 2) => (typeof v === "number" && isFinite(v) ? v.toFixed(d) : "–");
const signed = (v, d = 2) => (typeof v === "number" && isFinite(v) ? (v >= 0 ? "+" : "−") + Math.abs(v).toFixed(d) : "–");

// A head's range "a..b" as [a, b]; "logits" and unknown ones as null.
function parseRange(r) {
  const m = /^(-?[\d.]+)\.\.(-?[\d.]+)$/.exec(r || "");
  return m ? [parseFloat(m[1]), parseFloat(m[2])] : null;
}
// Bar fraction 0..1 of a value in its head's range.
function frac(v, range) {
  if (typeof v !== "number" || !isFinite(v)) return 0;
  const f = range ? (v - range[0]) / (range[1] - range[0]) : 1 / (1 + Math.exp(-v));
  return Math.max(0, Math.min(1, f));
}
function faceColor(id) {
  const n = parseInt(id.slice(id.lastIndexOf("/") + 1), 10);
  let h = isFinite(n) ? n : 0;
  if (!isFinite(n)) for (const c of id) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
}

// ---- header ------------------------------------------------------------
function setConn(state, text) {
  const p = $("conn");
  p.dataset.conn = state;
  setText(p, text || state);
}

function applyHello(h) {
  st.hello = h;
  st.heads = {};
  for (const hd of (h.model && h.model.heads) || []) {
    if (!st.heads[hd.name]) st.heads[hd.name] = hd;
  }
  setText($("server"), h.server || "–");
  const m = h.model || {};
  const extra = [m.backbone, m.precision, m.provider].filter(Boolean).join(" · ");
  setText($("model"), (m.name || "none") + (extra ? "  (" + extra + ")" : ""));
  $("model").title = $("model").textContent;
  $("demo").hidden = !m.demo;
  $("demo").title = h.notice || "";
  for (const s of h.streams || []) {
    if (!st.streams.has(s.id)) st.streams.set(s.id, Object.assign({ fps: 0, faces: 0, width: 0, height: 0 }, s));
    else st.streams.get(s.id).state = s.state;
  }
  clearFaces(); // cards follow the model's heads
  renderStreams();
  if (!st.selected && st.streams.size) select(st.streams.keys().next().value);
}

// ---- stream list -------------------------------------------------------
async function poll() {
  if (st.polling) return; // the last one is still waiting
  st.polling = true;
  try {
    await pollOnce();
  } finally {
    st.polling = false;
  }
}
async function pollOnce() {
  let resp;
  let body;
  try {
    resp = await fetch("/v1/streams", { headers: authHeaders(), cache: "no-store" });
    body = resp.ok ? await resp.json() : null;
  } catch (e) {
    if (!st.unauthorized && !(st.ws && st.ws.readyState === WebSocket.OPEN)) setConn("closed", "daemon unreachable");
    return;
  }
  if (resp.status === 401) {
    needToken();
    return;
  }
  if (!body) return;
  if (st.unauthorized) tokenAccepted();
  const seen = new Set();
  for (const s of body.streams || []) {
    seen.add(s.id);
    st.streams.set(s.id, s);
  }
  for (const id of [...st.streams.keys()]) if (!seen.has(id)) st.streams.delete(id);
  if (st.streams.size && (!st.selected || !st.streams.has(st.selected))) {
    select(st.streams.keys().next().value);
  }
  renderStreams();
  renderDetails();
}

function renderStreams() {
  const list = $("streamlist");
  for (const [id, it] of st.items) {
    if (!st.streams.has(id)) {
      it.li.remove();
      st.items.delete(id);
    }
  }
  for (const [id, s] of st.streams) {
    let it = st.items.get(id);
    if (!it) {
      const li = el("li");
      li.dataset.stream = id;
      li.tabIndex = 0;
      li.setAttribute("role", "button");
      const name = el("span", "sid", id);
      name.title = id;
      const badge = el("span", "badge");
      const stats = el("span", "sstats");
      li.append(name, badge, stats);
      li.addEventListener("click", () => select(id));
      li.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          select(id);
        }
      });
      it = { li, badge, stats };
      st.items.set(id, it);
      list.append(it.li);
    }
    const state = s.state || "unknown";
    setAttr(it.li, "data-state", state);
    setAttr(it.li, "data-fps", String(s.fps || 0));
    setAttr(it.badge, "data-state", state);
    setText(it.badge, state);
    setText(it.stats, `${fmt(s.fps || 0, 1)} fps · ${s.faces || 0} face${s.faces === 1 ? "" : "s"}` + (s.kind ? ` · ${s.kind}` : ""));
    it.li.classList.toggle("sel", id === st.selected);
    it.li.title = s.error ? s.error : s.url || id;
  }
  $("streams-empty").hidden = st.streams.size > 0;
}

function renderDetails() {
  const s = st.streams.get(st.selected);
  setText($("stream-title"), st.selected || "–");
  const facts = $("stream-facts");
  const rows = s
    ? [
        ["state", s.state || "–"],
        ["source", s.url || "–"],
        ["kind", s.kind || "–"],
        ["size", s.width ? `${s.width}×${s.height}` : "–"],
        ["fps", `${fmt(s.fps || 0, 1)} out · ${fmt(s.input_fps || 0, 1)} in`],
        ["frames", `${s.captured || 0} read · ${s.dropped || 0} dropped`],
        ["faces", String(s.faces || 0)],
        ["interval", s.interval_ms ? `${fmt(s.interval_ms, 1)} ms per face` : "–"],
        ["preview", st.preview.state],
      ]
    : [];
  if (facts.childElementCount !== rows.length * 2) {
    facts.textContent = "";
    for (let i = 0; i < rows.length; i++) facts.append(el("dt"), el("dd"));
  }
  rows.forEach(([k, v], i) => {
    setText(facts.children[2 * i], k);
    setText(facts.children[2 * i + 1], v);
  });
  const err = $("stream-error");
  err.hidden = !(s && s.error);
  setText(err, (s && s.error) || "");
  if (s && s.width && s.height && (s.width !== st.srcW || s.height !== st.srcH)) setSourceSize(s.width, s.height);
}

// ---- selection ---------------------------------------------------------
function select(id) {
  if (id === st.selected && st.ws) return;
  st.selected = id;
  const u = new URL(location.href);
  u.searchParams.delete("token"); // kept in sessionStorage, not in the address bar
  u.searchParams.set("stream", id);
  history.replaceState(null, "", u.pathname + "?" + u.searchParams.toString());
  clearFaces();
  st.history.clear();
  st.lastSeq = 0;
  st.overlayKey = "";
  st.frames = 0;
  st.rate = { frames: 0, t: performance.now() };
  st.lastLatency = null;
  st.srcW = st.srcH = 0;
  const s = st.streams.get(id);
  if (s && s.width && s.height) setSourceSize(s.width, s.height);
  connect();
  setPreview();
  renderStreams();
  renderDetails();
  schedule();
}

// ---- websocket ---------------------------------------------------------
function connect() {
  clearTimeout(st.wsTimer);
  const gen = ++st.wsGen;
  if (st.ws) {
    st.ws.onclose = st.ws.onmessage = st.ws.onerror = null;
    st.ws.close();
    st.ws = null;
  }
  if (st.unauthorized) return;
  const q = [];
  if (st.selected) q.push("streams=" + enc(st.selected));
  if (token) q.push(tokenQuery());
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/v1/ws${q.length ? "?" + q.join("&") : ""}`);
  st.ws = ws;
  setConn(st.wsRetry ? "reconnecting" : "connecting");
  ws.onopen = () => gen === st.wsGen && setConn("open", "live");
  ws.onmessage = (ev) => {
    if (gen !== st.wsGen) return;
    let m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    onMessage(m);
  };
  ws.onclose = () => {
    if (gen !== st.wsGen) return;
    st.ws = null;
    if (st.unauthorized) return;
    // Backoff: 0.5 s doubling to 10 s, ±25 % jitter; reset by a hello.
    const delay = Math.min(10000, 500 * 2 ** st.wsRetry) * (0.75 + Math.random() / 2);
    st.wsRetry = Math.min(st.wsRetry + 1, 6);
    setConn("reconnecting", `reconnecting in ${(delay / 1000).toFixed(1)} s`);
    st.wsTimer = setTimeout(connect, delay);
    poll(); // a 401 shows the token form
  };
}

function onMessage(m) {
  switch (m.type) {
    case "hello":
      st.wsRetry = 0;
      applyHello(m);
      break;
    case "frame":
      if (m.stream === st.selected) onFrame(m);
      break;
    case "status": {
      const s = st.streams.get(m.stream);
      if (s) {
        s.state = m.state;
        s.error = m.error || "";
        renderStreams();
        if (m.stream === st.selected) renderDetails();
      }
      break;
    }
    case "dropped":
      st.dropped = m.total || st.dropped + (m.count || 0);
      schedule();
      break;
  }
}

function onFrame(m) {
  st.frames++;
  st.lastLatency = m.latency_ms;
  st.lastSeq = m.seq;
  st.history.set(m.seq, m.faces || []);
  if (st.history.size > HISTORY) st.history.delete(st.history.keys().next().value);
  const now = performance.now();
  for (const fc of m.faces || []) {
    let f = st.faces.get(fc.id);
    if (!f) {
      f = { id: fc.id, color: faceColor(fc.id), trail: [], vaKey: "", ui: null, seq: 0 };
      st.faces.set(fc.id, f);
    }
    f.data = fc;
    f.seq = m.seq;
    f.seen = now;
    f.dirty = true;
    const va = fc.va;
    if (va && typeof va.valence === "number" && typeof va.arousal === "number") {
      const key = (fc.estimate_seq || 0) + ":" + va.valence + ":" + va.arousal;
      if (key !== f.vaKey) {
        f.vaKey = key;
        f.trail.push([va.valence, va.arousal]);
        if (f.trail.length > TRAIL) f.trail.shift();
      }
    }
  }
  schedule();
}

// ---- token form --------------------------------------------------------
function needToken() {
  if (!st.unauthorized) {
    st.unauthorized = true;
    clearTimeout(st.wsTimer);
    if (st.ws) {
      st.ws.onclose = null;
      st.ws.close();
      st.ws = null;
    }
    stopPreview();
    setPreviewPlaceholder("unauthorized", "enter the daemon's token above");
  }
  setConn("unauthorized", token ? "token refused" : "token needed");
  $("tokenform").hidden = false;
}
function tokenAccepted() {
  st.unauthorized = false;
  $("tokenform").hidden = true;
  st.wsRetry = 0;
  connect();
  setPreview();
}
$("tokenform").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("tokeninput").value.trim();
  try { sessionStorage.setItem("affectd.token", token); } catch (err) { /* storage off */ }
  $("tokeninput").value = "";
  poll();
});
