// editor.js - the web editor of `deeplab serve`: plain JavaScript, no libraries.
//
// A photo becomes a session (POST /v1/sessions: the network runs once, the server keeps its
// logits). Every edit - the classes kept, objects picked, keep and erase strokes, the background -
// is a render of that session (POST /v1/sessions/ID/render) with the whole list of edits, at the
// size of the view (a preview) or, for a download, at the photo's full size. Undo and redo only
// change the list. Strokes are kept in the photo's pixels, so zoom and pan change nothing of them.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas"), view = $("view"), ctx = canvas.getContext("2d");

const state = {
  session: null,      // {id, width, height, classes: [{index, name, share}]}
  numClasses: 21,
  photo: null,        // the photo as an <img>, for "before" and the stroke overlay
  result: null,       // the last preview: a canvas of the photo with the matte's alpha
  scaled: null,       // the photo at the preview's size
  edits: { dropped: [], points: [], strokes: [] },
  undo: [], redo: [],
  tool: "pan",
  brush: 24,
  zoom: 1, panX: 0, panY: 0, // photo pixel (x, y) is drawn at (panX + x * scale, panY + y * scale)
  fitted: true,
  before: false,
  bg: "checker",
  drawing: null,      // the stroke being painted
  inflight: null, dirty: false, pending: [],
  apiKey: sessionStorage.getItem("deeplab-api-key") || "",
};

function setStatus(text, kind) {
  $("status").textContent = text;
  document.body.dataset.state = kind;
}

// ---------------------------------------------------------------- the server

async function api(path, options = {}) {
  for (;;) {
    const headers = Object.assign({}, options.headers || {});
    if (state.apiKey) headers["X-Api-Key"] = state.apiKey;
    const r = await fetch(path, Object.assign({}, options, { headers }));
    if (r.status === 403) {
      const key = await askKey();
      if (key === null) throw new Error("an API key is needed");
      state.apiKey = key;
      sessionStorage.setItem("deeplab-api-key", key);
      continue;
    }
    if (!r.ok) {
      let detail = r.statusText;
      try { const e = await r.json(); detail = (e.errors && e.errors[0].detail) || e.detail || detail; } catch (_) {}
      const err = new Error(`${r.status}: ${detail}`);
      err.status = r.status;
      throw err;
    }
    return r;
  }
}

function askKey() {
  return new Promise((resolve) => {
    const d = $("key-dialog");
    d.returnValue = "";
    d.onclose = () => resolve(d.returnValue === "ok" ? $("key").value : null);
    d.showModal();
  });
}

// The edits as the render endpoint takes them (the same fields as POST /v1.0/removebg).
function renderBody(extra) {
  const e = state.edits, body = Object.assign({}, extra);
  if (e.dropped.length) {
    const kept = [];
    for (let c = 1; c < state.numClasses; c++) if (!e.dropped.includes(c)) kept.push(c);
    body.classes = kept.length ? kept : [0];
  }
  if (e.points.length) body.keep_at = e.points.map((p) => [p[0], p[1]]);
  if (e.strokes.length) body.strokes = e.strokes.map((s) => ({ mode: s.mode, radius: s.radius, points: s.points }));
  return body;
}

async function openPhoto(file) {
  if (!file || !/^image\/(png|jpeg)$/.test(file.type)) {
    setStatus("Only PNG and JPEG photos", "error");
    return;
  }
  setStatus("Running the network…", "busy");
  try {
    const form = new FormData();
    form.append("image_file", file, file.name || "photo");
    const r = await api("/v1/sessions", { method: "POST", body: form });
    const s = await r.json();
    const classes = await (await api("/v1/classes")).json();
    state.numClasses = classes.classes.length;
    state.photo = await loadImage(URL.createObjectURL(file));
    state.session = s;
    state.fileName = (file.name || "photo").replace(/\.[^.]*$/, "");
    state.edits = { dropped: [], points: [], strokes: [] };
    state.undo = [];
    state.redo = [];
    state.result = null;
    state.scaled = null;
    showClasses();
    fit();
    ["dl-png", "dl-jpg", "dl-mask", "reset"].forEach((id) => ($(id).disabled = false));
    updateButtons();
    render();
  } catch (e) {
    setStatus(String(e.message || e), "error");
  }
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this image"));
    img.src = url;
  });
}

// Renders a preview as large as the view shows the photo (at most the photo's size); the
// newest edits win: a render asked for while one runs waits for it, then runs once.
async function render() {
  if (!state.session) return;
  if (state.inflight) { state.dirty = true; return; }
  const s = state.session, longer = Math.max(s.width, s.height);
  const shown = Math.ceil(longer * scale() * (window.devicePixelRatio || 1));
  const preview = Math.min(longer, Math.max(256, Math.min(2048, shown)));
  const sent = (state.pending || []).slice(); // strokes this render includes
  setStatus("Rendering…", "busy");
  const t0 = performance.now();
  // the preview is a matte (the alpha in a PNG's alpha channel): laid over the photo here, which
  // the browser has, with one composite operation; a quarter of the bytes of an RGBA picture
  state.inflight = api(`/v1/sessions/${s.id}/render`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(renderBody(Object.assign({ channels: "matte" }, preview < longer ? { preview } : {}))),
  }).then((r) => r.blob()).then((b) => loadImage(URL.createObjectURL(b))).then((matte) => {
    URL.revokeObjectURL(matte.src);
    const w = matte.naturalWidth, h = matte.naturalHeight;
    if (!state.scaled || state.scaled.width !== w || state.scaled.height !== h) {
      state.scaled = document.createElement("canvas"); // the photo at the preview's size, kept
      state.scaled.width = w;
      state.scaled.height = h;
      state.scaled.getContext("2d").drawImage(state.photo, 0, 0, w, h);
    }
    const cut = document.createElement("canvas");
    cut.width = w;
    cut.height = h;
    const c = cut.getContext("2d");
    c.drawImage(state.scaled, 0, 0);
    c.globalCompositeOperation = "destination-in";
    c.drawImage(matte, 0, 0);
    state.result = cut;
    state.pending = (state.pending || []).filter((st) => !sent.includes(st));
    const t1 = performance.now();
    draw();
    state.lastRenderMs = Math.round(performance.now() - t0); // the edit asked for -> the new view drawn
    state.lastDrawMs = Math.round(performance.now() - t1);
  }).catch((e) => {
    if (e.status === 410 || e.status === 404) setStatus("The session expired: open the photo again", "error");
    else setStatus(String(e.message || e), "error");
    state.failed = true;
  }).finally(() => {
    state.inflight = null;
    if (state.dirty) { state.dirty = false; render(); }
    else if (!state.failed) setStatus(`Ready (${state.lastRenderMs} ms)`, "ready");
    state.failed = false;
  });
}

async function download(kind) {
  if (!state.session) return;
  const extra = kind === "mask" ? { channels: "alpha", format: "png" } : { format: kind === "jpg" ? "jpg" : "png" };
  if (kind !== "mask" && state.bg !== "checker") extra.bg_color = state.bg;
  setStatus("Rendering at full size…", "busy");
  try {
    const r = await api(`/v1/sessions/${state.session.id}/render`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(renderBody(extra)),
    });
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = `${state.fileName}-${kind === "mask" ? "mask.png" : kind === "jpg" ? "cutout.jpg" : "cutout.png"}`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    setStatus("Downloaded", "ready");
  } catch (e) {
    setStatus(String(e.message || e), "error");
  }
}

// ---------------------------------------------------------------- edits, undo, redo

function edit(apply) {
  const before = JSON.stringify(state.edits);
  apply(state.edits);
  state.undo.push(before);
  state.redo = [];
  updateButtons();
  showClasses();
  render();
}

function undoRedo(from, to) {
  if (!from.length) return;
  to.push(JSON.stringify(state.edits));
  state.edits = JSON.parse(from.pop());
  updateButtons();
  showClasses();
  render();
}

function updateButtons() {
  $("undo").disabled = !state.undo.length;
  $("redo").disabled = !state.redo.length;
}

function showClasses() {
  const box = $("classes");
  box.textContent = "";
  if (!state.session) return;
  for (const c of state.session.classes) {
    if (c.index === 0 || c.share < 0.001) continue; // background, and specks (kept unless classes are dropped)
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.class = c.index;
    b.setAttribute("aria-pressed", String(!state.edits.dropped.includes(c.index)));
    b.textContent = `${c.name} ${(100 * c.share).toFixed(1)}%`;
    b.title = "Keep or drop this class";
    b.onclick = () => edit((e) => {
      const i = e.dropped.indexOf(c.index);
      if (i >= 0) e.dropped.splice(i, 1);
      else e.dropped.push(c.index);
    });
    box.appendChild(b);
  }
}

// ---------------------------------------------------------------- the view

function scale() {
  if (!state.session) return 1;
  const r = view.getBoundingClientRect();
  const fitScale = Math.min(r.width / state.session.width, r.height / state.session.height);
  return fitScale * state.zoom;
}

function fit() {
  const r = view.getBoundingClientRect(), s = state.session;
  state.zoom = 1;
  const k = scale();
  state.panX = (r.width - s.width * k) / 2;
  state.panY = (r.height - s.height * k) / 2;
  draw();
}

function zoomAt(factor, cx, cy) {
  const k0 = scale();
  state.zoom = Math.min(64, Math.max(0.1, state.zoom * factor));
  const k1 = scale();
  state.panX = cx - (cx - state.panX) * (k1 / k0);
  state.panY = cy - (cy - state.panY) * (k1 / k0);
  draw();
  clearTimeout(state.zoomTimer);
  state.zoomTimer = setTimeout(render, 250); // a sharper preview once the zoom settles
}

function draw() {
  const dpr = window.devicePixelRatio || 1, r = view.getBoundingClientRect();
  if (canvas.width !== Math.round(r.width * dpr) || canvas.height !== Math.round(r.height * dpr)) {
    canvas.width = Math.round(r.width * dpr);
    canvas.height = Math.round(r.height * dpr);
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, r.width, r.height);
  const s = state.session;
  if (!s) return;
  const k = scale(), w = s.width * k, h = s.height * k;
  if (state.bg === "checker") {
    if (!state.checker) { // a 24 x 24 tile of four squares, repeated
      const tile = document.createElement("canvas");
      tile.width = tile.height = 24;
      const t = tile.getContext("2d");
      t.fillStyle = "#fafafa";
      t.fillRect(0, 0, 24, 24);
      t.fillStyle = "#d4d4d8";
      t.fillRect(12, 0, 12, 12);
      t.fillRect(0, 12, 12, 12);
      state.checker = ctx.createPattern(tile, "repeat");
    }
    ctx.save();
    ctx.translate(state.panX, state.panY);
    ctx.fillStyle = state.checker;
    ctx.fillRect(0, 0, w, h);
    ctx.restore();
  } else {
    ctx.fillStyle = "#" + state.bg;
    ctx.fillRect(state.panX, state.panY, w, h);
  }
  ctx.imageSmoothingEnabled = k < 2;
  const img = state.before ? state.photo : state.result;
  if (img) ctx.drawImage(img, state.panX, state.panY, w, h);
  // strokes not yet in a render, and the one being painted
  const pending = (state.pending || []).concat(state.drawing ? [state.drawing] : []);
  for (const st of pending) {
    ctx.strokeStyle = ctx.fillStyle = st.mode === "keep" ? "rgba(22,163,74,.55)" : "rgba(220,38,38,.55)";
    ctx.lineWidth = 2 * st.radius * k;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    st.points.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, state.panX + p[0] * k, state.panY + p[1] * k));
    if (st.points.length === 1) ctx.lineTo(state.panX + st.points[0][0] * k + 0.01, state.panY + st.points[0][1] * k);
    ctx.stroke();
  }
  ctx.fillStyle = "#2563eb";
  for (const p of state.edits.points) {
    ctx.beginPath();
    ctx.arc(state.panX + (p[0] + 0.5) * k, state.panY + (p[1] + 0.5) * k, 5, 0, 2 * Math.PI);
    ctx.fill();
  }
}

// The photo pixel under a pointer event (continuous: pixel x covers [x, x + 1)).
function photoPoint(ev) {
  const r = view.getBoundingClientRect(), k = scale();
  return [(ev.clientX - r.left - state.panX) / k, (ev.clientY - r.top - state.panY) / k];
}

const round1 = (v) => Math.round(v * 10) / 10;

function setTool(tool) {
  state.tool = tool;
  document.querySelectorAll("[data-tool]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.tool === tool)));
  view.style.cursor = tool === "pan" ? "grab" : "crosshair";
}

function setBrush(v) {
  state.brush = Math.max(1, Math.min(400, Math.round(v)));
  $("brush").value = state.brush;
  $("brush-out").textContent = state.brush;
}

view.addEventListener("pointerdown", (ev) => {
  if (!state.session) return;
  view.focus();
  view.setPointerCapture(ev.pointerId);
  const tool = ev.button === 1 || state.space ? "pan" : state.tool;
  if (tool === "pan") {
    state.panning = { x: ev.clientX - state.panX, y: ev.clientY - state.panY };
  } else if (tool === "pick") {
    const p = photoPoint(ev), s = state.session;
    const x = Math.floor(p[0]), y = Math.floor(p[1]);
    if (x >= 0 && y >= 0 && x < s.width && y < s.height) edit((e) => e.points.push([x, y]));
  } else {
    const p = photoPoint(ev);
    state.drawing = { mode: tool, radius: state.brush, points: [[round1(p[0]), round1(p[1])]] };
    draw();
  }
});

view.addEventListener("pointermove", (ev) => {
  if (state.panning) {
    state.panX = ev.clientX - state.panning.x;
    state.panY = ev.clientY - state.panning.y;
    draw();
  } else if (state.drawing) {
    const p = photoPoint(ev), pts = state.drawing.points, last = pts[pts.length - 1];
    if (Math.hypot(p[0] - last[0], p[1] - last[1]) * scale() >= 2) { // a point every 2 screen pixels
      pts.push([round1(p[0]), round1(p[1])]);
      draw();
    }
  }
});

function endPointer() {
  if (state.panning) {
    state.panning = null;
    render();
  }
  if (state.drawing) {
    const st = state.drawing;
    state.drawing = null;
    state.pending = (state.pending || []).concat([st]);
    edit((e) => e.strokes.push(st));
  }
}
view.addEventListener("pointerup", endPointer);
view.addEventListener("pointercancel", endPointer);
view.addEventListener("wheel", (ev) => {
  if (!state.session) return;
  ev.preventDefault();
  const r = view.getBoundingClientRect();
  zoomAt(ev.deltaY < 0 ? 1.2 : 1 / 1.2, ev.clientX - r.left, ev.clientY - r.top);
}, { passive: false });

// ---------------------------------------------------------------- controls

document.querySelectorAll("[data-tool]").forEach((b) => (b.onclick = () => setTool(b.dataset.tool)));
$("brush").oninput = (ev) => setBrush(ev.target.value);
$("undo").onclick = () => undoRedo(state.undo, state.redo);
$("redo").onclick = () => undoRedo(state.redo, state.undo);
$("reset").onclick = () => edit((e) => { e.dropped = []; e.points = []; e.strokes = []; });
$("zoom-in").onclick = () => { const r = view.getBoundingClientRect(); zoomAt(1.5, r.width / 2, r.height / 2); };
$("zoom-out").onclick = () => { const r = view.getBoundingClientRect(); zoomAt(1 / 1.5, r.width / 2, r.height / 2); };
$("zoom-fit").onclick = () => { fit(); render(); };
$("before").onclick = () => {
  state.before = !state.before;
  $("before").setAttribute("aria-pressed", String(state.before));
  draw();
};
$("bg").onchange = (ev) => {
  const v = ev.target.value;
  $("bg-color").hidden = v !== "custom";
  state.bg = v === "custom" ? $("bg-color").value.slice(1) : v;
  draw();
};
$("bg-color").oninput = (ev) => { state.bg = ev.target.value.slice(1); draw(); };
$("dl-png").onclick = () => download("png");
$("dl-jpg").onclick = () => download("jpg");
$("dl-mask").onclick = () => download("mask");
$("file").onchange = (ev) => openPhoto(ev.target.files[0]);

view.addEventListener("dragover", (ev) => { ev.preventDefault(); view.classList.add("dragging"); });
view.addEventListener("dragleave", () => view.classList.remove("dragging"));
view.addEventListener("drop", (ev) => {
  ev.preventDefault();
  view.classList.remove("dragging");
  if (ev.dataTransfer.files.length) openPhoto(ev.dataTransfer.files[0]);
});
window.addEventListener("paste", (ev) => {
  const f = [...(ev.clipboardData || {}).files || []].find((x) => x.type.startsWith("image/"));
  if (f) openPhoto(f);
});

window.addEventListener("keydown", (ev) => {
  if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement) return;
  const k = ev.key, ctrl = ev.ctrlKey || ev.metaKey;
  if (ctrl && (k === "z" || k === "Z")) { ev.preventDefault(); ev.shiftKey ? undoRedo(state.redo, state.undo) : undoRedo(state.undo, state.redo); }
  else if (ctrl && k === "y") { ev.preventDefault(); undoRedo(state.redo, state.undo); }
  else if (ctrl) return;
  else if (k === "k" || k === "K") setTool("keep");
  else if (k === "e" || k === "E") setTool("erase");
  else if (k === "o" || k === "O") setTool("pick");
  else if (k === "h" || k === "H") setTool("pan");
  else if (k === "[") setBrush(state.brush / 1.25);
  else if (k === "]") setBrush(state.brush * 1.25);
  else if (k === "+" || k === "=") $("zoom-in").click();
  else if (k === "-") $("zoom-out").click();
  else if (k === "0") $("zoom-fit").click();
  else if (k === "b" || k === "B") $("before").click();
  else if (k === " " && !state.space) { state.space = true; ev.preventDefault(); }
});
window.addEventListener("keyup", (ev) => { if (ev.key === " ") state.space = false; });
window.addEventListener("resize", () => { if (state.session) { draw(); render(); } });

setTool("pan");
setStatus("Open a photo to start", "empty");
