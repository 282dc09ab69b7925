// affectd dashboard: the live picture of one stream with its faces' boxes
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

(() => {
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

  // ---- preview -----------------------------------------------------------
  const img = $("preview");
  function setPreviewPlaceholder(title, sub) {
    $("placeholder").hidden = !title;
    setText($("ph-title"), title || "");
    setText($("ph-sub"), sub || "");
  }
  function stopPreview() {
    const pv = st.preview;
    pv.gen++;
    clearTimeout(pv.timer);
    if (pv.abort) pv.abort.abort();
    pv.abort = null;
    if (pv.pending) URL.revokeObjectURL(pv.pending.url);
    pv.pending = null;
    pv.seq = 0;
    img.removeAttribute("src");
    img.classList.add("none");
    if (pv.url) URL.revokeObjectURL(pv.url);
    pv.url = "";
    pv.state = "none";
  }
  function setPreview() {
    stopPreview();
    if (!st.selected || st.unauthorized) return;
    st.preview.state = "connecting";
    setPreviewPlaceholder("waiting for the picture…", "");
    readPreview(st.selected, st.preview.gen);
  }
  function retryPreview(gen, why) {
    const pv = st.preview;
    if (gen !== pv.gen) return;
    pv.state = "retrying";
    const delay = Math.min(10000, 1000 * 2 ** pv.retry++);
    setPreviewPlaceholder("no picture", `${why} — retrying in ${Math.round(delay / 1000)} s`);
    renderDetails();
    pv.timer = setTimeout(setPreview, delay);
  }

  // readPreview reads the multipart MJPEG: parts of "--boundary", headers,
  // a blank line and Content-Length bytes of JPEG.
  async function readPreview(id, gen) {
    const pv = st.preview;
    const ctrl = new AbortController();
    pv.abort = ctrl;
    let resp;
    try {
      resp = await fetch(`/v1/streams/${enc(id)}/preview?mjpeg=1`, { headers: authHeaders(), cache: "no-store", signal: ctrl.signal });
    } catch (e) {
      retryPreview(gen, "the daemon is unreachable");
      return;
    }
    if (gen !== pv.gen) return;
    if (!resp.ok) {
      const text = (await resp.text().catch(() => "")).trim();
      if (gen !== pv.gen) return;
      if (resp.status === 401) {
        needToken();
      } else if (resp.status === 404 && /previews are off/.test(text)) {
        pv.state = "off";
        setPreviewPlaceholder("preview off", "preview.enabled is false: boxes only");
        renderDetails();
      } else {
        retryPreview(gen, text || `HTTP ${resp.status}`);
      }
      return;
    }
    const reader = resp.body.getReader();
    let buf = new Uint8Array(0);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || gen !== pv.gen) break;
        const joined = new Uint8Array(buf.length + value.length);
        joined.set(buf);
        joined.set(value, buf.length);
        buf = joined;
        for (;;) {
          const end = headerEnd(buf);
          if (end < 0) break;
          const head = new TextDecoder().decode(buf.subarray(0, end));
          const len = parseInt((/content-length:\s*(\d+)/i.exec(head) || [])[1], 10);
          const seq = parseInt((/x-frame-seq:\s*(\d+)/i.exec(head) || [])[1], 10) || 0;
          if (!(len >= 0)) throw new Error("an MJPEG part without Content-Length");
          if (buf.length < end + 4 + len) break;
          const jpeg = buf.slice(end + 4, end + 4 + len);
          buf = buf.slice(end + 4 + len);
          picture(gen, jpeg, seq);
        }
      }
    } catch (e) {
      if (gen !== pv.gen) return;
    }
    retryPreview(gen, "the picture stream ended");
  }
  // headerEnd is the index of the first blank line ("\r\n\r\n") after a
  // part's headers, or -1 (a part's headers are short; the JPEG follows).
  function headerEnd(b) {
    for (let i = 0; i + 3 < b.length && i < 1024; i++) {
      if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) {
        // skip the "\r\n" that ends the previous part, before "--boundary"
        if (i === 0) continue;
        return i;
      }
    }
    return -1;
  }
  // picture decodes a JPEG and hands it to the render loop, which shows it
  // once the frame of the same seq has arrived (or after PICTURE_WAIT_MS).
  async function picture(gen, jpeg, seq) {
    const url = URL.createObjectURL(new Blob([jpeg], { type: "image/jpeg" }));
    const im = new Image();
    im.src = url;
    try {
      await im.decode();
    } catch (e) {
      URL.revokeObjectURL(url);
      return;
    }
    const pv = st.preview;
    if (gen !== pv.gen) {
      URL.revokeObjectURL(url);
      return;
    }
    if (pv.pending) URL.revokeObjectURL(pv.pending.url); // a newer one replaces it
    pv.pending = { url, seq, t: performance.now() };
    schedule();
  }
  function showPending(now) {
    const pv = st.preview;
    const p = pv.pending;
    if (!p || (p.seq > st.lastSeq && now - p.t < PICTURE_WAIT_MS)) return;
    pv.pending = null;
    const old = pv.url;
    pv.url = p.url;
    pv.seq = p.seq;
    img.src = p.url;
    if (old) URL.revokeObjectURL(old);
    if (pv.state !== "live") {
      pv.state = "live";
      pv.retry = 0;
      img.classList.remove("none");
      setPreviewPlaceholder("");
      renderDetails();
    }
  }

  // ---- overlay geometry --------------------------------------------------
  const stage = $("stage");
  const overlay = $("overlay");
  function setSourceSize(w, h) {
    st.srcW = w;
    st.srcH = h;
    stage.style.aspectRatio = `${w} / ${h}`;
    overlay.setAttribute("viewBox", `0 0 ${w} ${h}`);
    rescale();
  }
  function rescale() {
    st.scale = st.srcW ? stage.clientWidth / st.srcW || 1 : 1;
    overlay.style.fontSize = (12.5 / st.scale).toFixed(2) + "px"; // labels 12.5 px on screen
    st.overlayKey = "";
    schedule();
  }
  new ResizeObserver(rescale).observe(stage);

  // Head pose axes. The daemon's angles (track/landmarks.Pose): camera axes
  // x right, y down, z away from the camera; yaw + turns the nose to the
  // image's right, pitch + up, roll + tilts the head clockwise in the image.
  // The head's rotation is Q = Rz(roll)·Ry(−yaw)·Rx(−pitch) (right-handed
  // rotations about the camera's fixed axes), mapping the head frame
  // (x the subject's left, y down, z into the head) to the camera's. We draw
  // Q's image of X = (1,0,0) (red, the subject's left), Y = (0,−1,0) (green,
  // the top of the head) and Z = (0,0,−1) (blue, out of the face, where the
  // nose points), projected orthographically (x, y kept, depth dropped).
  function poseAxes(yawDeg, pitchDeg, rollDeg) {
    const r = Math.PI / 180;
    const b = -yawDeg * r, c = -pitchDeg * r, a = rollDeg * r;
    const ca = Math.cos(a), sa = Math.sin(a), cb = Math.cos(b), sb = Math.sin(b), cc = Math.cos(c), sc = Math.sin(c);
    // Q = Rz(a)·Ry(b)·Rx(c), rows 0 and 1 (image x and y).
    const q00 = ca * cb, q01 = ca * sb * sc - sa * cc, q02 = ca * sb * cc + sa * sc;
    const q10 = sa * cb, q11 = sa * sb * sc + ca * cc, q12 = sa * sb * cc - ca * sc;
    return [
      [q00, q10], // X
      [-q01, -q11], // Y (up)
      [-q02, -q12], // Z (facing)
    ];
  }

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
      else if (from === "landmarks") who = "landmark backend (dlib 68 points, computed every frame)";
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
    g.append(box, lm, pg, lbl);
    overlay.append(g);
    Object.assign(ui, { g, box, lbl, lm, pg, axes });
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
  renderDetails();
  if (st.selected) select(st.selected);
  else connect(); // the hello names the streams; the first is selected
  poll();
})();
