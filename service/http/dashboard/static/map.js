// The map of one dataset (its row's "Map" button): the receivers by name (or the area of random
// receivers), the receivers' bounding box and that box widened by margin_deg (no transmitter
// lies outside), the first 500 transmitters, and, when the dataset's configuration names a
// terrain, that terrain's shaded relief under all of them. Everything comes from the API: the
// boxes from the dataset's stored configuration (GET /datasets/{id}), the transmitters from
// GET /datasets/{id}/samples, the relief from GET /datasets/{id}/relief.png asked for over
// exactly the map's extent, so that image and points share one lat/lon frame.

import { apiPath, get } from "./api.js";
import { count } from "./format.js";

const WIDTH = 800;          // the SVG's user units across; the frame scales it to the page
const TX_SHOWN = 500;       // transmitters drawn (the first samples: each is an independent draw)

// The boxes and extent of the report's map (service/report/queries.map_boxes and
// relief.map_extent): the receivers' bounding box (random receivers: their area), that box
// widened by margin_deg, and the extent: the widened box plus 5% of its larger side.
export function mapGeometry(config) {
  let inner;
  const receivers = config.use_random_receivers ? [] : (config.receivers || []);
  if (config.use_random_receivers) {
    inner = [config.area_lat_min, config.area_lat_max, config.area_lon_min, config.area_lon_max];
  } else {
    const lats = receivers.map((r) => r.lat);
    const lons = receivers.map((r) => r.lon);
    inner = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
  }
  const m = Number(config.margin_deg);
  const outer = [inner[0] - m, inner[1] + m, inner[2] - m, inner[3] + m];
  const pad = 0.05 * Math.max(outer[1] - outer[0], outer[3] - outer[2]);
  const extent = { west: outer[2] - pad, east: outer[3] + pad, south: outer[0] - pad,
                   north: outer[1] + pad };
  return { receivers, inner, outer, extent };
}

// SVG elements in the namespace of the page's <svg> (the HTML parser put it there)
function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(document.querySelector("#map-svg").namespaceURI, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

export class DatasetMap {
  constructor(section) {
    this.section = section;
    this.title = section.querySelector("#map-name");
    this.frame = section.querySelector("#map-frame");
    this.relief = section.querySelector("#map-relief");
    this.svg = section.querySelector("#map-svg");
    this.note = section.querySelector("#map-note");
    this.shown = null;
    section.querySelector("#map-close").addEventListener("click", () => this.hide());
    this.relief.addEventListener("error", () => {
      if (!this.relief.getAttribute("src")) return;
      this.relief.hidden = true;
      this.terrainNote = `terrain ${this.terrain}: no relief (the terrain is no longer registered)`;
      this.caption();
    });
  }

  hide() {
    this.section.hidden = true;
    this.shown = null;
  }

  async show(dataset) {
    if (!dataset) return;
    const id = dataset.id;
    this.shown = id;
    this.section.hidden = false;
    this.title.textContent = dataset.name;
    const config = dataset.config || {};
    const { receivers, inner, outer, extent } = mapGeometry(config);
    const { west, east, south, north } = extent;
    // degrees of longitude are shorter than degrees of latitude by cos(latitude)
    const cos = Math.cos(((outer[0] + outer[1]) / 2) * Math.PI / 180);
    const height = WIDTH * (north - south) / ((east - west) * cos);
    const x = (lon) => ((lon - west) / (east - west)) * WIDTH;
    const y = (lat) => ((north - lat) / (north - south)) * height;
    this.frame.style.aspectRatio = `${WIDTH} / ${height}`;
    this.svg.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
    this.svg.replaceChildren();

    // the terrain's relief: an image over exactly this extent, under the SVG's points
    this.terrain = typeof config.terrain === "string" && config.terrain ? config.terrain : null;
    this.frame.dataset.extent = [west, east, south, north].join(",");
    if (this.terrain) {
      const query = new URLSearchParams({ west, east, south, north });
      this.relief.alt = `shaded relief of terrain ${this.terrain}`;
      this.relief.hidden = false;
      this.relief.src = apiPath(`/datasets/${id}/relief.png?${query}`);
      this.terrainNote = `relief: terrain ${this.terrain} (light from the north-west, 45°)`;
    } else {
      this.relief.hidden = true;
      this.relief.removeAttribute("src");
      this.terrainNote = "no terrain: no relief";
    }

    const box = ([lat0, lat1, lon0, lon1], cls) => svg("rect", {
      class: cls, x: x(lon0), y: y(lat1), width: x(lon1) - x(lon0), height: y(lat0) - y(lat1) });
    const txLayer = svg("g", { class: "map-tx" });
    this.svg.append(txLayer, box(inner, "map-inner"), box(outer, "map-outer"));
    const rxLayer = svg("g", { class: "map-rx" });
    for (const r of receivers) {
      const cx = x(r.lon);
      const cy = y(r.lat);
      rxLayer.append(
        svg("path", { d: `M ${cx} ${cy - 7} L ${cx + 6} ${cy + 4} L ${cx - 6} ${cy + 4} Z` }),
        svg("text", { x: cx + 8, y: cy - 4 }, r.name));
    }
    this.svg.append(rxLayer);
    this.txNote = "reading transmitters…";
    this.caption();

    const reply = await get(`/datasets/${id}/samples?limit=${TX_SHOWN}`);
    if (this.shown !== id) return;  // another dataset was chosen meanwhile
    if (!reply.ok) {
      this.txNote = `transmitters unavailable (${reply.status})`;
    } else {
      for (const s of reply.body.samples) {
        txLayer.append(svg("circle", { cx: x(s.tx_longitude), cy: y(s.tx_latitude), r: 2.2 }));
      }
      const n = reply.body.samples.length;
      this.txNote = n < reply.body.num_samples
        ? `the first ${count(n)} of ${count(reply.body.num_samples)} transmitters`
        : `${count(n)} transmitters`;
    }
    this.caption();
  }

  caption() {
    this.note.textContent = `${this.txNote} · ${this.terrainNote}`;
  }
}
