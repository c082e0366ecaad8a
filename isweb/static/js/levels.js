// The level sliders and the look selects: they show the levels in use (the automatic pair the
// server chose, or the user's), and the range follows the frame (up to a few times the black).

import {byId} from "./dom.js";

export function showLevels(state) {
  const black = Math.max(1, Math.round(state.levels.black ?? 1));
  const white = Math.max(0, Math.round(state.levels.white ?? 0));
  const max = Number(state.meta.max);
  const top = Math.max(10, Math.round(4 * black), max > 0 ? Math.min(max, 8 * black) : 0);
  const c = byId("contrast");
  const w = byId("white");
  c.max = String(top);
  w.max = String(top);
  c.value = String(black);
  w.value = String(white);
  byId("contrast-value").textContent = `${black}${state.contrast === null ? " (auto)" : ""}`;
  byId("white-value").textContent = `${white}${state.wval === null ? " (auto)" : ""}`;
}

// The explicit levels the sliders say: the white level stays below the black one.
export function readSliders() {
  const contrast = Number(byId("contrast").value);
  return {contrast, wval: Math.min(Number(byId("white").value), contrast - 1)};
}

export function showLook(state) {
  byId("scale").value = state.scale;
  byId("colormap").value = state.colormap;
}

export function readLook() {
  return {scale: byId("scale").value, colormap: byId("colormap").value};
}
