// The drill operator's screen: pick a shipped drill file, run it against this gateway, watch it, read its
// report (figures and bar charts drawn as SVG here: no chart library, nothing from elsewhere).

let ctx = null;
let shown = "";
let shownRunning = false;  // the run on screen was still running: show it again until its report is there

export async function startDrills(context) {
  ctx = context;
  ctx.$("drill-form").addEventListener("submit", run);
  await refresh();
  setInterval(refresh, 3000);
}

async function refresh() {
  const { $, el, api } = ctx;
  try {
    const { files, runs } = await api("/drills");
    if ($("drill-file").options.length !== files.length) {
      $("drill-file").replaceChildren(...files.map((f) => { const o = el("option", f); o.value = f; return o; }));
    }
    $("drill-runs").tBodies[0].replaceChildren(...runs.map((r) => {
      const row = document.createElement("tr");
      row.dataset.id = r.id;
      row.append(el("td", r.id), el("td", r.file), el("td", r.state), el("td", r.by));
      row.addEventListener("click", () => show(r.id));
      return row;
    }));
    if (runs.length && (!shown || shownRunning)) await show(shown || runs[0].id);
  } catch (error) {
    $("drill-error").textContent = ctx.explain(error);
  }
}

async function run(event) {
  event.preventDefault();
  ctx.$("drill-error").textContent = "";
  try {
    const started = await ctx.api("/drills", { method: "POST", body: { file: ctx.$("drill-file").value } });
    await show(started.id);  // its log until the report is there
    await refresh();
  } catch (error) {
    ctx.$("drill-error").textContent = ctx.explain(error);
  }
}

async function show(id) {
  const { $, el, t, state } = ctx;
  shown = id;
  const { run, report, log } = await ctx.api(`/drills/${encodeURIComponent(id)}`);
  shownRunning = run.state === "running";
  const box = $("drill-report");
  if (!report) {
    box.replaceChildren(el("h3", `${run.file} · ${run.state}`), el("pre", log, "log"));
    return;
  }
  const say = (key) => t(state.language, key);
  const figures = [["calls_placed", report.calls_placed], ["answered_by_ivr", report.answered_by_ivr],
    ["answered_by_dispatcher", report.answered_by_dispatcher], ["incidents_created", report.incidents_created],
    ["incidents_with_location", report.incidents_with_location], ["calls_lost", report.calls_lost],
    ["calls_without_incident", report.calls_without_incident]];
  const list = el("dl", null, "figures");
  for (const [key, value] of figures) list.append(el("dt", say("r_" + key)), el("dd", value));
  const latencies = [["r_answer", report.answer_s], ["r_invite_to_stored", report.invite_to_stored_s],
    ["r_invite_to_ringing", report.invite_to_ringing_s]];
  box.replaceChildren(el("h3", `${run.file} · ${run.state}`), list,
    ...latencies.flatMap(([key, p]) => [el("h4", say(key)), p && p.count ? bars(p) : el("p", say("r_no_samples"), "hint")]),
    ...escalationSection(report.escalation, say), ...deliverySection(report.delivery, say),
    ...(report.notes || []).map((note) => el("p", note, "hint")));
}

function seconds(value) {
  return Math.abs(value) < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`;
}

function bars(percentiles) {
  // p50, p90, p99 and max as horizontal bars.
  const svg = svgEl("svg", { class: "bars" });
  const rows = ["p50", "p90", "p99", "max"].map((k) => [k, percentiles[k]]).filter(([, v]) => v != null);
  const top = Math.max(...rows.map(([, v]) => v), 0.001);
  svg.setAttribute("width", "420");
  svg.setAttribute("height", String(rows.length * 22 + 4));
  rows.forEach(([label, value], i) => {
    const y = i * 22 + 2;
    svg.append(svgEl("text", { x: 0, y: y + 14 }, label),
      svgEl("rect", { x: 40, y, width: Math.max(1, (value / top) * 300), height: 16 }),
      svgEl("text", { x: 46 + (value / top) * 300, y: y + 14 }, seconds(value)));
  });
  return svg;
}

const PALETTE = ["#14365c", "#c0392b", "#1e8449", "#b9770e", "#6c3483", "#117a65"];

function escalationSection(escalation, say) {
  // Per category: incident created -> first notification and -> first acknowledgement, median over max.
  const categories = (escalation?.categories || []).filter((c) => c.to_first_notification_s.count
    || c.to_first_ack_s.count);
  if (!categories.length) return [];
  const rows = categories.flatMap((c) => [[c.category, say("r_to_notification"), c.to_first_notification_s],
    [c.category, say("r_to_ack"), c.to_first_ack_s]]);
  const top = Math.max(0.001, ...rows.map(([, , s]) => s.max || 0));
  const svg = svgEl("svg", { class: "escalation", width: 640, height: rows.length * 24 + 34 });
  rows.forEach(([category, what, spread], i) => {
    const y = i * 24 + 2;
    svg.append(svgEl("text", { x: 0, y: y + 14, "font-size": 12 }, i % 2 ? "" : category),
      svgEl("text", { x: 150, y: y + 14, "font-size": 11, fill: "#555" }, what));
    if (!spread.count) {
      svg.append(svgEl("text", { x: 320, y: y + 14, "font-size": 11, fill: "#777" }, say("r_no_samples")));
      return;
    }
    svg.append(svgEl("rect", { x: 320, y, width: Math.max(1, (spread.max / top) * 220), height: 16, fill: "#9db4cf",
      class: "max" }),
    svgEl("rect", { x: 320, y: y + 4, width: Math.max(1, (spread.median / top) * 220), height: 8, fill: "#14365c",
      class: "median" }),
    svgEl("text", { x: 326 + (spread.max / top) * 220, y: y + 14, "font-size": 11 },
      `${seconds(spread.median)} / ${seconds(spread.max)}`));
  });
  const y = rows.length * 24 + 14;
  svg.append(svgEl("rect", { x: 320, y, width: 14, height: 8, fill: "#14365c" }),
    svgEl("text", { x: 338, y: y + 8, "font-size": 11 }, say("r_median")),
    svgEl("rect", { x: 420, y: y - 4, width: 14, height: 16, fill: "#9db4cf" }),
    svgEl("text", { x: 438, y: y + 8, "font-size": 11 }, say("r_max")));
  return [ctx.el("h4", say("r_escalation")), svg];
}

function deliverySection(delivery, say) {
  if (!delivery) return [];
  const { el } = ctx;
  const head = `${delivery.status} · ${delivery.event} · ${delivery.alert_id} · ${delivery.state} · `
    + `${delivery.drafted_by} → ${delivery.approved_by}`;
  const table = el("table", null, "delivery-times");
  const header = document.createElement("tr");
  header.append(...[say("r_channel"), say("r_done"), say("r_failed"), ...["50 %", "90 %", "100 %"].map(
    (p) => `${say("r_time_to")} ${p}`)].map((text) => el("th", text)));
  table.append(header, ...delivery.channels.map((c) => {
    const row = document.createElement("tr");
    row.append(...[c.channel, `${c.done}/${c.total}`, c.failed, ...[c.to_50_s, c.to_90_s, c.to_100_s].map(
      (v) => (v == null ? "–" : seconds(v)))].map((text) => el("td", text)));
    return row;
  }));
  return [el("h4", say("r_delivery")), el("p", head, "hint"), deliveryChart(delivery.channels, say), table];
}

function deliveryChart(channels, say) {
  // x: seconds since sending, y: % of the channel's jobs done (sent or delivered); one line per channel.
  const [left, top, width, height] = [44, 24, 420, 200];
  const end = Math.max(1, ...channels.flatMap((c) => c.curve.map(([at]) => at)));
  const x = (s) => left + (s / end) * width;
  const y = (pct) => top + height - (pct / 100) * height;
  const svg = svgEl("svg", { class: "delivery", width: 640, height: height + 60 });
  for (const pct of [0, 50, 100]) {
    svg.append(svgEl("line", { x1: left, x2: left + width, y1: y(pct), y2: y(pct), stroke: "#ccc" }),
      svgEl("text", { x: left - 6, y: y(pct) + 4, "text-anchor": "end", "font-size": 11 }, `${pct}`));
  }
  for (const s of [0, end / 2, end]) {
    svg.append(svgEl("text", { x: x(s), y: top + height + 16, "text-anchor": "middle", "font-size": 11 },
      s.toFixed(1)));
  }
  svg.append(svgEl("line", { x1: left, x2: left, y1: top, y2: top + height, stroke: "#333" }),
    svgEl("line", { x1: left, x2: left + width, y1: top + height, y2: top + height, stroke: "#333" }),
    svgEl("text", { x: left + width / 2, y: top + height + 32, "text-anchor": "middle", "font-size": 11 },
      say("r_seconds")),
    svgEl("text", { x: 0, y: top - 12, "font-size": 11 }, say("r_delivered_pct")));
  const legend = svgEl("g", { class: "legend" });
  channels.forEach((c, i) => {
    const colour = PALETTE[i % PALETTE.length];
    // A step line: a count holds until the next sample changes it.
    const points = c.curve.flatMap(([at, done], k) => {
      const pct = c.total ? (done / c.total) * 100 : 0;
      const previous = k ? c.curve[k - 1][1] : 0;
      const before = c.total ? (previous / c.total) * 100 : 0;
      return k ? [`${x(at)},${y(before)}`, `${x(at)},${y(pct)}`] : [`${x(at)},${y(pct)}`];
    });
    svg.append(svgEl("polyline", { points: points.join(" "), fill: "none", stroke: colour, "stroke-width": 2,
      class: "channel", "data-channel": c.channel }));
    const ly = top + 14 + i * 18;
    legend.append(svgEl("rect", { x: left + width + 16, y: ly - 9, width: 14, height: 4, fill: colour }),
      svgEl("text", { x: left + width + 36, y: ly - 4, "font-size": 12 },
        `${c.channel} ${Math.round(c.total ? (c.done / c.total) * 100 : 0)} %`));
  });
  svg.append(legend);
  return svg;
}

function svgEl(tag, attributes, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}
