// The image: Leaflet on a flat CRS (one map unit = one detector pixel at the native zoom),
// a coarse overview under deep-zoom tiles, and the rings / beam-centre overlay, which is drawn
// in the browser from the meta geometry so toggling it needs no new image.

import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import {url} from "./api.js";
import {ringRadius, beamCentre} from "./geometry.js";
import {el} from "./dom.js";

const TILE = 256;
const EXTRA_ZOOM = 3; // zoom past one screen pixel per detector pixel: 8 screen px per pixel

// Tiles fetched (not <img src>) so a refusal's sentence reaches the page, and decoded with
// createImageBitmap straight onto a canvas: no blob URL round trip before the pixels show.
const ServerTiles = L.GridLayer.extend({
  createTile(coords, done) {
    const canvas = document.createElement("canvas");
    canvas.width = TILE;
    canvas.height = TILE;
    const params = this.options.tileParams(coords);
    canvas.dataset.level = String(params.level);
    canvas.dataset.col = String(params.col);
    canvas.dataset.row = String(params.row);
    fetch(url("tile", params), {credentials: "same-origin"})
      .then(async (response) => {
        if (!response.ok) {
          let body = null;
          try { body = await response.json(); } catch { body = null; }
          throw new Error(body ? `${body.error}: ${body.message}` : `HTTP ${response.status}`);
        }
        return createImageBitmap(await response.blob());
      })
      .then((bitmap) => {
        canvas.getContext("2d").drawImage(bitmap, 0, 0);
        bitmap.close();
        done(null, canvas);
      })
      .catch((err) => done(err, canvas));
    return canvas;
  },
});

export class Viewer {
  constructor(container, {onCursor, onPainted, onError}) {
    this.map = L.map(container, {
      crs: L.CRS.Simple,
      attributionControl: false,
      zoomSnap: 1,
      minZoom: -2,
      fadeAnimation: false,
    });
    this.onPainted = onPainted;
    this.onError = onError;
    this.width = 0;
    this.height = 0;
    this.native = 0;
    // the coarse overview sits under the tiles (Leaflet's tile pane is at z-index 200)
    this.map.createPane("overview").style.zIndex = "150";
    this.overlay = L.layerGroup().addTo(this.map);
    this.map.on("mousemove", (ev) => {
      if (!this.width) return;
      const p = this.map.project(ev.latlng, this.native);
      const x = Math.floor(p.x);
      const y = Math.floor(p.y);
      if (x >= 0 && y >= 0 && x < this.width && y < this.height) onCursor(x, y);
    });
  }

  toLatLng(x, y) {
    return this.map.unproject([x, y], this.native);
  }

  // Page coordinates of detector pixel position (x, y), for tests and benchmarks.
  toPage(x, y) {
    const p = this.map.latLngToContainerPoint(this.toLatLng(x, y));
    const box = this.map.getContainer().getBoundingClientRect();
    return {x: box.left + p.x, y: box.top + p.y};
  }

  // A new frame: resize the world if its size changed (else keep the view), put the overview
  // under the tiles, and (unless they were started early, for a frame of the same size)
  // start the tiles.
  show(width, height, overviewBlob, tileParams, tilesStarted = false) {
    const resized = width !== this.width || height !== this.height;
    this.width = width;
    this.height = height;
    this.native = Math.max(0, Math.ceil(Math.log2(Math.max(width, height) / TILE)));
    const bounds = L.latLngBounds(this.toLatLng(0, height), this.toLatLng(width, 0));
    if (resized) {
      this.map.setMaxBounds(bounds.pad(0.5));
      this.map.setMaxZoom(this.native + EXTRA_ZOOM);
      this.map.fitBounds(bounds);
    }
    const previous = this.overview;
    this.overview = L.imageOverlay(URL.createObjectURL(overviewBlob), bounds, {pane: "overview"});
    this.overview.addTo(this.map);
    if (previous) {
      URL.revokeObjectURL(previous.getElement().src);
      previous.remove();
    }
    if (resized || !tilesStarted) this.setTiles(tileParams, bounds);
  }

  // Tiles of the next frame of a series before its overview arrives: the world keeps its size
  // (show() restarts them if the frame turns out to differ).
  startTiles(tileParams) {
    if (!this.width) return false;
    this.setTiles(tileParams);
    return true;
  }

  setTiles(tileParams, bounds) {
    const started = performance.now();
    if (this.tiles) this.tiles.remove();
    let firstError = null;
    this.tiles = new ServerTiles({
      tileSize: TILE,
      bounds: bounds ?? this.tiles?.options.bounds,
      noWrap: true,
      maxNativeZoom: this.native,
      minNativeZoom: 0,
      maxZoom: this.native + EXTRA_ZOOM,
      minZoom: -2,
      keepBuffer: 1,
      updateWhenZooming: false,
      tileParams: (c) => ({...tileParams, level: this.native - c.z, col: c.x, row: c.y}),
    });
    this.tiles.on("tileerror", (ev) => {
      if (!firstError) {
        firstError = ev.error;
        this.onError(ev.error);
      }
    });
    this.tiles.on("load", () => this.onPainted(performance.now() - started));
    this.tiles.addTo(this.map);
  }

  drawOverlay(meta, spacings, showRings, showBeam) {
    this.overlay.clearLayers();
    const rings = [];
    const beam = beamCentre(meta);
    if (!beam) return rings;
    const centre = this.toLatLng(beam.x, beam.y);
    const scale = 2 ** this.native; // map units per detector pixel = 1 / scale
    if (showBeam) {
      L.circleMarker(centre, {radius: 5, color: "#c22", weight: 2, className: "beam"}).addTo(this.overlay);
    }
    for (const d of spacings) {
      const r = ringRadius(meta, d);
      rings.push({d, r});
      if (r === null || !showRings) continue;
      const ring = L.circle(centre, {radius: r / scale, color: "#16a", weight: 1.5, fill: false, className: "ring"});
      ring.addTo(this.overlay);
      const label = el("span", `${d.toFixed(2)} Å`);
      L.tooltip({permanent: true, direction: "right", className: "ring-label", offset: [0, 0]})
        .setLatLng(this.toLatLng(beam.x + r * Math.SQRT1_2, beam.y - r * Math.SQRT1_2))
        .setContent(label)
        .addTo(this.overlay);
    }
    return rings;
  }
}
