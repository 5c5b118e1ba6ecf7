// The alert composer's map: the centre's zones (over its own tiles when configured), a click on a zone ticks
// it, and the officer draws the alert's polygons and circles with Leaflet-Geoman (from npm, like Leaflet).
// Shapes keep Leaflet's full precision: rounding a vertex to 2 decimals moves a border by up to a kilometre,
// and with it who is warned. Everything written on the page is text.
/* global L */
import { addBase } from "./map.js";

let map = null;
let drawn = null;  // the officer's shapes
let shown = null;  // the areas of the draft being previewed, exactly as stored
const zoneLayers = new Map();  // zone name -> layer
const zoneTitles = new Map();  // zone name -> titles per language
let ctx = null;
let onZoneClick = () => {};
let onChange = () => {};

const ZONE = { color: "#78909c", weight: 1, fillColor: "#90a4ae", fillOpacity: 0.06, dashArray: null };
const TICKED = { color: "#14365c", weight: 2, fillColor: "#1e88e5", fillOpacity: 0.22, dashArray: null };
const REACHED = { color: "#e65100", weight: 2, fillColor: "#ffb74d", fillOpacity: 0.12, dashArray: "5 4" };
const SHAPE = { color: "#c62828", weight: 2, fillColor: "#ef5350", fillOpacity: 0.25 };
const DRAFT = { color: "#6a1b9a", weight: 3, dashArray: "2 6", fillColor: "#ab47bc", fillOpacity: 0.12,
  className: "draft-area", pmIgnore: true, interactive: false };

// `options`: zones (GET /zones), tileUrl or pmtilesUrl, zoneClicked(name), changed() after every drawn, edited or
// removed shape.
export function startArea(context, element, options) {
  ctx = context;
  onZoneClick = options.zoneClicked;
  onChange = options.changed;
  if (!window.L || !L.PM) {  // the libraries are installed at set-up; without them the zone boxes still work
    element.replaceChildren(ctx.el("p", ctx.t(ctx.state.language, "area_no_map"), "hint"));
    return;
  }
  map = L.map(element, { attributionControl: false, zoomSnap: 0.25 }).setView([48.0, 67.0], 4);
  addBase(map, options);
  drawZones(options.zones);  // over the base layer
  drawn = L.featureGroup().addTo(map);
  shown = L.featureGroup().addTo(map);
  map.pm.setGlobalOptions({ layerGroup: drawn, pathOptions: SHAPE, templineStyle: SHAPE, hintlineStyle: SHAPE,
    continueDrawing: false });
  map.pm.addControls({ position: "topleft", drawMarker: false, drawCircleMarker: false, drawPolyline: false,
    drawText: false, cutPolygon: false, rotateMode: false });
  map.on("pm:create", ({ layer }) => {
    layer.on("pm:edit pm:dragend", () => onChange());
    onChange();
  });
  map.on("pm:remove", ({ layer }) => { drawn.removeLayer(layer); onChange(); });
  translateTools();
  const bounds = L.featureGroup([...zoneLayers.values()]).getBounds();
  if (bounds.isValid()) map.fitBounds(bounds.pad(0.05));
  setTimeout(() => map.invalidateSize(), 0);
}

function drawZones(zones) {
  for (const zone of zones) {
    const style = { ...ZONE, className: `zone zone-${zone.name}`, pmIgnore: true };  // never edited nor removed
    let layer = null;
    if (zone.polygon && zone.polygon.length >= 3) layer = L.polygon(zone.polygon, style);
    else if (zone.circle) layer = L.circle([zone.circle.lat, zone.circle.lon], { ...style, radius: zone.circle.radius_km * 1000 });
    if (!layer) continue;
    zoneTitles.set(zone.name, zone.title || {});
    layer.bindTooltip(zoneTitle(zone.name), { sticky: true });
    layer.on("click", () => {
      if (!map.pm.globalDrawModeEnabled() && !map.pm.globalRemovalModeEnabled() && !map.pm.globalEditModeEnabled()) {
        onZoneClick(zone.name);  // a click that places a vertex or removes a shape is not a tick
      }
    });
    layer.addTo(map);
    zoneLayers.set(zone.name, layer);
  }
}

function zoneTitle(name) {
  return ctx.el("span", zoneTitles.get(name)[ctx.state.language] || name);  // an element: Leaflet puts a string in as markup
}

// Ticked zones strong, zones the drawn shapes reach dashed, the rest faint.
export function markZones(ticked, reached) {
  for (const [name, layer] of zoneLayers) {
    layer.setStyle(ticked.includes(name) ? TICKED : reached.includes(name) ? REACHED : ZONE);
  }
}

// The drawn shapes as the API takes them: polygons closed (CAP repeats the first point), circles in km.
export function area() {
  const polygons = [];
  const circles = [];
  for (const layer of drawn ? drawn.getLayers() : []) {
    if (layer instanceof L.Circle) {
      const { lat, lng } = layer.getLatLng();
      circles.push({ lat, lon: lng, radius_km: layer.getRadius() / 1000 });
    } else if (layer instanceof L.Polygon) {
      const ring = ringOf(layer).map(({ lat, lng }) => [lat, lng]);
      if (ring.length) polygons.push([...ring, ring[0]]);
    }
  }
  return { polygons, circles };
}

function ringOf(layer) {
  let ring = layer.getLatLngs();
  while (Array.isArray(ring[0])) ring = ring[0];  // a Geoman polygon is [[...]]; its outer ring is all we draw
  return ring;
}

// A previewed draft's polygons and circles on the map, from the stored numbers (what the approver approves).
export function showAreas(areas) {
  if (!shown) return;
  shown.clearLayers();
  for (const a of areas) {
    for (const points of a.polygons) L.polygon(points, DRAFT).addTo(shown);
    for (const c of a.circles) L.circle([c.lat, c.lon], { ...DRAFT, radius: c.radius_km * 1000 }).addTo(shown);
  }
  const bounds = shown.getBounds();
  if (bounds.isValid()) map.fitBounds(bounds.pad(0.3), { maxZoom: 15 });
}

// The list under the map: each shape with its numbers as sent, and a button to remove it.
export function renderShapes(list) {
  if (!ctx) return;
  const { el, t, state } = ctx;
  const say = (key) => t(state.language, key);
  const numbers = { circle: 0, polygon: 0 };  // numbered per kind, as the preview and the CAP XML list them
  list.replaceChildren(...(drawn ? drawn.getLayers() : []).map((layer) => {
    const item = el("li");
    const kind = layer instanceof L.Circle ? "circle" : "polygon";
    const index = numbers[kind]++;
    item.dataset.kind = kind;
    if (kind === "circle") {
      const { lat, lng } = layer.getLatLng();
      item.append(el("strong", `${say("circle")} ${index + 1}`),
        el("span", ` ${say("centre")} ${lat}, ${lng} · ${say("radius")} ${layer.getRadius() / 1000} km`, "coords"));
    } else {
      const ring = ringOf(layer);
      item.append(el("strong", `${say("polygon")} ${index + 1}`), el("span", ` ${ring.length} ${say("points")}: `),
        el("span", ring.map(({ lat, lng }) => `${lat}, ${lng}`).join(" · "), "coords"));
    }
    const remove = el("button", say("remove"));
    remove.type = "button";
    remove.addEventListener("click", () => { drawn.removeLayer(layer); onChange(); });
    item.append(remove);
    return item;
  }));
}

// Geoman's own words (toolbar titles, drawing hints) in the person's language.
export function translateTools() {
  if (!map || !ctx) return;
  const say = (key) => ctx.t(ctx.state.language, key);
  for (const [name, layer] of zoneLayers) layer.setTooltipContent(zoneTitle(name));
  map.pm.setLang(`ecgw-${ctx.state.language}`, {
    tooltips: { firstVertex: say("gm_first_vertex"), continueLine: say("gm_continue"), finishPoly: say("gm_finish_poly"),
      finishRect: say("gm_finish_rect"), startCircle: say("gm_start_circle"), finishCircle: say("gm_finish_circle") },
    actions: { finish: say("gm_finish"), cancel: say("gm_cancel"), removeLastVertex: say("gm_remove_last") },
    buttonTitles: { drawPolyButton: say("gm_draw_polygon"), drawRectButton: say("gm_draw_rectangle"),
      drawCircleButton: say("gm_draw_circle"), editButton: say("gm_edit"), dragButton: say("gm_drag"),
      deleteButton: say("gm_delete") },
  }, "en");
}
