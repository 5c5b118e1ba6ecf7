// The civil-defence officer's screen: compose an alert (Exercise by default; Actual asks again), see every
// channel and language as it will go out, submit it for a second officer's approval, approve and send what
// another officer drafted, and watch delivery per channel live (the gateway's progress stream). The area is
// ticked zones and shapes drawn on the map (area.js); who it reaches, per channel, is counted as it changes.
import { area, markZones, renderShapes, showAreas, startArea, translateTools } from "./area.js";

let ctx = null;
let catalogue = { events: [], zones: [], channels: [] };
const streams = new Map();  // alert id -> EventSource
const progress = new Map();  // alert id -> latest Progress
let counting = null;  // the pending audience count (a pause of 300 ms after the last change)
let asked = 0;  // the latest count asked for: an older answer arriving late is dropped
let updating = null;  // the sent alert the composer is writing an Update for (null: a new alert)

export async function startWarnings(context) {
  ctx = context;
  const $ = ctx.$;
  catalogue = await ctx.api("/warnings/catalogue");
  $("w-event").replaceChildren(...catalogue.events.map((name) => option(name, name)));
  $("w-status").addEventListener("change", () => { $("actual-banner").hidden = $("w-status").value !== "Actual"; });
  $("compose").addEventListener("submit", compose);
  $("stop-update").addEventListener("click", () => startUpdate(null));
  $("import-form").addEventListener("submit", importRecipients);
  $("compose").addEventListener("change", (event) => {
    if (["zone", "channel"].includes(event.target.name)) audienceSoon();
  });
  renderChoices();
  const zones = await ctx.api("/zones");
  startArea(ctx, $("w-map"), { zones, tileUrl: ctx.state.me.tile_url, pmtilesUrl: ctx.state.me.pmtiles_url,
    zoneClicked: toggleZone, changed: () => { renderShapes($("w-shapes")); audienceSoon(); } });
  countAudience();
  await refreshAlerts();
  setInterval(refreshAlerts, 5000);
}

export function renderChoices() {
  if (!ctx) return;
  const { $, t, state } = ctx;
  const first = !document.querySelector("input[name=channel]");  // a change of language keeps what was ticked
  const [ticked, channelsOn] = [chosen("zone"), first ? ["sms", "email"] : chosen("channel")];
  const zones = catalogue.zones.map((z) => checkbox("zone", z.name, zoneTitle(z.name), ticked.includes(z.name)));
  $("w-zones").replaceChildren(ctx.el("legend", t(state.language, "zones")), ...zones);
  const channels = catalogue.channels.map((c) => checkbox("channel", c, c, channelsOn.includes(c)));
  $("w-channels").replaceChildren(ctx.el("legend", t(state.language, "channels")), ...channels);
  renderShapes($("w-shapes"));
  translateTools();
  if (!first) countAudience();
}

function zoneTitle(name) {
  const zone = catalogue.zones.find((z) => z.name === name);
  return zone ? zone.title[ctx.state.language] || name : name;
}

function toggleZone(name) {
  const input = document.querySelector(`input[name=zone][value="${CSS.escape(name)}"]`);
  if (!input) return;
  input.checked = !input.checked;
  audienceSoon();
}

function audienceSoon() {
  clearTimeout(counting);
  counting = setTimeout(countAudience, 300);
}

// Who the area reaches, per chosen channel, under the map: "sms: 1 234 · email: 56", the distinct total, the
// zones reached (the map marks them) and their sirens.
async function countAudience() {
  const { $, el, t, state } = ctx;
  const say = (key) => t(state.language, key);
  const body = { zones: chosen("zone"), ...area(), channels: chosen("channel") };
  const ask = ++asked;
  if (!body.zones.length && !body.polygons.length && !body.circles.length) {
    markZones([], []);
    $("w-audience").replaceChildren(el("span", say("no_area"), "hint"));
    return;
  }
  $("w-audience").classList.add("counting");
  try {
    const answer = await ctx.api("/warnings/audience", { method: "POST", body });
    if (ask !== asked) return;
    const number = (n) => n.toLocaleString(state.language === "en" ? "en" : "ru");
    const counts = Object.entries(answer.channels).map(([channel, n]) => `${channel}: ${number(n)}`).join(" · ");
    const reached = answer.zones.map(zoneTitle).join(", ") || say("none");
    const relays = answer.sirens || answer.boards ? ` · ${say("sirens")}: ${answer.sirens} · ${say("boards")}: ${answer.boards}` : "";
    $("w-audience").replaceChildren(el("span", counts || say("no_channel"), "counts"),
      el("span", `${say("total")}: ${number(answer.total)}`, "total"),
      el("span", `${say("zones_reached")}: ${reached}${relays}`, "reached"));
    markZones(body.zones, answer.zones);
  } catch (error) {
    if (ask === asked) $("w-audience").replaceChildren(el("span", explain(error), "error"));
  } finally {
    if (ask === asked) $("w-audience").classList.remove("counting");
  }
}

function explain(error) {
  return ctx.explain ? ctx.explain(error) : error.message;
}

function option(value, text) {
  const node = ctx.el("option", text);
  node.value = value;
  return node;
}

function checkbox(group, value, text, checked) {
  const label = ctx.el("label", null, "choice");
  const input = document.createElement("input");
  Object.assign(input, { type: "checkbox", name: group, value, checked });
  label.append(input, ctx.el("span", " " + text));
  return label;
}

function chosen(group) {
  return [...document.querySelectorAll(`input[name=${group}]:checked`)].map((input) => input.value);
}

async function compose(event) {
  event.preventDefault();
  const { $, t, state } = ctx;
  $("compose-error").textContent = "";
  const status = $("w-status").value;
  if (status === "Actual" && !window.confirm(t(state.language, "actual_confirm"))) return;
  try {
    const path = updating ? `/alerts/${encodeURIComponent(updating)}/update` : "/alerts";
    const draft = await ctx.api(path, { method: "POST", body: { event: $("w-event").value, status,
      zones: chosen("zone"), ...area(), channels: chosen("channel"), note: $("w-note").value } });
    startUpdate(null);
    $("w-note").value = "";
    await showPreview(draft.id);
    await refreshAlerts();
  } catch (error) {
    $("compose-error").textContent = explain(error);  // why the draft was refused, in the workflow's words
  }
}

// An Update of a sent alert: the composer takes its event, status, zones and channels; what the officer
// changes (and any shape drawn) goes out, after a second officer's approval, to everyone the first reached.
function startUpdate(alert) {
  const { $, t, state } = ctx;
  updating = alert ? alert.id : null;
  $("updating").hidden = !alert;
  if (!alert) return;
  $("updating-text").textContent = `${t(state.language, "updating")}: ${alert.event} · ${alert.id}`;
  $("w-event").value = alert.event;
  $("w-status").value = alert.cap.status;
  $("actual-banner").hidden = alert.cap.status !== "Actual";
  for (const input of document.querySelectorAll("input[name=zone]")) input.checked = alert.zones.includes(input.value);
  for (const input of document.querySelectorAll("input[name=channel]")) input.checked = alert.channels.includes(input.value);
  audienceSoon();
  $("compose").scrollIntoView();
}

async function showPreview(id) {
  const { $, el } = ctx;
  const [preview, record] = await Promise.all([ctx.api(`/alerts/${encodeURIComponent(id)}/preview`),
    ctx.api(`/alerts/${encodeURIComponent(id)}`)]);
  $("preview").replaceChildren(areasOf(record.alert), ...Object.entries(preview).map(([language, r]) => {
    const part = el("div", null, "rendering");
    const segments = r.sms_segments ? ` (${r.sms_segments.segments} SMS, ${r.sms_segments.encoding})` : "";
    part.append(el("h3", language), el("p", "SMS" + segments + ": " + r.sms), el("p", "E-mail: " + r.subject),
      el("p", "Telegram: " + r.telegram), el("p", "Voice: " + r.voice));
    return part;
  }));
}

// What the approver approves, exactly: the zones it reaches, each polygon point and circle as stored (the same
// numbers the CAP XML carries, linked beside them).
function areasOf(alert) {
  const { el, t, state } = ctx;
  const say = (key) => t(state.language, key);
  const part = el("div", null, "rendering areas");
  part.append(el("h3", say("areas")), el("p", `${say("zones")}: ${alert.zones.map(zoneTitle).join(", ")}`));
  const areas = alert.cap.infos[0]?.areas || [];
  showAreas(areas);
  for (const a of areas) {
    a.polygons.forEach((points, i) => part.append(el("p", `${say("polygon")} ${i + 1}: ${points.map(([lat, lon]) => `${lat}, ${lon}`).join(" · ")}`, "coords")));
    a.circles.forEach((c, i) => part.append(el("p", `${say("circle")} ${i + 1}: ${say("centre")} ${c.lat}, ${c.lon} · ${say("radius")} ${c.radius_km} km`, "coords")));
  }
  part.append(capLink(alert.id));
  return part;
}

function capLink(id) {
  const link = ctx.el("a", "CAP XML", "cap-xml");
  Object.assign(link, { href: `/cap/alerts/${encodeURIComponent(id)}.xml`, target: "_blank", rel: "noopener" });
  return link;
}

async function refreshAlerts() {
  const { $, el, t, state } = ctx;
  try {
    const alerts = await ctx.api("/alerts");
    $("alerts").tBodies[0].replaceChildren(...alerts.slice(0, 50).map((a) => {
      const row = document.createElement("tr");
      row.dataset.id = a.id;
      const kind = a.cap.msg_type === "Alert" ? "" : ` · ${t(state.language, "msg_" + a.cap.msg_type)}`;
      const stateCell = el("td", t(state.language, "st_" + a.state));
      stateCell.dataset.state = a.state;
      row.append(el("td", a.event + kind), el("td", a.cap.status), stateCell, el("td", a.created_by),
        el("td", progressText(a.id)));
      const actions = el("td");
      if (a.state === "draft" && a.created_by !== state.me.name) {
        actions.append(button(t(state.language, "approve_send"), () => decide(a.id, "approve", { send: true })));
      }
      if (a.state === "draft" || a.state === "approved") actions.append(button(t(state.language, "preview"), () => showPreview(a.id)));
      actions.append(capLink(a.id));
      if (["sending", "sent"].includes(a.state)) {
        actions.append(button(t(state.language, "update_alert"), () => startUpdate(a)));
        actions.append(button(t(state.language, "cancel_alert"), () => decide(a.id, "cancel", {})));
        watch(a.id);
      }
      row.append(actions);
      return row;
    }));
  } catch (error) {
    $("alerts-error").textContent = explain(error);
  }
}

function button(text, onClick) {
  const node = ctx.el("button", text);
  node.addEventListener("click", onClick);
  return node;
}

async function decide(id, action, body) {
  ctx.$("alerts-error").textContent = "";
  try {
    await ctx.api(`/alerts/${encodeURIComponent(id)}/${action}`, { method: "POST", body });
    await refreshAlerts();
  } catch (error) {
    ctx.$("alerts-error").textContent = explain(error);
  }
}

function watch(id) {
  if (streams.has(id)) return;
  const source = new EventSource(`/alerts/${encodeURIComponent(id)}/progress`);
  streams.set(id, source);
  source.addEventListener("progress", (message) => {
    progress.set(id, JSON.parse(message.data));
    const cell = document.querySelector(`#alerts tr[data-id="${CSS.escape(id)}"] td:nth-child(5)`);
    if (cell) cell.textContent = progressText(id);
  });
}

function progressText(id) {
  const p = progress.get(id);
  if (!p) return "";
  const counts = Object.entries(p.channels).map(([channel, c]) => `${channel}: ${c.delivered + c.sent}/${c.failed}`);
  const done = Object.values(p.channels).reduce((sum, c) => sum + c.delivered + c.sent + c.failed + c.withdrawn, 0);
  const percent = p.targeted ? Math.min(100, Math.round((100 * done) / p.targeted)) : 0;
  return `${percent} % · ${counts.join(" · ")}`;
}

// Recipients from a CSV file (ref, name, phone, email, telegram, language, zones, channels): what was taken,
// and each refused row with its line and reason, as the gateway found them.
async function importRecipients(event) {
  event.preventDefault();
  const { $, el, t, state } = ctx;
  const file = $("import-file").files[0];
  if (!file) return;
  $("import-result").textContent = "";
  try {
    const reply = await fetch("/recipients", { method: "POST", body: await file.arrayBuffer(), credentials: "same-origin",
      headers: { "Content-Type": "text/csv", "X-CSRF-Token": state.csrf } });
    const body = await reply.json();
    if (!reply.ok) throw Object.assign(new Error(body.error), { status: reply.status });
    $("import-result").textContent = `${t(state.language, "imported")}: ${body.imported} · ${t(state.language, "rejected")}: ${body.rejected}`;
    $("import-errors").tBodies[0].replaceChildren(...body.errors.map((e) => {
      const row = document.createElement("tr");
      row.append(el("td", e.row), el("td", e.ref), el("td", e.problem));
      return row;
    }));
  } catch (error) {
    $("import-result").textContent = explain(error);
  }
}
