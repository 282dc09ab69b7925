// affectd /publish: shares the browser's camera with a whip:// stream (WHIP),
// and shows the faces the daemon sees on it. Served with a strict CSP.
"use strict";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
if (params.get("stream")) $("stream").value = params.get("stream");
if (params.get("token")) $("token").value = params.get("token");
if (params.get("codec")) $("codec").value = params.get("codec").toUpperCase();

let pc = null, media = null, resource = null, ws = null;

function setState(s, err) {
  $("state").textContent = s;
  $("state").dataset.state = s;
  document.body.dataset.state = s;
  $("error").textContent = err || "";
}

function gathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);
  });
}

function preferCodec(transceiver, name) {
  if (!RTCRtpSender.getCapabilities || !transceiver.setCodecPreferences) return;
  const all = RTCRtpSender.getCapabilities("video").codecs;
  const want = all.filter((c) => c.mimeType.toUpperCase() === "VIDEO/" + name &&
    (name !== "H264" || /packetization-mode=1/.test(c.sdpFmtpLine || "")));
  const rest = all.filter((c) => /rtx|red|ulpfec/i.test(c.mimeType));
  if (want.length) transceiver.setCodecPreferences(want.concat(rest));
}

function watchFaces(stream, token) {
  const q = new URLSearchParams({ streams: stream });
  if (token) q.set("token", token);
  ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/v1/ws?" + q);
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "frame") {
      $("faces").textContent = m.faces.length ? m.faces.map((f) => f.id).join(", ") : "none";
      document.body.dataset.frames = String((+document.body.dataset.frames || 0) + 1);
    }
  };
}

async function start() {
  const stream = $("stream").value.trim(), token = $("token").value;
  if (!$("form").reportValidity()) return;
  $("start").disabled = true;
  try {
    setState("getting the camera");
    media = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: false });
    $("preview").srcObject = media;
    pc = new RTCPeerConnection({ iceServers: [] });
    pc.onconnectionstatechange = () => setState(pc.connectionState);
    const tr = pc.addTransceiver(media.getVideoTracks()[0], { direction: "sendonly", streams: [media] });
    preferCodec(tr, $("codec").value);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 2000);
    setState("offering");
    const headers = { "Content-Type": "application/sdp" };
    if (token) headers.Authorization = "Bearer " + token;
    const res = await fetch("/v1/whip/" + encodeURIComponent(stream), { method: "POST", headers, body: pc.localDescription.sdp });
    if (res.status !== 201) throw new Error("WHIP " + res.status + ": " + (await res.text()).trim());
    resource = new URL(res.headers.get("Location"), location.href).href;
    await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
    $("stop").disabled = false;
    watchFaces(stream, token);
  } catch (e) {
    setState("failed", e.message);
    await stop();
  }
}

async function stop() {
  if (ws) { ws.close(); ws = null; }
  if (resource) {
    const headers = {};
    const token = $("token").value;
    if (token) headers.Authorization = "Bearer " + token;
    fetch(resource, { method: "DELETE", headers }).catch(() => {});
    resource = null;
  }
  if (pc) { pc.close(); pc = null; }
  if (media) { media.getTracks().forEach((t) => t.stop()); media = null; }
  $("start").disabled = false;
  $("stop").disabled = true;
  if ($("state").dataset.state !== "failed") setState("stopped");
}

$("start").onclick = start;
$("stop").onclick = stop;
window.addEventListener("pagehide", stop);
if (params.get("autostart") === "1") start();
$("form").addEventListener("submit", (e) => e.preventDefault());
