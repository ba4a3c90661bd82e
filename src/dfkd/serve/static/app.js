// dfkd upload page: send images to v1/detect, show verdicts, face boxes and Grad-CAM overlays. No dependencies.
"use strict";

const elements = {
  dropzone: document.getElementById("dropzone"),
  input: document.getElementById("file-input"),
  faces: document.getElementById("faces"),
  explain: document.getElementById("explain"),
  keyRow: document.getElementById("key-row"),
  key: document.getElementById("api-key"),
  status: document.getElementById("status"),
  results: document.getElementById("results"),
  modelInfo: document.getElementById("model-info"),
  limits: document.getElementById("limits"),
};
const MAX_SIDE = 480;

function setStatus(text, isError = false) {
  elements.status.textContent = text;
  elements.status.classList.toggle("error", isError);
}

function headers() {
  const key = elements.key.value.trim();
  return key ? { "X-API-Key": key } : {};
}

function percent(value) {
  return `${(100 * value).toFixed(1)}%`;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error) return `${body.error.message} (HTTP ${response.status})`;
  } catch (ignored) {
    // not JSON: fall through
  }
  return `HTTP ${response.status} ${response.statusText}`;
}

async function loadModelInfo() {
  try {
    const health = await (await fetch("healthz")).json();
    elements.keyRow.hidden = !health.api_key_required;
    const response = await fetch("v1/model", { headers: headers() });
    if (!response.ok) {
      elements.modelInfo.textContent = `Model ${health.model}` +
        (response.status === 401 ? " · enter the API key to use it" : ` · ${await errorMessage(response)}`);
      return;
    }
    const info = await response.json();
    const auc = info.metrics && (info.metrics.roc_auc ?? info.metrics.val_auc);
    elements.modelInfo.textContent = `Model ${info.architecture} (${info.backend || "?"}) · threshold ` +
      `${info.threshold.toFixed(3)}` + (typeof auc === "number" ? ` · AUC ${auc.toFixed(3)}` : "");
    elements.faces.value = info.faces === "none" ? "none" : "auto";
    if (!info.explain_supported) {
      elements.explain.disabled = true;
      elements.explain.parentElement.title = "Grad-CAM needs the PyTorch model file (this server runs ONNX)";
    }
    const megabytes = (info.limits.max_request_bytes / 1048576).toFixed(0);
    elements.limits.textContent = `JPEG, PNG, WebP, BMP, GIF or TIFF · up to ${info.limits.max_files} files, ` +
      `${megabytes} MiB per upload`;
  } catch (error) {
    elements.modelInfo.textContent = `Cannot reach the server (${error})`;
  }
}

function loadBitmap(file) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const image = new Image();
    image.onload = () => resolve({ image, url });
    image.onerror = () => { URL.revokeObjectURL(url); resolve(null); };
    image.src = url;
  });
}

function drawFaces(canvas, loaded, result) {
  const context = canvas.getContext("2d");
  const width = result.width || (loaded ? loaded.image.naturalWidth : MAX_SIDE);
  const height = result.height || (loaded ? loaded.image.naturalHeight : MAX_SIDE);
  const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
  canvas.width = Math.max(1, Math.round(width * scale));
  canvas.height = Math.max(1, Math.round(height * scale));
  if (loaded) {
    context.drawImage(loaded.image, 0, 0, canvas.width, canvas.height);
  } else {
    context.fillStyle = "#e4e7ec";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.fillStyle = "#667085";
    context.fillText("preview not available in this browser", 10, 20);
  }
  context.lineWidth = 3;
  context.font = "bold 14px system-ui, sans-serif";
  for (const face of result.faces || []) {
    const [x0, y0, x1, y1] = face.box.map((value) => value * scale);
    const fake = face.fake_prob !== null && face.fake_prob >= result.threshold;
    context.strokeStyle = fake ? "#c62828" : "#2e7d32";
    context.strokeRect(x0, y0, x1 - x0, y1 - y0);
    if (face.fake_prob !== null) {
      const text = percent(face.fake_prob);
      const textWidth = context.measureText(text).width + 8;
      context.fillStyle = context.strokeStyle;
      context.fillRect(x0, Math.max(0, y0 - 20), textWidth, 20);
      context.fillStyle = "#fff";
      context.fillText(text, x0 + 4, Math.max(15, y0 - 5));
    }
  }
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderCard(result, loaded) {
  const card = element("article", "card");
  card.dataset.status = result.status;
  card.appendChild(element("h2", "", result.input));
  const row = element("div", "row");
  const label = result.status === "error" ? "error" : result.label;
  const verdict = element("span", "verdict", label.toUpperCase());
  verdict.dataset.label = label;
  row.appendChild(verdict);
  if (result.fake_prob !== null) {
    row.appendChild(element("span", "probability", `fake probability ${percent(result.fake_prob)}`));
  }
  card.appendChild(row);
  if (result.fake_prob !== null) {
    const meter = element("div", "meter");
    const fill = element("span");
    fill.style.width = percent(result.fake_prob);
    fill.style.background = result.label === "fake" ? "var(--fake)" : "var(--real)";
    const mark = element("i");
    mark.style.left = percent(result.threshold);
    mark.title = `threshold ${percent(result.threshold)}`;
    meter.append(fill, mark);
    card.appendChild(meter);
  }
  if (result.status === "error") {
    card.appendChild(element("p", "note error", result.error));
  } else if (result.status === "no_face") {
    card.appendChild(element("p", "note", "No face found: the whole image was scored."));
  } else if ((result.faces || []).length > 1) {
    card.appendChild(element("p", "note", `${result.faces.length} faces; the image takes the most fake one.`));
  }
  if (result.status !== "error") {
    const canvas = element("canvas", "preview");
    drawFaces(canvas, loaded, result);
    card.appendChild(canvas);
  }
  if (result.explain_png) {
    const figure = element("figure");
    const overlay = element("img", "overlay");
    overlay.alt = `Grad-CAM overlay of ${result.input}`;
    overlay.src = `data:image/png;base64,${result.explain_png}`;
    figure.append(overlay, element("figcaption", "", "Grad-CAM: where the model looked for its decision"));
    card.appendChild(figure);
  } else if (result.explain_note) {
    card.appendChild(element("p", "note", result.explain_note));
  }
  return card;
}

async function detect(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  const query = new URLSearchParams({ faces: elements.faces.value, explain: String(elements.explain.checked) });
  setStatus(`Scoring ${files.length} image${files.length > 1 ? "s" : ""}…`);
  elements.results.setAttribute("aria-busy", "true");
  try {
    const [response, previews] = await Promise.all([
      fetch(`v1/detect?${query}`, { method: "POST", body: form, headers: headers() }),
      Promise.all(files.map(loadBitmap)),
    ]);
    if (!response.ok) {
      setStatus(await errorMessage(response), true);
      if (response.status === 401) elements.keyRow.hidden = false;
      return;
    }
    const body = await response.json();
    elements.results.replaceChildren(...body.results.map((result, index) => renderCard(result, previews[index])));
    const failed = body.results.filter((result) => result.status === "error").length;
    setStatus(`Scored ${body.results.length - failed} of ${body.results.length} in ${body.elapsed_ms.toFixed(0)} ms` +
      (failed ? ` · ${failed} could not be read` : ""));
    previews.forEach((preview) => preview && URL.revokeObjectURL(preview.url));
  } catch (error) {
    setStatus(`Request failed: ${error}`, true);
  } finally {
    elements.results.removeAttribute("aria-busy");
  }
}

elements.input.addEventListener("change", () => {
  detect(Array.from(elements.input.files));
  elements.input.value = "";
});
elements.dropzone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    elements.input.click();
  }
});
for (const name of ["dragenter", "dragover"]) {
  elements.dropzone.addEventListener(name, (event) => {
    event.preventDefault();
    elements.dropzone.classList.add("dragging");
  });
}
for (const name of ["dragleave", "drop"]) {
  elements.dropzone.addEventListener(name, () => elements.dropzone.classList.remove("dragging"));
}
elements.dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  detect(Array.from(event.dataTransfer.files));
});
// A file dropped beside the drop zone must not make the browser navigate away from the page.
for (const name of ["dragover", "drop"]) window.addEventListener(name, (event) => event.preventDefault());
elements.key.addEventListener("change", loadModelInfo);
loadModelInfo();
