// The worker's automatic levels for the overview (worker/levels.py LevelStats.planes, used by
// worker/levelrule.py): the per-block white and black levels of the frame interpolated at each
// output pixel's centre, two float32 planes. numpy forms them as two weight-matrix products
// (BLAS); the page adds the same two terms per pixel in float64 and rounds to float32, so a
// plane may differ from the worker's in its last bit, and a pixel's table index by one step.

const f = Math.fround;
const WHITE_FRACTION = f(1 / 8); // worker/levels.py: white this far below the background
const MIN_GAP = f(1e-6); // worker/levelrule.py: the black plane stays above the white one

function floats(base64, n) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  if (bytes.length !== 4 * n) throw new Error("level grid does not match its size");
  return new Float32Array(bytes.buffer); // little-endian, as every browser's typed arrays are
}

// levels._axis and _weights: each output pixel's two grid indices and float32 weights.
function axis(gridLen, block, length, outLen) {
  const low = new Int32Array(outLen);
  const high = new Int32Array(outLen);
  const wLow = new Float32Array(outLen);
  const wHigh = new Float32Array(outLen);
  for (let i = 0; i < outLen; i++) {
    const centre = ((i + 0.5) * length) / outLen;
    const pos = Math.min(Math.max(centre / block - 0.5, 0), gridLen - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, gridLen - 1);
    const upper = f(pos - lo);
    low[i] = lo;
    high[i] = hi;
    wLow[i] = f(1 - upper);
    wHigh[i] = upper;
    if (hi === lo) {
      wLow[i] = f(wLow[i] + upper);
      wHigh[i] = 0;
    }
  }
  return {low, high, wLow, wHigh};
}

// left @ grid @ right, two non-zero weights a row and a column.
function plane(grid, gx, rows, cols, width, height) {
  const half = new Float32Array(height * gx);
  for (let i = 0; i < height; i++) {
    const a = rows.low[i] * gx;
    const b = rows.high[i] * gx;
    for (let j = 0; j < gx; j++) half[i * gx + j] = rows.wLow[i] * grid[a + j] + rows.wHigh[i] * grid[b + j];
  }
  const out = new Float32Array(width * height);
  for (let i = 0; i < height; i++) {
    const r = i * gx;
    for (let x = 0; x < width; x++) {
      out[i * width + x] = half[r + cols.low[x]] * cols.wLow[x] + half[r + cols.high[x]] * cols.wHigh[x];
    }
  }
  return out;
}

// The (white, black) planes of the whole frame shown at width x height, from `meta.counts.auto
// .grid` (LevelStats.to_json).
export function autoPlanes(stats, width, height) {
  const [gy, gx] = stats.grid;
  const background = floats(stats.background, gy * gx);
  const span = floats(stats.span, gy * gx);
  const whiteGrid = new Float32Array(gy * gx);
  const blackGrid = new Float32Array(gy * gx);
  for (let k = 0; k < gy * gx; k++) {
    whiteGrid[k] = background[k] - f(span[k] * WHITE_FRACTION);
    blackGrid[k] = background[k] + span[k];
  }
  const rows = axis(gy, stats.block[0], stats.shape[0], height);
  const cols = axis(gx, stats.block[1], stats.shape[1], width);
  const white = plane(whiteGrid, gx, rows, cols, width, height);
  const black = plane(blackGrid, gx, rows, cols, width, height);
  for (let k = 0; k < black.length; k++) black[k] = Math.max(black[k], f(white[k] + MIN_GAP));
  return {white, black};
}
