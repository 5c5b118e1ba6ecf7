// The operator console: log in, the live incident queue, and the incident card.
// Everything a caller, a network or another person wrote is put on the page as text (textContent),
// never as markup; the server's Content-Security-Policy forbids inline script besides.
import { explain as explainIn, t, translate } from "./i18n.js";
import { showLocations } from "./map.js";
import { showAudit, startAudit } from "./audit.js";
import { startDrills } from "./drills.js";
import { copyButton, copyChosen, renderScene, startScene } from "./scene.js";
import { renderChoices, startWarnings } from "./warnings.js";

const state = { me: null, csrf: "", language: "ru", incidents: new Map(), selected: null, categories: [], runs: [],
  zones: [] };
const $ = (id) => document.getElementById(id);
const WAITING = new Set(["queued", "ringing"]);  // callers waiting for a dispatcher

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if ((options.method || "GET") !== "GET") headers["X-CSRF-Token"] = state.csrf;
  const reply = await fetch(path, { ...options, headers, credentials: "same-origin",
    body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  const body = reply.headers.get("content-type")?.includes("json") ? await reply.json() : null;
  if (reply.status === 401 && state.me) showLogin(t(state.language, "session_ended"));  // idle timeout, disabled
  if (!reply.ok) throw Object.assign(new Error(body?.error || reply.statusText), { status: reply.status });
  return body;
}

// A refusal in the person's language: what kind of refusal, then the gateway's own words (which name the
// field or the rule), translated too when they are among the known ones.
const explain = (error) => explainIn(state.language, error);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function setLanguage(language) {
  state.language = ["kk", "ru", "en"].includes(language) ? language : "ru";
  $("language").value = state.language;
  translate(document, state.language);
  renderChoices();
  renderQueue();
  if (state.selected) renderCard(state.incidents.get(state.selected)?.full);
}

// -- logging in -------------------------------------------------------------------------------

async function start() {
  $("language").addEventListener("change", (e) => setLanguage(e.target.value));
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("new-form").addEventListener("submit", newIncident);
  $("note-form").addEventListener("submit", addNote);
  $("reply-form").addEventListener("submit", reply);
  startScene({ $, el, t, state, act });
  startAudit({ $, el, api, explain });
  document.addEventListener("keydown", keys);
  setLanguage(navigator.language?.slice(0, 2));
  try {
    entered(await api("/me"));
  } catch (error) {
    showLogin();
  }
}

function showLogin(message = "") {
  $("login-view").hidden = false;
  for (const name of VIEWS) $(`${name}-view`).hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login-error").textContent = message;
}

async function login(event) {
  event.preventDefault();
  try {
    const me = await api("/login", { method: "POST", body: {
      name: $("login-name").value.trim(), password: $("login-password").value, position: $("login-position").value.trim() } });
    $("login-password").value = "";
    entered(me);
  } catch (error) {
    $("login-error").textContent = loginRefusal(error.message);
  }
}

function loginRefusal(message) {
  // The server's words are English; say it in the person's language, keeping the lock's minutes.
  if (message.startsWith("too many wrong passwords")) {
    const minutes = message.match(/(\d+) minutes/)?.[1] ?? "?";
    return `${t(state.language, "login_locked")} (${minutes} ${t(state.language, "minutes")})`;
  }
  if (message === "wrong name or password") return t(state.language, "login_wrong");
  if (message === "this account is disabled") return t(state.language, "login_disabled");
  return message;
}

async function logout() {
  try { await api("/logout", { method: "POST" }); } finally { location.reload(); }
}

const VIEWS = ["desk", "warnings", "drills", "audit"];

function show(view) {
  for (const name of VIEWS) $(`${name}-view`).hidden = view !== name;
  if (view === "audit") showAudit();
}

function entered(me) {
  state.me = me;
  state.csrf = me.csrf || "";
  setLanguage(me.language);
  $("who").textContent = `${me.name} (${me.roles.join(", ")})${me.position ? " · " + me.position : ""}`;
  $("login-view").hidden = true;
  $("logout").hidden = false;
  const desk = me.roles.some((role) => ["dispatcher", "supervisor", "admin"].includes(role));
  const warnings = me.roles.includes("civil-defence");
  const drills = me.roles.some((role) => ["drill", "admin"].includes(role));
  const auditor = me.roles.some((role) => ["supervisor", "admin"].includes(role));
  const views = [["desk", desk], ["warnings", warnings], ["drills", drills], ["audit", auditor]]
    .filter(([, allowed]) => allowed);
  for (const [view] of views) {
    $(`to-${view}`).hidden = views.length < 2;
    $(`to-${view}`).onclick = () => show(view);
  }
  if (warnings) startWarnings({ $, el, t, api, state, explain }).catch((error) => { $("compose-error").textContent = explain(error); });
  if (drills) startDrills({ $, el, t, api, state, explain }).catch((error) => { $("drill-error").textContent = explain(error); });
  show(views.length ? views[0][0] : "desk");
  if (!desk) return;
  loadCategories();
  api("/zones").then((zones) => { state.zones = zones; }).catch(() => {});
  loadIncidents();
  listen();
  if (me.roles.some((role) => role === "supervisor" || role === "admin")) {
    $("board").hidden = false;
    refreshBoard();
    setInterval(refreshBoard, 5000);
  }
  refreshPositions();
  setInterval(refreshPositions, 5000);
  refreshCallbacks();
  setInterval(refreshCallbacks, 5000);
  setInterval(() => { renderQueue(); renderEscalation(); }, 1000);  // waiting times and countdowns move
}

// -- the supervisors' wall board ---------------------------------------------------------------

async function refreshBoard() {
  try {
    const [board, units] = await Promise.all([api("/board"), api("/units").catch(() => [])]);
    const seconds = (s) => `${Math.floor(s / 60)}:${String(Math.round(s % 60)).padStart(2, "0")}`;
    const rows = [["b_sla", board.answered_within_sla_pct == null ? "—" : `${board.answered_within_sla_pct} %`],
      ["b_calls", board.calls], ["b_abandoned", board.abandoned], ["b_waiting", board.waiting],
      ["b_longest", seconds(board.longest_wait_s)], ["b_runs", board.scenario_runs], ["b_breaches", board.sla_breaches],
      ["b_positions", Object.entries(board.positions).map(([p, s]) => `${p}: ${t(state.language, "pos_" + s)}`).join(", ")]];
    const line = board.line_1402;  // the 1402 line, counted apart from the 102/112 figures above
    if (line && line.calls) {
      rows.push(["b_1402_calls", line.calls], ["b_1402_abandoned", line.abandoned], ["b_1402_waiting", line.waiting],
        ["b_1402_longest", seconds(line.longest_wait_s)]);
    }
    if (board.nodes && board.nodes.length > 1) rows.push(["b_nodes", board.nodes.map(describeNode).join("; ")]);
    $("board-figures").replaceChildren(...rows.flatMap(([key, value]) => [el("dt", t(state.language, key)), el("dd", value)]));
    $("units").tBodies[0].replaceChildren(...units.map((u) => {
      const row = document.createElement("tr");
      for (const cell of [u.name || u.id, u.status, u.incident || ""]) row.append(el("td", cell));
      return row;
    }));
  } catch (error) {
    $("board-figures").replaceChildren(el("dd", explain(error)));
  }
}

// A gateway node on the board: what it holds now, or how long since it was last heard of.
function describeNode(n) {
  const lang = state.language;
  if (!n.alive) return `${n.node}: ${t(lang, "node_lost")} ${Math.round(n.seen_s_ago)} ${t(lang, "seconds")}`;
  return `${n.node}: ${t(lang, "node_" + n.status)}, ${n.active_calls} ${t(lang, "node_calls")}, ` +
    `${n.scenario_runs} ${t(lang, "node_runs")}`;
}

// Every position and its state, this person's own marked: who is free to take the next call.
async function refreshPositions() {
  try {
    const positions = await api("/positions");
    $("positions").replaceChildren(el("span", t(state.language, "b_positions") + ": "), ...Object.entries(positions).map(([name, now]) =>
      el("span", `${name}: ${t(state.language, "pos_" + now)}`, name === state.me.position ? "position mine" : "position")));
  } catch (error) {
    $("positions").textContent = explain(error);
  }
}

// Callers who hung up before anyone answered, one row per number: "call back" rings this position, then them.
async function refreshCallbacks() {
  try {
    const entries = await api("/callbacks");
    const now = Date.now() / 1000;
    $("callbacks").tBodies[0].replaceChildren(...entries.map((e) => {
      const row = document.createElement("tr");
      const waited = Math.max(0, Math.round(now - e.first_wall));
      const last = e.last_outcome ? t(state.language, "cb_" + e.last_outcome) + ` (${e.attempts})` : "—";
      for (const cell of [`${Math.floor(waited / 60)}:${String(waited % 60).padStart(2, "0")}`, e.number,
        categoryTitle(e.category), e.count, last]) row.append(el("td", cell));
      const button = el("button", t(state.language, "call_back"));
      button.disabled = !state.me.position;
      button.addEventListener("click", () => callBack(e.number));
      const action = document.createElement("td");
      action.append(button);
      row.append(action);
      return row;
    }));
    $("callbacks-count").textContent = String(entries.length);
  } catch (error) {
    $("callbacks-error").textContent = explain(error);
  }
}

async function callBack(number) {
  $("callbacks-error").textContent = "";
  try {
    await api(`/callbacks/${encodeURIComponent(number)}/call`, { method: "POST", body: { position: state.me.position } });
  } catch (error) {
    $("callbacks-error").textContent = explain(error);
  }
  refreshCallbacks();
}

// -- the queue --------------------------------------------------------------------------------

async function loadIncidents() {
  for (const summary of await api("/incidents?limit=200")) state.incidents.set(summary.id, { summary });
  renderQueue();
}

function listen() {
  const events = new EventSource("/events");
  events.addEventListener("incident", (message) => {
    const summary = JSON.parse(message.data);
    const known = state.incidents.get(summary.id) || {};
    state.incidents.set(summary.id, { ...known, summary });
    queueSoon();
    // This position's phone answered the call: its card opens by itself.
    const mine = state.me.position && summary.position === state.me.position && summary.state === "answered";
    if (summary.id === state.selected || (mine && known.summary?.state !== "answered")) openCard(summary.id);
  });
  events.onerror = () => { if (events.readyState === EventSource.CLOSED) showLogin(); };
}

function ordered() {
  // Waiting callers first, the most urgent and then the longest waiting on top; everything else newest first.
  return [...state.incidents.values()].map((i) => i.summary).sort((a, b) =>
    (WAITING.has(b.state) - WAITING.has(a.state)) || (WAITING.has(a.state)
      ? (b.priority - a.priority) || (a.created_wall - b.created_wall) : b.created_wall - a.created_wall));
}

let queued = false;

function queueSoon() {
  // A busy centre sends many changes a second: draw the queue once per frame, not once per change.
  if (queued) return;
  queued = true;
  requestAnimationFrame(() => { queued = false; renderQueue(); });
}

function renderQueue() {
  const body = $("queue").tBodies[0];
  const now = Date.now() / 1000;
  const rows = ordered().slice(0, 200).map((s) => {
    const row = document.createElement("tr");
    row.dataset.id = s.id;
    if (s.id === state.selected) row.classList.add("selected");
    if (s.priority >= 8) row.classList.add("p-high");
    if (s.silent) row.classList.add("silent");
    const waited = Math.max(0, Math.round(now - s.created_wall));
    const number = (s.number || t(state.language, "withheld")) + (s.language ? ` · ${s.language}` : "")
      + (s.silent ? ` · ${t(state.language, "silent")}` : "");
    const ivr = s.ivr_choice ? ` · IVR: ${s.ivr_choice === s.category ? "✓" : t(state.language, "ivr_" + s.ivr_choice)}` : "";
    const service = s.source && s.source !== "call" ? `${s.service} · ${t(state.language, "src_" + s.source)}` : s.service;
    for (const cell of [`${Math.floor(waited / 60)}:${String(waited % 60).padStart(2, "0")}`, service, s.priority,
      number, categoryTitle(s.category) + ivr, s.location_source || "—", s.state + " / " + s.status]) {
      row.append(el("td", cell));
    }
    row.addEventListener("click", () => openCard(s.id));
    return row;
  });
  body.replaceChildren(...rows);
  $("queue-count").textContent = String(ordered().filter((s) => WAITING.has(s.state)).length);
}

function categoryTitle(name) {
  const found = state.categories.find((c) => c.name === name);
  return found ? (found.title[state.language] || name) : (name || t(state.language, "none"));
}

// Keyboard first: every frequent action of the desk has a key (shown in the hint under the queue).
const CARD_KEYS = {
  c: () => $("category").focus(),
  t: () => $("note-text").focus(),
  r: () => { if (!$("reply-form").hidden) $("reply-text").focus(); },
  s: () => copyChosen(),
  a: () => { const token = firstPending(); if (token) acknowledge(token); },
  1: () => setStatus("assigned"),
  2: () => setStatus("en_route"),
  3: () => setStatus("on_scene"),
};

function keys(event) {
  if (event.key === "Escape" && event.target.tagName === "INPUT") { event.target.blur(); return; }
  if ($("desk-view").hidden || ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName)) return;
  if (event.ctrlKey || event.altKey || event.metaKey) return;
  const ids = ordered().map((s) => s.id);
  const at = ids.indexOf(state.selected);
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    const next = ids[Math.min(ids.length - 1, Math.max(0, at + (event.key === "ArrowDown" ? 1 : -1)))];
    if (next) { state.selected = next; renderQueue(); }
  } else if (event.key === "Enter" && state.selected) {
    openCard(state.selected);
  } else if (event.key === "n") {
    $("new-incident").open = true;
    $("n-number").focus();
  } else if (event.key === "Escape") {
    $("card").hidden = true;
  } else if (CARD_KEYS[event.key] && !$("card").hidden) {
    CARD_KEYS[event.key]();
  } else {
    return;
  }
  event.preventDefault();
}

function firstPending() {
  for (const run of state.runs) {
    const target = run.phase !== "done" && run.targets.find((x) => !x.acked_wall && !x.failed);
    if (target) return target.token;
  }
  return null;
}

function setStatus(status) {
  const incident = state.incidents.get(state.selected)?.full;
  if (incident && incident.status !== "closed") act(`/incidents/${encodeURIComponent(incident.id)}/status`, { status });
}

// -- the incident card ------------------------------------------------------------------------

async function openCard(id) {
  state.selected = id;
  renderQueue();
  try {
    const full = await api(`/incidents/${encodeURIComponent(id)}`);
    state.incidents.set(id, { ...(state.incidents.get(id) || {}), full });
    renderCard(full);
    state.runs = await api(`/incidents/${encodeURIComponent(id)}/escalation`).catch(() => []);
    renderEscalation();
    renderProposals(full, await api(`/incidents/${encodeURIComponent(id)}/proposals?limit=3`).catch(() => null));
    renderRecordings(await api(`/incidents/${encodeURIComponent(id)}/recordings`).catch(() => null));
  } catch (error) {
    $("action-error").textContent = explain(error);
  }
}

function renderCard(incident) {
  if (!incident) return;
  $("card").hidden = false;
  $("card-id").textContent = incident.id;
  const source = incident.source && incident.source !== "call" ? ` · ${t(state.language, "src_" + incident.source)}` : "";
  $("card-status").textContent = `${incident.state} / ${incident.status}${source}`;
  const caller = $("card-caller");
  caller.replaceChildren(el("strong", incident.caller.number || t(state.language, "withheld")),
    el("span", incident.caller.display_name ? ` ${incident.caller.display_name}` : ""),
    ...(incident.caller.flags || []).map((flag) => el("span", flag, "flag")));
  renderLinks(incident);
  renderActions(incident);
  renderScene(incident);
  // Who reported by Telegram or SMS gets an answer from here; a caller is called back instead.
  $("reply-form").hidden = !/^(tg|sms):/.test(incident.reporter || "");
  $("card-audit").hidden = !state.me.roles.some((role) => role === "supervisor" || role === "admin");
  try {
    renderLocations(incident);
  } catch (error) {  // a map problem must never hide the rest of the card
    $("action-error").textContent = `map: ${error.message}`;
  }
  $("card-audit-link").onclick = (event) => {
    event.preventDefault();
    Object.assign($("audit-target"), { value: incident.id });
    Object.assign($("audit-who"), { value: "" });
    show("audit");
  };
  $("timeline").replaceChildren(...incident.timeline.map((e) => {
    const item = el("li");
    const details = Object.entries(e.data || {}).filter(([, v]) => v !== null && v !== "")
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
    item.append(el("span", new Date(e.wall * 1000).toLocaleTimeString()), el("span", " " + e.kind, "kind"),
      el("span", `${e.actor} — ${details}`));
    return item;
  }));
}

// Earlier incidents of the same number or near the same place (the gateway links them as they come).
function renderLinks(incident) {
  const links = (incident.linked_to || []).map((id, index) => {
    const button = el("button", `${id} (${t(state.language, "link_" + (incident.link_reasons[index] || "same_number"))})`, "link");
    button.addEventListener("click", () => openCard(id));
    return button;
  });
  $("card-links").replaceChildren(...(links.length ? [el("span", t(state.language, "linked") + ": "), ...links] : []));
}

function renderLocations(incident) {
  const body = $("locations").tBodies[0];
  // When each candidate came: the timeline's location events are in the order the candidates were kept.
  const came = incident.timeline.filter((e) => e.kind === "location_found" || e.kind === "location_added").map((e) => e.wall);
  const now = Date.now() / 1000;
  body.replaceChildren(...incident.locations.map((loc, index) => {
    const row = document.createElement("tr");
    if (index === incident.best_location) row.classList.add("best");
    const uncertainty = loc.radius_m ? `${Math.round(loc.radius_m)} m` : (loc.points?.length ? `${loc.points.length} pts` : "");
    const age = came[index] ? `${Math.round((now - came[index]) / 60)} min` : "";
    const first = el("td", index === incident.best_location ? t(state.language, "chosen") + " " : "");
    if (loc.lat != null || loc.address) first.append(copyButton(incident, index));
    row.append(first);
    for (const cell of [loc.source, loc.shape, uncertainty,
      loc.confidence != null ? `${loc.confidence} % ${loc.confidence_pdf || ""}` : "", loc.method || "", age, loc.address || ""]) {
      row.append(el("td", cell));
    }
    return row;
  }));
  $("location-why").textContent = whyChosen(incident);
  // DEC112's viewer: say so when the position shown is not the newest one received.
  const newest = incident.locations.length - 1;
  $("location-warning").textContent = incident.best_location != null && incident.best_location !== newest
    ? t(state.language, "not_latest") : "";
  showLocations($("map"), incident.locations, incident.best_location, { tileUrl: state.me.tile_url,
    pmtilesUrl: state.me.pmtiles_url, zones: state.zones },
    incident.scene);
}

// Why the gateway chose this candidate (protocols.location.rank): coordinates before an address alone, then
// the smallest uncertainty, then the more trusted source.
function whyChosen(incident) {
  const chosen = incident.locations[incident.best_location];
  if (!chosen) return "";
  const say = (key) => t(state.language, key);
  const others = incident.locations.filter((_, i) => i !== incident.best_location);
  if (!others.length) return `${say("chosen")}: ${say("why_only")}`;
  const located = others.filter((loc) => loc.lat != null && loc.lon != null);
  if (!located.length) return `${say("chosen")}: ${say("why_coords")}`;
  const radius = chosen.radius_m != null ? ` (${Math.round(chosen.radius_m)} m)` : "";
  const tie = located.some((loc) => loc.radius_m === chosen.radius_m);
  return `${say("chosen")}: ${say(tie ? "why_source" : "why_smallest")}${radius}`;
}

async function loadCategories() {
  try { state.categories = await api("/categories"); } catch (error) { state.categories = []; }
}

function renderActions(incident) {
  const select = $("category");
  select.replaceChildren(el("option", t(state.language, "none")), ...state.categories.map((c) => {
    const option = el("option", `${c.title[state.language] || c.name} (${c.priority})`);
    option.value = c.name;
    option.selected = c.name === incident.category;
    return option;
  }));
  select.onchange = () => act(`/incidents/${encodeURIComponent(incident.id)}/category`, { category: select.value });
  $("status-buttons").replaceChildren(...["assigned", "en_route", "on_scene", "closed"].map((status) => {
    const button = el("button", t(state.language, "status_" + status));
    button.disabled = incident.status === status || incident.status === "closed";
    button.addEventListener("click", () => act(`/incidents/${encodeURIComponent(incident.id)}/status`, { status }));
    return button;
  }));
}

// The incident's scenario runs: the current step highlighted, who was told how, the countdown to the
// next attempt, and an acknowledge button for each notification still waiting (GoAlert's page, roughly).
function renderEscalation() {
  const box = $("escalation");
  if (!box || $("card").hidden) return;
  const now = Date.now() / 1000;
  const live = state.runs.filter((run) => run.phase !== "done");
  if (!live.length) { box.replaceChildren(el("p", t(state.language, "no_runs"), "hint")); return; }
  box.replaceChildren(...live.map((run) => {
    const part = el("div", null, "run");
    const left = Math.max(0, Math.round(run.deadline_wall - now));
    part.append(el("strong", `${run.scenario} · ${t(state.language, "step")} ${run.pc + 1} · ` +
      `${t(state.language, "attempt")} ${run.attempt} · ${run.phase}`),
      el("span", run.deadline_wall ? ` · ${t(state.language, "next_in")} ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` : ""));
    const list = el("ul");
    for (const target of run.targets) {
      const item = el("li", `${target.person}${target.unit_name ? " (" + target.unit_name + ")" : ""} · ${target.channel || "—"} · `);
      if (target.acked_wall) item.append(el("span", `${t(state.language, "acked")}: ${target.acked_by} (${target.acked_via})`, "acked"));
      else if (target.failed) item.append(el("span", `${t(state.language, "failed")}: ${target.failed}`, "flag"));
      else {
        item.append(el("span", t(state.language, "pending"), "flag"));
        const button = el("button", t(state.language, "acknowledge"));
        button.addEventListener("click", () => acknowledge(target.token));
        item.append(button);
      }
      list.append(item);
    }
    part.append(list);
    return part;
  }));
}

async function acknowledge(token) {
  $("action-error").textContent = "";
  try {
    await api(`/acks/${encodeURIComponent(token)}`, { method: "POST" });
    await openCard(state.selected);
  } catch (error) {
    $("action-error").textContent = explain(error);
  }
}

function renderProposals(incident, offer) {
  const units = offer ? offer.units : [];
  $("proposals").replaceChildren(...(units.length ? units.map((u) => {
    const item = el("li", `${u.name} · ${(u.distance_m / 1000).toFixed(1)} km · ~${Math.round(u.eta_s / 60)} min${u.stale ? " (?)" : ""} `);
    const button = el("button", t(state.language, "assign"));
    button.addEventListener("click", () => act(`/incidents/${encodeURIComponent(incident.id)}/assign`, { unit: u.unit }, true));
    item.append(button);
    return item;
  }) : [el("li", t(state.language, offer ? "no_units" : "no_location"), "hint")]));
}

// The call's recordings: played in the page (the gateway decodes GSM to PCM for the browser; each listen is
// audited), downloaded as Asterisk wrote them, and any file missing or altered said so.
function renderRecordings(found) {
  const items = (found?.recordings || []).map(({ recording: r, state: fileState }) => {
    const item = el("li", `${new Date(r.start_wall * 1000).toLocaleTimeString()} · ${Math.round(r.duration_s)} s · `);
    if (fileState === "ok") {
      const audio = document.createElement("audio");
      Object.assign(audio, { controls: true, preload: "none", src: `/recordings/${encodeURIComponent(r.id)}?play=pcm` });
      const download = el("a", t(state.language, "download"));
      download.href = `/recordings/${encodeURIComponent(r.id)}`;
      item.append(audio, download);
    } else {
      item.append(el("span", `${t(state.language, "recording_problem")}: ${fileState}`, "flag"));
    }
    return item;
  });
  if (found?.hold) items.push(el("li", `${t(state.language, "legal_hold")}: ${found.hold.reason} (${found.hold.actor})`, "flag"));
  if (!items.length) items.push(el("li", t(state.language, "no_recordings"), "hint"));
  if (found && state.me.roles.some((role) => role === "supervisor" || role === "admin")) items.push(holdButton(found));
  $("recordings").replaceChildren(...items);
}

// Supervisors put an incident's recordings on legal hold (kept past the 90 days until released), with a reason.
function holdButton(found) {
  const path = `/incidents/${encodeURIComponent(found.incident_id)}/hold`;
  const button = el("button", t(state.language, found.hold ? "hold_release" : "hold_set"));
  button.addEventListener("click", async () => {
    $("action-error").textContent = "";
    try {
      if (found.hold) {
        await api(path, { method: "DELETE" });
      } else {
        const reason = window.prompt(t(state.language, "hold_reason"));
        if (!reason || !reason.trim()) return;
        await api(path, { method: "POST", body: { reason: reason.trim() } });
      }
      await openCard(found.incident_id);
    } catch (error) {
      $("action-error").textContent = explain(error);
    }
  });
  const item = el("li");
  item.append(button);
  return item;
}

async function reply(event) {
  event.preventDefault();
  const text = $("reply-text").value.trim();
  if (!text || !state.selected) return;
  await act(`/incidents/${encodeURIComponent(state.selected)}/reply`, { text }, true);
  if (!$("action-error").textContent) $("reply-text").value = "";
}

async function addNote(event) {
  event.preventDefault();
  const text = $("note-text").value.trim();
  if (!text || !state.selected) return;
  await act(`/incidents/${encodeURIComponent(state.selected)}/notes`, { text });
  $("note-text").value = "";
}

async function newIncident(event) {
  event.preventDefault();
  $("new-error").textContent = "";
  const body = { service: $("n-service").value, number: $("n-number").value.trim(), address: $("n-address").value.trim(),
    note: $("n-note").value };
  try {
    const made = await api("/incidents", { method: "POST", body });
    $("new-form").reset();
    $("new-incident").open = false;
    await openCard(made.id);
  } catch (error) {
    $("new-error").textContent = explain(error);
  }
}

async function act(path, body, reopen = false) {
  $("action-error").textContent = "";
  try {
    const changed = await api(path, { method: "POST", body });
    if (reopen) await openCard(state.selected); else renderCard(changed);
  } catch (error) {
    $("action-error").textContent = explain(error);
  }
}

start();
