// Series navigation: frames are numbered files (name_0001.cbf ...) or frames inside one file.

import {byId} from "./dom.js";

export function frameCount(state) {
  const m = state.meta ?? {};
  return Math.max(1, (Number(m.last_frame) || 1) - (Number(m.first_frame) || 1) + 1);
}

function seriesName(series, number) {
  const m = /^(.*?)(#+)(\..+)$/.exec(series.template);
  const name = `${m[1]}${String(number).padStart(m[2].length, "0")}${m[3]}`;
  return series.dir ? `${series.dir}/${name}` : name;
}

// The {fn, frame} of frame number `n` of what is on screen (a series' file number, else the
// frame inside the file), or null past either end.
export function frameAt(state, n) {
  const s = state.series;
  if (s) return n >= s.first && n <= s.last ? {fn: seriesName(s, n), frame: 1} : null;
  return n >= 1 && n <= frameCount(state) ? {fn: state.fn, frame: n} : null;
}

// The frame `delta` away from the one on screen, or null.
export function stepFrom(state, delta) {
  if (!state.fn) return null;
  return frameAt(state, (state.series ? state.series.number : state.frame) + delta);
}

export function showRange(state) {
  const jumpBox = byId("jump");
  const s = state.series;
  const [first, last, now] = s ? [s.first, s.last, s.number] : [1, frameCount(state), state.frame];
  jumpBox.min = String(first);
  jumpBox.max = String(last);
  jumpBox.value = String(now);
  byId("range").textContent = `${first}–${last}`;
}
