// facecmp serve: the page. Plain JS over the JSON API; nothing is loaded from anywhere else.
"use strict";

const $ = (id) => document.getElementById(id);
const photos = { a: null, b: null, q: null }; // the File or Blob chosen for each slot
const enrolPhotos = []; // {blob, name, url}
let stream = null;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

// -- tabs -------------------------------------------------------------------------------
document.querySelectorAll("[data-tab]").forEach((button) => {
  button.addEventListener("click", () => {
    document.querySelectorAll("[data-tab]").forEach((b) => b.setAttribute("aria-selected", b === button));
    document.querySelectorAll("[role=tabpanel]").forEach((p) => { p.hidden = p.id !== "tab-" + button.dataset.tab; });
    if (button.dataset.tab === "enrol") refreshGallery();
  });
});

// -- calling the API ------------------------------------------------------------------------
async function call(method, url, body, headers) {
  let response;
  try {
    response = await fetch(url, { method, body, headers });
  } catch (err) {
    throw new Error("the server did not answer (" + err.message + ")");
  }
  const data = await response.json().catch(() => ({ error: "HTTP " + response.status }));
  if (!response.ok) throw Object.assign(new Error(data.error || "HTTP " + response.status), { data });
  return data;
}

function showError(target, err) {
  target.replaceChildren(el("p", "Error: " + err.message, "error"));
}

// -- photos on canvases -------------------------------------------------------------------
async function draw(slot, faces, labels) {
  const canvas = $("canvas-" + slot);
  const bitmap = await createImageBitmap(photos[slot]);
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const line = Math.max(2, Math.round(Math.max(bitmap.width, bitmap.height) / 150));
  (faces || []).forEach((face, i) => {
    if (!face.box) return;
    const [x1, y1, x2, y2] = face.box;
    ctx.strokeStyle = ctx.fillStyle = (labels && labels[i] && labels[i].color) || "#16a34a";
    ctx.lineWidth = line;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = labels && labels[i] && labels[i].text;
    if (text) {
      ctx.font = `${line * 7}px system-ui, sans-serif`;
      const w = ctx.measureText(text).width + line * 2;
      ctx.fillRect(x1 - line / 2, Math.max(0, y1 - line * 9), w, line * 9);
      ctx.fillStyle = "#fff";
      ctx.fillText(text, x1 + line / 2, Math.max(line * 7, y1 - line * 2));
    }
  });
  canvas.parentElement.classList.add("filled");
}

function choose(slot, file) {
  if (!file) return;
  photos[slot] = file;
  draw(slot).catch(() => showError(slot === "q" ? $("analyze-result") : $("compare-result"),
                                   new Error(file.name + " is not an image this browser shows")));
  $("compare-btn").disabled = !(photos.a && photos.b);
  $("analyze-btn").disabled = !photos.q;
  $("identify-btn").disabled = !photos.q || !window.facecmpGallery;
  $(slot === "q" ? "analyze-result" : "compare-result").replaceChildren();
}

["a", "b", "q"].forEach((slot) => {
  const drop = $("drop-" + slot);
  $("file-" + slot).addEventListener("change", (e) => choose(slot, e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    choose(slot, e.dataTransfer.files[0]);
  });
});

// -- compare --------------------------------------------------------------------------------
$("compare-btn").addEventListener("click", async () => {
  const out = $("compare-result");
  const form = new FormData();
  form.append("a", photos.a, photos.a.name || "a.jpg");
  form.append("b", photos.b, photos.b.name || "b.jpg");
  out.replaceChildren(el("p", "Comparing…", "muted"));
  try {
    const r = await call("POST", "/api/compare", form);
    const color = r.same ? "#16a34a" : "#dc2626";
    await Promise.all(["a", "b"].map((s, i) => draw(s, [r.faces[i]], [{ color }])));
    const verdict = el("p", r.same ? "Same person" : "Different people", "verdict " + r.verdict);
    verdict.id = "compare-verdict";
    verdict.dataset.verdict = r.verdict;
    const cmp = r.same ? "≤" : ">";
    const detail = el("p", `${r.metric} distance ${r.distance.toFixed(4)} ${cmp} threshold ${r.threshold.toFixed(4)}`);
    detail.id = "compare-distance";
    const notes = r.faces.map((f, i) => (f.mask !== undefined ? `${"AB"[i]}: mask ${(100 * f.mask).toFixed(0)}%` : null))
      .concat(r.masked_model ? ["measured by the masked-face model"] : [])
      .concat(r.faces.map((f) => f.note).filter(Boolean));
    out.replaceChildren(verdict, detail, el("p", notes.filter(Boolean).join(" · "), "muted"));
  } catch (err) {
    showError(out, err);
  }
});

// -- analyse and identify -------------------------------------------------------------------
function label(x) {
  return x ? `${x.label} ${(100 * x.probability).toFixed(0)}%` : "";
}

async function analyse(kind) {
  const out = $("analyze-result");
  const form = new FormData();
  form.append("image", photos.q, photos.q.name || "photo.jpg");
  out.replaceChildren(el("p", kind === "identify" ? "Identifying…" : "Analysing…", "muted"));
  try {
    const r = await call("POST", "/api/" + kind, form);
    const names = r.faces.map((f, i) => (kind === "identify" ? f.name : "#" + (i + 1)));
    await draw("q", r.faces, names.map((text) => ({ text, color: text === "unknown" ? "#dc2626" : "#16a34a" })));
    if (!r.faces.length) {
      out.replaceChildren(el("p", "No face found.", "verdict"));
      return;
    }
    const table = el("table");
    const head = kind === "identify" ? ["face", "name", "distance", "mask", "expression"] : ["face", "box", "mask", "expression"];
    table.append(...[head].map((cells) => { const tr = el("tr"); cells.forEach((c) => tr.append(el("th", c))); return tr; }));
    r.faces.forEach((f, i) => {
      const tr = el("tr");
      const cells = kind === "identify"
        ? [i + 1, f.name, f.distance === null ? "empty gallery" : f.distance.toFixed(4), label(f.mask), label(f.expression)]
        : [i + 1, f.box.map((v) => v.toFixed(0)).join(", "), label(f.mask), label(f.expression)];
      cells.forEach((c) => tr.append(el("td", String(c))));
      tr.className = "face-row";
      table.append(tr);
    });
    out.replaceChildren(table);
  } catch (err) {
    showError(out, err);
  }
}
$("analyze-btn").addEventListener("click", () => analyse("analyze"));
$("identify-btn").addEventListener("click", () => analyse("identify"));

// -- enrol: files and camera snapshots -------------------------------------------------------
function addEnrolPhoto(blob, name) {
  const url = URL.createObjectURL(blob);
  enrolPhotos.push({ blob, name, url });
  const figure = el("figure");
  const img = el("img");
  img.src = url;
  img.alt = name;
  const remove = el("button", "×", "remove");
  remove.title = "Leave this photo out";
  remove.addEventListener("click", () => {
    enrolPhotos.splice(enrolPhotos.findIndex((p) => p.url === url), 1);
    URL.revokeObjectURL(url);
    figure.remove();
    $("enrol-btn").disabled = !enrolPhotos.length;
  });
  figure.append(img, el("figcaption", name), remove);
  $("enrol-photos").append(figure);
  $("enrol-btn").disabled = false;
}

$("enrol-files").addEventListener("change", (e) => {
  Array.from(e.target.files).forEach((f) => addEnrolPhoto(f, f.name));
  e.target.value = "";
});

$("camera-start").addEventListener("click", async () => {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    $("camera").srcObject = stream;
    $("camera-snap").disabled = $("camera-stop").disabled = false;
  } catch (err) {
    showError($("enrol-result"), new Error("no camera (" + err.message + ")"));
  }
});

$("camera-stop").addEventListener("click", () => {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $("camera").srcObject = null;
  $("camera-snap").disabled = $("camera-stop").disabled = true;
});

$("camera-snap").addEventListener("click", () => {
  const video = $("camera");
  if (!video.videoWidth) return;
  const canvas = el("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => addEnrolPhoto(blob, `snapshot-${enrolPhotos.length + 1}.jpg`), "image/jpeg", 0.92);
});

function auth() {
  return { Authorization: "Bearer " + $("enrol-token").value.trim() };
}

$("enrol-btn").addEventListener("click", async () => {
  const out = $("enrol-result");
  const form = new FormData();
  form.append("name", $("enrol-name").value);
  enrolPhotos.forEach((p) => form.append("images", p.blob, p.name));
  out.replaceChildren(el("p", "Enrolling…", "muted"));
  try {
    const r = await call("POST", "/api/enroll", form, auth());
    const summary = el("p", `Enrolled ${r.added} photo${r.added === 1 ? "" : "s"} of ${r.name}.`, "verdict same");
    summary.id = "enrol-summary";
    const list = el("ul");
    r.photos.forEach((p) => list.append(el("li", `${p.file}: ${p.status}${p.note ? " (" + p.note + ")" : ""}`)));
    out.replaceChildren(summary, list);
    refreshGallery();
  } catch (err) {
    showError(out, err);
  }
});

// -- the gallery --------------------------------------------------------------------------
async function refreshGallery() {
  const list = $("gallery-list");
  if (!window.facecmpGallery) {
    list.replaceChildren(el("li", "This server has no gallery (start it with --gallery DB).", "muted"));
    return;
  }
  try {
    const r = await call("GET", "/api/gallery");
    list.replaceChildren(...r.people.map((p) => {
      const li = el("li", `${p.name} (${p.images} photo${p.images === 1 ? "" : "s"}) `);
      const remove = el("button", "Remove");
      remove.addEventListener("click", async () => {
        try {
          await call("DELETE", "/api/gallery/" + encodeURIComponent(p.name), undefined, auth());
          refreshGallery();
        } catch (err) {
          showError($("enrol-result"), err);
        }
      });
      li.append(remove);
      return li;
    }));
    if (!r.people.length) list.replaceChildren(el("li", "Nobody is enrolled yet.", "muted"));
  } catch (err) {
    list.replaceChildren(el("li", "Error: " + err.message, "error"));
  }
}
$("gallery-refresh").addEventListener("click", refreshGallery);

// -- what this server offers -------------------------------------------------------------------
call("GET", "/api/health").then((h) => {
  window.facecmpGallery = h.gallery;
  const parts = [h.gallery ? "gallery on" : "no gallery", h.enroll ? "enrolment on" : "enrolment off",
                 `uploads up to ${h.max_upload_mb} MB`];
  $("server-status").textContent = parts.join(" · ");
  $("identify-btn").disabled = !photos.q || !h.gallery;
}).catch((err) => { $("server-status").textContent = "server: " + err.message; });
