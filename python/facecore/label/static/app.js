// The labeling page: one trial at a time, answers sent in candidate terms (a/b), never left/right.
"use strict";

const REGION_TEXT = {
  upper: "Look at the UPPER face (brows, eyes, eyelids): which render matches the photo better?",
  lower: "Look at the LOWER face (mouth, lips, jaw, cheeks): which render matches the photo better?",
  face: "Look at the WHOLE face: which render matches the photo better?",
};
const $ = (id) => document.getElementById(id);
const state = {
  token: null, me: null, task: null, shownAt: 0, busy: false,
  trialsSinceBreak: 0, breakStartedAt: Date.now(), urls: [],
};

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function newClientId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + state.token } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(path, init);
}

async function detail(resp) {
  try { return (await resp.json()).detail || resp.statusText; } catch (e) { return resp.statusText; }
}

function show(section) {
  for (const id of ["login", "trial", "done"]) $(id).hidden = id !== section;
}

async function login(token) {
  state.token = token;
  const resp = await api("GET", "/api/v1/me");
  if (!resp.ok) {
    sessionStorage.removeItem("facecore-label-token");
    show("login");
    $("login-error").textContent = resp.status === 401 ? "Unknown token." : await detail(resp);
    return;
  }
  sessionStorage.setItem("facecore-label-token", token);
  state.me = await resp.json();
  $("who").textContent = "Signed in as " + state.me.name;
  state.breakStartedAt = Date.now();
  await nextTask();
}

function renderProgress() {
  if (!state.me) return;
  const m = state.me;
  $("progress").textContent = `${m.answered} answered, ${m.remaining} of ${m.total} left`;
}

async function refreshMe() {
  const resp = await api("GET", "/api/v1/me");
  if (resp.ok) state.me = await resp.json();
  renderProgress();
}

async function blobUrl(path) {
  const resp = await api("GET", path);
  if (!resp.ok) throw new Error("picture " + path + ": " + resp.status);
  const url = URL.createObjectURL(await resp.blob());
  state.urls.push(url);
  return url;
}

function loaded(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve();
    img.onerror = () => reject(new Error("cannot show " + img.alt));
    img.src = url;
  });
}

async function showTask(task) {
  $("trial").dataset.state = "loading";
  state.task = task;
  const old = state.urls;
  state.urls = [];
  const [photo, left, right] = await Promise.all(
    [task.image_url, task.left_url, task.right_url].map(blobUrl));
  await Promise.all([loaded($("img-photo"), photo), loaded($("img-left"), left), loaded($("img-right"), right)]);
  old.forEach((u) => URL.revokeObjectURL(u));
  $("question").textContent = REGION_TEXT[task.region];
  $("trial").dataset.taskId = task.task_id;
  $("trial").dataset.shownLeft = task.shown_left;
  show("trial");
  state.shownAt = performance.now();
  $("trial").dataset.state = "ready";
  renderProgress();
}

async function nextTask() {
  const resp = await api("GET", "/api/v1/tasks/next");
  if (resp.status === 204) {
    state.task = null;
    await refreshMe();
    show("done");
    $("trial").dataset.state = "done";
    return;
  }
  if (!resp.ok) { setStatus(await detail(resp), true); return; }
  await showTask(await resp.json());
}

function choiceFor(side) {
  if (side === "tie" || side === "skip") return side;
  const left = state.task.shown_left;
  const right = left === "a" ? "b" : "a";
  return side === "left" ? left : right;
}

async function postWithRetry(body) {
  // Same client_id on every try: the server stores the answer once however often it arrives.
  for (let attempt = 0; ; attempt++) {
    try {
      const resp = await api("POST", "/api/v1/judgments", body);
      if (resp.status >= 500 && attempt < 5) throw new Error("server " + resp.status);
      return resp;
    } catch (e) {
      if (attempt >= 5) throw e;
      setStatus("Connection problem, retrying...");
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
    }
  }
}

async function answer(side) {
  if (state.busy || !state.task || $("trial").dataset.state !== "ready" || !$("break").hidden) return;
  state.busy = true;
  $("trial").dataset.state = "sending";
  try {
    const body = {
      task_id: state.task.task_id, region: state.task.region, choice: choiceFor(side),
      client_id: newClientId(), response_ms: Math.max(0, Math.round(performance.now() - state.shownAt)),
    };
    const resp = await postWithRetry(body);
    if (!resp.ok) { setStatus(await detail(resp), true); $("trial").dataset.state = "ready"; return; }
    setStatus("");
    state.trialsSinceBreak++;
    state.me.answered++;
    state.me.remaining = Math.max(0, state.me.remaining - 1);
    if (needBreak()) $("break").hidden = false;
    await nextTask();
  } catch (e) {
    setStatus(String(e), true);
    $("trial").dataset.state = "ready";
  } finally {
    state.busy = false;
  }
}

function needBreak() {
  const m = state.me;
  const minutes = (Date.now() - state.breakStartedAt) / 60000;
  return state.trialsSinceBreak >= m.break_every_trials || minutes >= m.break_every_minutes;
}

function endBreak() {
  $("break").hidden = true;
  state.trialsSinceBreak = 0;
  state.breakStartedAt = Date.now();
}

async function undo() {
  if (state.busy) return;
  state.busy = true;
  try {
    const resp = await api("POST", "/api/v1/judgments/undo");
    if (resp.status === 404) { setStatus("Nothing to undo."); return; }
    if (!resp.ok) { setStatus(await detail(resp), true); return; }
    const out = await resp.json();
    setStatus("Undid your last answer.");
    await refreshMe();
    if (out.task) await showTask(out.task); else await nextTask();
  } finally {
    state.busy = false;
  }
}

const KEYS = { "1": "left", ArrowLeft: "left", "2": "right", ArrowRight: "right", "3": "tie",
               ArrowDown: "tie", "4": "skip", s: "skip", S: "skip" };

document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (!$("break").hidden) {
    if (ev.key === "Enter") { ev.preventDefault(); endBreak(); }
    return;
  }
  if (ev.key === "u" || ev.key === "U" || ev.key === "Backspace") { ev.preventDefault(); undo(); return; }
  const side = KEYS[ev.key];
  if (side) { ev.preventDefault(); answer(side); }
});

for (const id of ["btn-left", "btn-right", "btn-tie", "btn-skip"]) {
  $(id).addEventListener("click", (ev) => answer(ev.currentTarget.dataset.side));
}
$("btn-undo").addEventListener("click", undo);
$("btn-undo-done").addEventListener("click", undo);
$("btn-continue").addEventListener("click", endBreak);
$("login-btn").addEventListener("click", () => login($("token-input").value.trim()));
$("token-input").addEventListener("keydown", (ev) => { if (ev.key === "Enter") login(ev.target.value.trim()); });

function tokenFromLink() {
  // A token in the link (#token=...) wins; it is then removed from the address bar.
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (!m) return false;
  history.replaceState(null, "", location.pathname);
  login(decodeURIComponent(m[1]));
  return true;
}

window.addEventListener("hashchange", tokenFromLink);

(function start() {
  if (tokenFromLink()) return;
  const saved = sessionStorage.getItem("facecore-label-token");
  if (saved) login(saved); else show("login");
})();
