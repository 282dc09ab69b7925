// affectd dashboard (2 of 3): the live picture, read part by part from the
// MJPEG preview and matched to its frame, and the overlay's geometry.
"use strict";

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
// (observed from the start section of dashboard-faces.js, the last script:
// the observer's first call comes as soon as layout is done, and may come
// before a later deferred script has run.)

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
