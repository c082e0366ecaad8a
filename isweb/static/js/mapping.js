// The page's own stage 2: counts of the overview (the `counts` job, worker/counts.py) mapped to
// colours as the worker maps them (worker/render.py, worker/colormaps.py), through the tables
// the server serves (/api/looks, pyis_common/colortables.py). Every step is done in float32
// (Math.fround) in numpy's order, so for explicit levels (and the scalar automatic pair of the
// C rule or a DICOM window) the pixels equal the worker's; the per-pixel automatic levels come
// from planes.js (equal but for a rounding of the planes: a table step at most).

import {ApiError} from "./api.js";
import {autoPlanes} from "./planes.js";

const f = Math.fround;
let looks = null; // {steps, cLook: "linear/inverted", red, masked, tables: {"scale/map": Uint8Array}}

function bytesOf(base64) {
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

export async function loadLooks() {
  if (looks) return looks;
  const response = await fetch("/api/looks", {credentials: "same-origin"});
  if (!response.ok) throw new ApiError(response.status, "internal", "the colour tables did not load");
  const body = await response.json();
  const tables = {};
  for (const [name, text] of Object.entries(body.tables)) tables[name] = bytesOf(text);
  looks = {steps: body.steps, cLook: body.c_look.join("/"), red: body.red, masked: body.masked, tables};
  return looks;
}

// The levels render.levels() draws explicit ones with: white >= 0, black >= white + 1.
export function explicitLevels(contrast, wval) {
  const white = Math.max(0, wval);
  return {white, black: Math.max(contrast, white + 1)};
}

// The C server's grey ramp (render.grey): 255 - (v - white) * 255 / (black - white), truncated.
function greyRamp(counts, white, black, out) {
  const {values, valid} = counts;
  const w = f(white);
  const k = f(-255 / (black - white));
  for (let i = 0, o = 0; i < values.length; i++, o += 4) {
    let v = 255;
    if (valid[i >> 3] & (1 << (i & 7))) {
      let level = f(f(values[i] - w) * k);
      level = f(level + 255);
      v = level <= 0 ? 0 : level >= 255 ? 255 : Math.trunc(level);
    }
    out[o] = out[o + 1] = out[o + 2] = v;
    out[o + 3] = 255;
  }
}

// colormaps.index + apply: the table index of each count, then the table's colour.
function throughTable(counts, white, black, lut, out) {
  const {values, valid} = counts;
  const steps = f(looks.steps - 1);
  let perCount = f(f(black) - f(white));
  perCount = Math.max(perCount, f(1e-12));
  perCount = f(f(steps * f(1 + 2 ** -20)) / perCount);
  const w = f(white);
  const [mr, mg, mb] = looks.masked;
  for (let i = 0, o = 0; i < values.length; i++, o += 4) {
    if (valid[i >> 3] & (1 << (i & 7))) {
      let t = f(f(values[i] - w) * perCount);
      t = t <= 0 ? 0 : t >= steps ? steps : t;
      const j = 3 * Math.trunc(t);
      out[o] = lut[j];
      out[o + 1] = lut[j + 1];
      out[o + 2] = lut[j + 2];
    } else {
      out[o] = mr;
      out[o + 1] = mg;
      out[o + 2] = mb;
    }
    out[o + 3] = 255;
  }
}

// colormaps.index + apply with per-pixel levels (the automatic planes): always the table.
function throughPlanes(counts, planes, lut, out) {
  const {values, valid} = counts;
  const {white, black} = planes;
  const steps = f(looks.steps - 1);
  const scale = f(steps * f(1 + 2 ** -20));
  const tiny = f(1e-12);
  for (let i = 0, o = 0; i < values.length; i++, o += 4) {
    let j = -1;
    if (valid[i >> 3] & (1 << (i & 7))) {
      const perCount = f(scale / Math.max(f(black[i] - white[i]), tiny));
      let t = f(f(values[i] - white[i]) * perCount);
      t = t <= 0 ? 0 : t >= steps ? steps : t;
      j = 3 * Math.trunc(t);
    }
    const colour = j < 0 ? looks.masked : null;
    out[o] = colour ? colour[0] : lut[j];
    out[o + 1] = colour ? colour[1] : lut[j + 1];
    out[o + 2] = colour ? colour[2] : lut[j + 2];
    out[o + 3] = 255;
  }
}

// Whether the page can draw `counts` under the levels: explicit ones always, automatic ones
// when the counts carry them (meta.counts.auto).
export function canMap(counts, levels) {
  return levels !== null || Boolean(counts.auto?.pair || counts.auto?.grid);
}

// RGBA pixels of `counts` for `levels` ({contrast, wval}, or null: the automatic ones), scale
// and colour map; saturated pixels red.
export function mapCounts(counts, levels, scale, colormap, out) {
  const look = `${scale}/${colormap}`;
  const pair = levels ?? (counts.auto.pair ? {contrast: counts.auto.pair[1], wval: counts.auto.pair[0]} : null);
  if (pair) {
    const {white, black} = explicitLevels(pair.contrast, pair.wval);
    if (look === looks.cLook) greyRamp(counts, white, black, out);
    else throughTable(counts, white, black, looks.tables[look], out);
  } else {
    counts.planes = counts.planes ?? autoPlanes(counts.auto.grid, counts.width, counts.height);
    throughPlanes(counts, counts.planes, looks.tables[look], out);
  }
  if (counts.red) {
    const [r, g, b] = looks.red;
    const bits = counts.red;
    for (let i = 0; i < counts.values.length; i++) {
      if (bits[i >> 3] & (1 << (i & 7))) {
        out[4 * i] = r;
        out[4 * i + 1] = g;
        out[4 * i + 2] = b;
      }
    }
  }
  return out;
}

const ARRAYS = {u1: Uint8Array, u2: Uint16Array, i4: Int32Array, f4: Float32Array};

// The `counts` payload (worker/counts.py): values, then the valid bits, then the red bits.
export function decodeCounts(buffer, layout) {
  const {dtype, width, height, red} = layout;
  const n = width * height;
  const Kind = ARRAYS[dtype];
  const bits = Math.ceil(n / 8);
  const size = Kind ? n * Kind.BYTES_PER_ELEMENT : -1;
  if (size < 0 || buffer.byteLength !== size + bits * (red ? 2 : 1)) {
    throw new ApiError(502, "internal", "the counts reply does not match its layout");
  }
  // the float32 the worker maps: integers rounded to nearest even, as numpy's astype does
  const values = Kind === Float32Array ? new Kind(buffer, 0, n) : Float32Array.from(new Kind(buffer, 0, n));
  const valid = new Uint8Array(buffer, size, bits);
  const redBits = red ? new Uint8Array(buffer, size + bits, bits) : null;
  return {width, height, values, valid, red: redBits, auto: layout.auto ?? null, planes: null};
}
