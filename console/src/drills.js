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
  const figures = [["calls_placed", report.calls_placed], ["answered_by_ivr", report.answered_by_ivr],
    ["answered_by_dispatcher", report.answered_by_dispatcher], ["incidents_created", report.incidents_created],
    ["incidents_with_location", report.incidents_with_location], ["calls_lost", report.calls_lost],
    ["calls_without_incident", report.calls_without_incident]];
  const list = el("dl", null, "figures");
  for (const [key, value] of figures) list.append(el("dt", t(state.language, "r_" + key)), el("dd", value));
  box.replaceChildren(el("h3", `${run.file} · ${run.state}`), list,
    el("h4", t(state.language, "r_invite_to_stored")), bars(report.invite_to_stored_s),
    el("h4", t(state.language, "r_invite_to_ringing")), bars(report.invite_to_ringing_s),
    ...(report.notes || []).map((note) => el("p", note, "hint")));
}

function bars(percentiles) {
  // p50, p90, p99 and max as horizontal bars, in milliseconds.
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const rows = ["p50", "p90", "p99", "max"].map((k) => [k, percentiles[k]]).filter(([, v]) => v != null);
  const top = Math.max(...rows.map(([, v]) => v), 0.001);
  svg.setAttribute("width", "420");
  svg.setAttribute("height", String(rows.length * 22 + 4));
  svg.setAttribute("class", "bars");
  rows.forEach(([label, value], i) => {
    const y = i * 22 + 2;
    svg.append(svgEl("text", { x: 0, y: y + 14 }, label),
      svgEl("rect", { x: 40, y, width: Math.max(1, (value / top) * 300), height: 16 }),
      svgEl("text", { x: 46 + (value / top) * 300, y: y + 14 }, `${Math.round(value * 1000)} ms`));
  });
  return svg;
}

function svgEl(tag, attributes, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}
