// The image: Leaflet on a flat CRS (one map unit = one detector pixel at the native zoom),
// the overview (overview.js) up to the zoom that fits the frame, deep-zoom tiles past it, and the rings / beam-centre overlay, which is drawn
// in the browser from the meta geometry so toggling it needs no new image.

import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import {url} from "./api.js";
import {ringRadius, beamCentre} from "./geometry.js";
import {el} from "./dom.js";
import {FIRST_OVERVIEW, Overview, fitLevel, levelSize} from "./overview.js";

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
    this.level = 0; // the overview's pyramid level (fitLevel)
    this.started = performance.now(); // when the picture on screen was last asked for
    // the overview sits under the tiles (Leaflet's tile pane is at z-index 200)
    this.map.createPane("overview").style.zIndex = "150";
    this.overview = new Overview(this.map);
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

  // The overview's request size for the current world (the level that fits the view), or the
  // first guess before a frame is shown.
  overviewSize() {
    if (!this.width) return FIRST_OVERVIEW;
    return levelSize(this.width, this.height, this.level);
  }

  // Whether deep-zoom tiles are drawn at the current zoom (else the overview is the picture).
  tilesActive() {
    return Boolean(this.tiles) && this.map.getZoom() >= this.tiles.options.minZoom;
  }

  // A new frame: resize the world if its size changed (else keep the view), show its first
  // reply as the overview (fetching it again at the fitting level when it was not, unless
  // `refetch` is false: a followed frame), and (unless they were started early, for a frame
  // of the same size) start the tiles.
  async show(width, height, reply, params, tilesStarted = false, refetch = true) {
    const resized = width !== this.width || height !== this.height;
    this.width = width;
    this.height = height;
    this.native = Math.max(0, Math.ceil(Math.log2(Math.max(width, height) / TILE)));
    const bounds = this.bounds();
    if (resized) {
      const view = this.map.getSize();
      this.level = fitLevel(width, height, view.x, view.y);
      this.map.setMaxBounds(bounds.pad(0.5));
      this.map.setMaxZoom(this.native + EXTRA_ZOOM);
      this.map.fitBounds(bounds, {animate: false});
    }
    if (resized || !tilesStarted) this.setTiles(params, bounds);
    this.overview.supersede();
    await this.overview.place(reply.blob, bounds);
    const want = this.overviewSize();
    const exact = reply.job.xsize === want.xsize && reply.job.ysize === want.ysize;
    if (exact || !refetch) this.overviewPainted();
    else await this.refresh(params, false);
  }

  bounds() {
    return L.latLngBounds(this.toLatLng(0, this.height), this.toLatLng(this.width, 0));
  }

  // New levels, scale or colour map: the overview again and new tiles (drawn only if zoomed
  // in). Resolves to the overview's reply, or null when a newer request overtook it.
  async refresh(params, withTiles = true) {
    const loading = this.overview.load({...params, ...this.overviewSize()}, this.bounds());
    if (withTiles) this.setTiles(params); // after the overview's request is on its way
    const reply = await loading;
    if (reply) this.overviewPainted();
    return reply;
  }

  // New levels or look painted in the page from the overview's counts (mapping.js), no request;
  // the tiles (drawn only when zoomed in) are asked for with them.
  paintCounts(counts, draw, params) {
    const started = performance.now();
    this.overview.paint(counts, draw, this.bounds());
    this.setTiles(params);
    if (!this.tilesActive()) this.onPainted(performance.now() - started, "page");
  }

  overviewPainted() {
    if (!this.tilesActive()) this.onPainted(performance.now() - this.started);
  }

  // Tiles of the next frame of a series before its overview arrives: the world keeps its size
  // (show() restarts them if the frame turns out to differ). Only when tiles are on screen.
  startTiles(tileParams) {
    if (!this.width || !this.tilesActive()) return false;
    this.setTiles(tileParams);
    return true;
  }

  // The deep-zoom tiles, drawn only past the overview's zoom (below it they would repeat it).
  setTiles(tileParams, bounds) {
    const started = performance.now();
    this.started = started;
    if (this.tiles) this.tiles.remove();
    let firstError = null;
    this.tiles = new ServerTiles({
      tileSize: TILE,
      bounds: bounds ?? this.tiles?.options.bounds,
      noWrap: true,
      maxNativeZoom: this.native,
      minNativeZoom: 0,
      maxZoom: this.native + EXTRA_ZOOM,
      minZoom: this.native - this.level + 1,
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
