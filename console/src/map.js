// The caller's location candidates on a Leaflet map: each shape as the network sent it, at full
// precision, the chosen one drawn strongest. Tiles only from the centre's own server when configured.
/* global L */

let map = null;
let layer = null;

export function showLocations(element, locations, best, base) {
  if (!window.L) return;  // the library is installed at set-up; a page without it still works as text
  if (map === null) {
    // A view before any shape: a circle measures itself with the map's projection.
    map = L.map(element, { zoomControl: true, attributionControl: false }).setView([48.0, 67.0], 4);
    if (base.tileUrl) L.tileLayer(base.tileUrl, { maxZoom: 19 }).addTo(map);
    else drawZones(base.zones || []);  // no tile server: the centre's zones are the map
    layer = L.featureGroup().addTo(map);
  }
  layer.clearLayers();
  locations.forEach((loc, index) => {
    const style = { color: index === best ? "#c62828" : "#607d8b", weight: index === best ? 3 : 1, fillOpacity: 0.15 };
    for (const shape of shapesOf(loc, style)) shape.addTo(layer);
  });
  const bounds = layer.getBounds();
  if (bounds.isValid()) map.fitBounds(bounds.pad(0.5), { maxZoom: 17 });
  else map.setView([48.0, 67.0], 4);  // Kazakhstan, when nothing has a position
  setTimeout(() => map.invalidateSize(), 0);
}

function drawZones(zones) {
  const style = { color: "#9e9e9e", weight: 1, fillOpacity: 0.04, interactive: false };
  for (const zone of zones) {
    if (zone.polygon && zone.polygon.length >= 3) L.polygon(zone.polygon, style).addTo(map);
    else if (zone.circle) L.circle([zone.circle.lat, zone.circle.lon], { ...style, radius: zone.circle.radius_km * 1000 }).addTo(map);
  }
}

function shapesOf(loc, style) {
  const shapes = [];
  if (loc.points && loc.points.length >= 3) shapes.push(L.polygon(loc.points, style));
  else if (loc.lat != null && loc.lon != null && loc.radius_m) shapes.push(L.circle([loc.lat, loc.lon], { ...style, radius: loc.radius_m }));
  if (loc.lat != null && loc.lon != null) shapes.push(L.circleMarker([loc.lat, loc.lon], { ...style, radius: 5, fillOpacity: 0.9 }));
  return shapes;
}
