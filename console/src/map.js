// The caller's location candidates on a Leaflet map: each shape as the network sent it, at full
// precision, the chosen one drawn strongest, earlier fixes faded along a trail (DEC112's viewer), and
// the incident's own location (its scene) as a blue mark. Tiles only from the centre's own server.
/* global L, pmtiles */

let map = null;
let layer = null;
let picked = null;  // the point a dispatcher is placing, while correcting the scene
let onPick = null;

const SCENE = { color: "#0d47a1", weight: 3, fillColor: "#42a5f5", fillOpacity: 0.9, radius: 9 };

export function showLocations(element, locations, best, base, scene) {
  if (!window.L) return;  // the library is installed at set-up; a page without it still works as text
  if (map === null) create(element, base);
  layer.clearLayers();
  drawTrail(locations);
  locations.forEach((loc, index) => {
    // Older candidates fade: the newest is the most likely to be where the caller is now.
    const faded = 0.35 + (0.65 * (index + 1)) / locations.length;
    const style = { color: index === best ? "#c62828" : "#607d8b", weight: index === best ? 3 : 1,
      opacity: index === best ? 1 : faded, fillOpacity: 0.15 * faded };
    for (const shape of shapesOf(loc, style)) shape.addTo(layer);
  });
  if (scene && scene.lat != null && scene.lon != null) L.circleMarker([scene.lat, scene.lon], SCENE).addTo(layer);
  const bounds = layer.getBounds();
  if (bounds.isValid()) map.fitBounds(bounds.pad(0.5), { maxZoom: 17 });
  else map.setView([48.0, 67.0], 4);  // Kazakhstan, when nothing has a position
  setTimeout(() => map.invalidateSize(), 0);
}

// The next clicks on the map place the incident's location; `callback` gets each [lat, lon] as Leaflet
// measured it (no rounding). `stopPicking` ends it.
export function pickPoint(callback) {
  if (!map) return;
  onPick = callback;
  map.getContainer().classList.add("picking");
}

export function stopPicking() {
  onPick = null;
  if (picked) { picked.remove(); picked = null; }
  if (map) map.getContainer().classList.remove("picking");
}

function create(element, base) {
  // A view before any shape: a circle measures itself with the map's projection.
  map = L.map(element, { zoomControl: true, attributionControl: false }).setView([48.0, 67.0], 4);
  if (!addBase(map, base)) drawZones(map, base.zones || []);  // no tiles: the centre's zones are the map
  layer = L.featureGroup().addTo(map);
  map.on("click", (event) => {
    if (!onPick) return;
    const { lat, lng } = event.latlng;
    if (picked) picked.setLatLng(event.latlng);
    else picked = L.circleMarker(event.latlng, { ...SCENE, fillColor: "#fff" }).addTo(map);
    onPick([lat, lng]);
  });
}

// The base layer: the centre's tile server (`tileUrl`), or its raster PMTiles archive (`pmtilesUrl`) that the
// gateway serves and the pmtiles library reads in byte ranges, each tile shown as a blob: image. False: neither.
export function addBase(target, base) {
  if (base.tileUrl) L.tileLayer(base.tileUrl, { maxZoom: 19 }).addTo(target);
  else if (base.pmtilesUrl && window.pmtiles) {
    pmtiles.leafletRasterLayer(new pmtiles.PMTiles(base.pmtilesUrl), { maxZoom: 19 }).addTo(target);
  } else return false;
  return true;
}

export function drawZones(target, zones) {
  const style = { color: "#9e9e9e", weight: 1, fillOpacity: 0.04, interactive: false };
  for (const zone of zones) {
    if (zone.polygon && zone.polygon.length >= 3) L.polygon(zone.polygon, style).addTo(target);
    else if (zone.circle) L.circle([zone.circle.lat, zone.circle.lon], { ...style, radius: zone.circle.radius_km * 1000 }).addTo(target);
  }
}

function drawTrail(locations) {
  const points = locations.filter((loc) => loc.lat != null && loc.lon != null).map((loc) => [loc.lat, loc.lon]);
  if (points.length >= 2) L.polyline(points, { color: "#607d8b", weight: 1, dashArray: "4 4", opacity: 0.7 }).addTo(layer);
}

// An RFC 5491 ellipse as an outline: semi-major axis (radius_m) turned ``orientation_deg`` clockwise from
// north, semi-minor across it. Drawn as its circle it would claim up to a/b times the area it does.
export function ellipsePoints(loc, count = 72) {
  const turn = ((loc.orientation_deg || 0) * Math.PI) / 180;
  const major = [Math.sin(turn), Math.cos(turn)];  // [east, north] unit vectors
  const minor = [Math.cos(turn), -Math.sin(turn)];
  const metresPerDegree = 111320;
  const points = [];
  for (let i = 0; i < count; i += 1) {
    const t = (2 * Math.PI * i) / count;
    const [a, b] = [loc.radius_m * Math.cos(t), loc.semi_minor_m * Math.sin(t)];
    const east = a * major[0] + b * minor[0];
    const north = a * major[1] + b * minor[1];
    points.push([loc.lat + north / metresPerDegree,
      loc.lon + east / (metresPerDegree * Math.cos((loc.lat * Math.PI) / 180))]);
  }
  return points;
}

function shapesOf(loc, style) {
  const shapes = [];
  const ellipse = loc.semi_minor_m && loc.radius_m && loc.lat != null && loc.lon != null && !loc.points?.length;
  if (ellipse) shapes.push(L.polygon(ellipsePoints(loc), style));
  else if (loc.points && loc.points.length >= 3) shapes.push(L.polygon(loc.points, style));
  else if (loc.lat != null && loc.lon != null && loc.radius_m) shapes.push(L.circle([loc.lat, loc.lon], { ...style, radius: loc.radius_m }));
  if (loc.lat != null && loc.lon != null) shapes.push(L.circleMarker([loc.lat, loc.lon], { ...style, radius: 5, fillOpacity: 0.9 }));
  return shapes;
}
