// The audit trail for supervisors and admins: who opened which incident card, read which residents'
// data, logged in or failed to; newest first, narrowed to a person or an incident, and exported as CSV.

let ctx = null;

export function startAudit(context) {
  ctx = context;
  ctx.$("audit-form").addEventListener("submit", (event) => { event.preventDefault(); showAudit(); });
}

// The trail as narrowed by the form (the incident card fills in its own id first).
export async function showAudit() {
  const { $, el, api } = ctx;
  const query = new URLSearchParams({ order: "newest", limit: "500" });
  for (const [key, id] of [["who", "audit-who"], ["target", "audit-target"]]) {
    const value = $(id).value.trim();
    if (value) query.set(key, value);
  }
  const csv = new URLSearchParams(query);
  csv.set("format", "csv");
  $("audit-csv").href = `/audit?${csv}`;
  $("audit-error").textContent = "";
  try {
    const entries = await api(`/audit?${query}`);
    $("audit-trail").tBodies[0].replaceChildren(...entries.map((e) => {
      const row = document.createElement("tr");
      for (const cell of [e.seq, new Date(e.wall * 1000).toLocaleString(), e.who, e.via, e.action, e.target, e.detail]) {
        row.append(el("td", cell));
      }
      return row;
    }));
  } catch (error) {
    $("audit-error").textContent = ctx.explain(error);
  }
}
