// The overview: the whole frame at the pyramid level that fits the view, first as the server's
// JPEG, then (explicit levels) painted in the page from the same reduction's counts on a canvas
// (mapping.js), so a contrast change costs no request. Up to that zoom it is the picture
// itself; zoomed in further, deep-zoom tiles are drawn over it.

import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import {getImage} from "./api.js";

export const FIRST_OVERVIEW = {xsize: 512}; // before the frame's size is known
const MAX_OVERVIEW_PX = 2048; // a larger view gets tiles: one JPEG of a 16M frame is too big

// The pyramid level whose image of a width x height frame fits a view of viewW x viewH.
export function fitLevel(width, height, viewW, viewH) {
  let level = Math.max(0, Math.ceil(Math.log2(Math.max(width / viewW, height / viewH, 1e-9))));
  while (Math.max(width, height) / 2 ** level > MAX_OVERVIEW_PX) level += 1;
  return level;
}

// The size of that level: the server's reduction to it is the same block maximum as the tiles'.
export function levelSize(width, height, level) {
  return {xsize: Math.ceil(width / 2 ** level), ysize: Math.ceil(height / 2 ** level)};
}

// An image overlay whose picture is a canvas the page painted (Leaflet's takes <img> only).
const CanvasOverlay = L.ImageOverlay.extend({
  _initImage() {
    const canvas = (this._image = this._url);
    L.DomUtil.addClass(canvas, "leaflet-image-layer");
    if (this._zoomAnimated) L.DomUtil.addClass(canvas, "leaflet-zoom-animated");
    canvas.onselectstart = L.Util.falseFn;
    canvas.onmousemove = L.Util.falseFn;
  },
});

export class Overview {
  constructor(map) {
    this.map = map;
    this.layer = null;
    this.asked = 0; // the newest request: an older reply arriving later is dropped
    this.placed = 0;
  }

  // A picture from elsewhere (a new frame's first reply) wins over requests in flight.
  supersede() {
    this.asked += 1;
  }

  // Fetch the overview; resolves to its reply once it is on screen, or null if a newer
  // request (a slider moved again, play) overtook it.
  async load(params, bounds) {
    const ticket = ++this.asked;
    const reply = await getImage("image", params);
    if (ticket !== this.asked) return null;
    return (await this.place(reply.blob, bounds)) ? reply : null;
  }

  // Put a JPEG over `bounds` once decoded, then drop the previous one: never a blank between.
  async place(blob, bounds) {
    const ticket = ++this.placed;
    const img = new Image();
    img.src = URL.createObjectURL(blob);
    const started = performance.now();
    try {
      await img.decode();
      this.decoded = {started, ended: performance.now()}; // for bench/web.py
    } catch (err) {
      URL.revokeObjectURL(img.src);
      throw err;
    }
    if (ticket !== this.placed) {
      URL.revokeObjectURL(img.src);
      return false;
    }
    this.swap(L.imageOverlay(img, bounds, {pane: "overview"}));
    return true;
  }

  swap(layer) {
    const previous = this.layer;
    this.layer = layer.addTo(this.map);
    if (previous && previous !== layer) {
      const element = previous.getElement();
      if (element instanceof HTMLImageElement) URL.revokeObjectURL(element.src);
      previous.remove();
    }
  }

  // Paint `counts` in the page: `draw(rgba)` fills the pixels; a request in flight loses.
  paint(counts, draw, bounds) {
    this.supersede();
    this.placed += 1;
    const {width, height} = counts;
    let canvas = this.canvas;
    if (!canvas || canvas.width !== width || canvas.height !== height) {
      canvas = this.canvas = document.createElement("canvas");
      canvas.width = width;
      canvas.height = height;
      this.pixels = null;
    }
    const g = canvas.getContext("2d", {willReadFrequently: true}); // read back by the tests
    this.pixels = this.pixels ?? g.createImageData(width, height);
    draw(this.pixels.data);
    g.putImageData(this.pixels, 0, 0);
    if (this.layer?.getElement() !== canvas) this.swap(new CanvasOverlay(canvas, bounds, {pane: "overview"}));
    else this.layer.setBounds(bounds);
    this.decoded = null;
  }

  // The canvas on screen, if the overview is painted in the page (for the tests).
  get painted() {
    return this.layer?.getElement() === this.canvas ? this.canvas : null;
  }
}
