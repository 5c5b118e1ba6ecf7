// The incident's own location (its scene), beside the caller's: a dispatcher copies the caller's chosen
// location with one action (key S) or any candidate with its row's button, or corrects it by clicking
// on the map and/or typing the address. The caller's candidates are never changed (CAD practice).
import { pickPoint, stopPicking } from "./map.js";

let ctx = null;
let point = null;  // [lat, lon] clicked on the map, as Leaflet measured it

export function startScene(context) {
  ctx = context;
  const { $ } = ctx;
  $("scene-copy").addEventListener("click", copyChosen);
  $("scene-pick").addEventListener("click", () => {
    pickPoint((latlon) => { point = latlon; $("scene-point").textContent = `${latlon[0]}, ${latlon[1]}`; });
  });
  $("scene-form").addEventListener("submit", save);
}

export function renderScene(incident) {
  const { $, t, state } = ctx;
  stopPicking();
  point = null;
  $("scene-point").textContent = "";
  $("scene-address").value = "";
  $("scene-copy").disabled = incident.best_location == null;
  const scene = incident.scene;
  if (!scene) {
    $("scene-text").textContent = t(state.language, "scene_unset");
    return;
  }
  const set = [...incident.timeline].reverse().find((e) => e.kind === "scene_set");
  const where = [scene.address, scene.lat != null ? `${scene.lat}, ${scene.lon}` : ""].filter(Boolean).join(" · ");
  const how = set && set.data.copied_from != null ? `${t(state.language, "scene_copied")} #${set.data.copied_from + 1}`
    : t(state.language, "scene_corrected");
  $("scene-text").textContent = `${where} (${how}${set ? ", " + set.actor : ""})`;
}

// The copy button of one candidate row in the locations table.
export function copyButton(incident, index) {
  const { el, t, state } = ctx;
  const button = el("button", "→", "copy");
  button.title = t(state.language, "scene_copy_this");
  button.addEventListener("click", () => send(incident.id, { copy: index }));
  return button;
}

export function copyChosen() {
  const incident = ctx.state.incidents.get(ctx.state.selected)?.full;
  if (incident && incident.best_location != null) send(incident.id, { copy: incident.best_location });
}

async function save(event) {
  event.preventDefault();
  const { $, state } = ctx;
  const address = $("scene-address").value.trim();
  if (!state.selected || (!point && !address)) return;
  const body = point ? { lat: point[0], lon: point[1], address } : { address };
  await send(state.selected, body);
}

async function send(id, body) {
  await ctx.act(`/incidents/${encodeURIComponent(id)}/scene`, body, true);
}
