// The console: reads /v1/model, /v1/versions and /v1/unknown every few seconds, asks /v1/predict,
// corrects through /v1/feedback, rolls back through /v1/model/rollback. Text from the server is
// always set as text, never as markup.
"use strict";

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("rebq-token");
let waitingForToken = null; // the action to run again once a token is given
let asked = null; // the last sample asked about: {text, file}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell);
    else td.textContent = cell === null || cell === undefined ? "" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

function say(id, text, isError) {
  const node = $(id);
  node.textContent = text;
  node.className = isError ? "error" : "";
}

// One call to the API; a 401 keeps `again` to run once a token is given.
async function call(path, options, again) {
  const headers = Object.assign({}, (options && options.headers) || {});
  if (token) headers.authorization = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options || {}, { headers }));
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (response.status === 401 && again) {
    waitingForToken = again;
    $("token-box").hidden = false;
    $("token").focus();
  }
  return { status: response.status, ok: response.ok, body };
}

function refusal(result) {
  const body = result.body || {};
  return body.detail || body.error || "the server answered " + result.status;
}

function percent(value) {
  return value === null || value === undefined ? "" : value.toFixed(1) + "%";
}

// --- what it knows, the updater, unknown answers ---------------------------------------------------

function showModel(model) {
  $("serving").textContent = model.version
    ? "serving version " + model.version
    : "nothing learned yet: send feedback or train a task";
  const tasks = $("tasks");
  tasks.replaceChildren();
  const classes = $("known-classes");
  classes.replaceChildren();
  for (const task of model.tasks) {
    const item = element("li");
    item.appendChild(element("strong", task.name));
    item.appendChild(document.createTextNode(": " + task.classes.join(", ")));
    tasks.appendChild(item);
    for (const name of task.classes) {
      const option = document.createElement("option");
      option.value = name;
      classes.appendChild(option);
    }
  }
  showUpdater(model.updater);
}

function showUpdater(updater) {
  const buffered = $("buffered").tBodies[0];
  buffered.replaceChildren();
  if (!updater) {
    $("updater-state").textContent = "no updater is running: feedback is refused until one is";
    $("last-training").textContent = "";
    return;
  }
  $("updater-state").textContent = updater.training
    ? "training task " + updater.training
    : "idle; " + updater.known_class_samples + " samples of classes already learned kept in the log";
  for (const [task, counts] of Object.entries(updater.buffered)) {
    const parts = Object.entries(counts).map(([name, count]) => name + " " + count);
    buffered.appendChild(row([task, parts.join(", ")]));
  }
  const last = updater.last_training;
  $("last-training").textContent = last ? "last training: task " + last.task + ", " + last.reason : "";
}

function showUnknown(answers) {
  const body = $("unknown-answers").tBodies[0];
  body.replaceChildren();
  for (const answer of answers) {
    const when = new Date(answer.time * 1000).toLocaleTimeString();
    body.appendChild(row([when, answer.text, answer.image ? "yes" : "no", answer.label, answer.model_version]));
  }
}

// --- versions: the table and the plot -------------------------------------------------------------

function mostForgotten(forgetting) {
  const entries = Object.entries(forgetting || {});
  if (!entries.length) return null;
  return entries.reduce((worst, entry) => (entry[1] > worst[1] ? entry : worst));
}

function showVersions(versions) {
  const body = $("versions").tBodies[0];
  body.replaceChildren();
  for (const version of versions.slice().reverse()) {
    const worst = mostForgotten(version.forgetting);
    let action = "";
    if (!version.served) {
      action = element("button", "serve this");
      action.className = "rollback";
      action.dataset.version = version.version;
      action.addEventListener("click", () => rollBack(version.version));
    }
    const tr = row([
      version.version,
      version.tasks.join(", "),
      version.classes,
      version.samples === null ? "" : version.samples + " samples",
      percent(version.accuracy),
      worst ? worst[0] + " -" + worst[1].toFixed(1) : "",
      version.refused ? "refused: " + version.refused : action,
    ]);
    if (version.served) tr.className = "served";
    body.appendChild(tr);
  }
  drawPlot(versions);
}

function drawPlot(versions) {
  const svg = $("plot");
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const left = 40, right = 620, top = 10, bottom = 190;
  const shape = (tag, attributes) => {
    const node = document.createElementNS(ns, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    svg.appendChild(node);
    return node;
  };
  shape("line", { x1: left, y1: bottom, x2: right, y2: bottom, class: "axis" });
  shape("line", { x1: left, y1: top, x2: left, y2: bottom, class: "axis" });
  for (const tick of [0, 50, 100]) {
    const y = bottom - ((bottom - top) * tick) / 100;
    shape("text", { x: 4, y: y + 4 }).textContent = tick + "%";
  }
  if (!versions.length) return;
  const x = (index) => left + ((right - left) * (index + 0.5)) / versions.length;
  const y = (value) => bottom - ((bottom - top) * Math.max(0, Math.min(100, value))) / 100;
  versions.forEach((version, index) => {
    shape("text", { x: x(index) - 6, y: bottom + 16 }).textContent = "v" + version.version;
  });
  for (const [name, value] of [
    ["accuracy", (version) => version.accuracy],
    ["forgetting", (version) => (mostForgotten(version.forgetting) || [null, null])[1]],
  ]) {
    const points = versions
      .map((version, index) => [index, value(version)])
      .filter((point) => point[1] !== null && point[1] !== undefined);
    if (!points.length) continue;
    shape("polyline", { class: name, points: points.map(([i, v]) => x(i) + "," + y(v)).join(" ") });
    for (const [i, v] of points) shape("circle", { class: name + "-point", cx: x(i), cy: y(v), r: 3 });
  }
  shape("text", { x: left + 10, y: top + 10 }).textContent = "— accuracy of the new task";
  shape("text", { x: left + 10, y: top + 24 }).textContent = "- - points most forgotten";
}

async function rollBack(version) {
  const result = await call(
    "/v1/model/rollback",
    { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ version }) },
    () => rollBack(version),
  );
  if (result.ok) say("versions-message", "version " + version + " published: every replica installs it");
  else if (result.status !== 401) say("versions-message", refusal(result), true);
  refresh();
}

// --- try it, and correct it ------------------------------------------------------------------------

async function ask(event) {
  if (event) event.preventDefault();
  const text = $("try-text").value;
  const file = $("try-image").files[0] || null;
  const form = new FormData();
  if (text.trim()) form.append("text", text);
  if (file) form.append("image", file);
  form.append("top_k", $("try-top-k").value || "3");
  const result = await call("/v1/predict", { method: "POST", body: form }, () => ask());
  if (!result.ok) {
    $("answer").hidden = true;
    if (result.status !== 401) say("try-message", refusal(result), true);
    return;
  }
  asked = { text: text.trim() ? text : null, file };
  showAnswer(result.body);
  say("try-message", "");
}

function showAnswer(answer) {
  $("answer").hidden = false;
  $("answer-label").textContent = answer.label;
  $("answer-score").textContent = (answer.score * 100).toFixed(0) + "%";
  const known = $("answer-known");
  known.textContent = answer.known ? "near a class learned" : "unknown: far from every class learned";
  known.className = answer.known ? "known" : "unknown";
  const missing = answer.missing.length ? "missing " + answer.missing.join(" and ") : "image and text";
  const rebuilt = answer.reconstructed ? ", reconstructed" : "";
  $("answer-details").textContent = missing + rebuilt + "; version " + answer.model_version;
  const list = $("answer-top-k");
  list.replaceChildren();
  for (const entry of answer.top_k) {
    list.appendChild(element("li", entry.label + " " + (entry.score * 100).toFixed(1) + "%"));
  }
}

function readAsBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function correct(event) {
  if (event) event.preventDefault();
  if (!asked) return;
  const label = $("correct-label").value.trim();
  if (!label) return;
  const sample = { text: asked.text, image: asked.file ? await readAsBase64(asked.file) : null, label };
  const result = await call(
    "/v1/feedback",
    { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ samples: [sample] }) },
    () => correct(),
  );
  if (result.ok) say("try-message", "sent as " + label + ": in the feedback log at " + result.body.offset);
  else if (result.status !== 401) say("try-message", refusal(result), true);
  refresh();
}

function useToken(event) {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("rebq-token", token);
  $("token-box").hidden = true;
  const again = waitingForToken;
  waitingForToken = null;
  if (again) again();
}

// --- refresh ---------------------------------------------------------------------------------------

async function refresh() {
  try {
    const [model, versions, unknown] = await Promise.all([
      call("/v1/model"),
      call("/v1/versions"),
      call("/v1/unknown"),
    ]);
    if (model.ok) showModel(model.body);
    if (versions.ok) showVersions(versions.body);
    if (unknown.ok) showUnknown(unknown.body);
  } catch (error) {
    $("serving").textContent = "the server does not answer";
  }
}

$("try-form").addEventListener("submit", ask);
$("correct-form").addEventListener("submit", correct);
$("token-form").addEventListener("submit", useToken);
refresh();
setInterval(refresh, REFRESH_MS);
