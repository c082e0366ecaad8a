// The deep link in the URL hash: file, frame, levels, scale, colour map and ESAF. It never
// holds the session, which lives in an HttpOnly cookie no script can read.

export const LOOKS = {scale: ["linear", "sqrt", "log"], colormap: ["inverted", "grey", "viridis"]}; // request.py's

export function readHash() {
  const q = new URLSearchParams(location.hash.slice(1));
  const num = (k) => (q.has(k) && Number.isFinite(Number(q.get(k))) ? Number(q.get(k)) : null);
  const look = (k) => (LOOKS[k].includes(q.get(k)) ? q.get(k) : LOOKS[k][0]);
  return {
    fn: q.get("fn"), frame: num("frame") ?? 1, contrast: num("contrast"), wval: num("wval"), esaf: num("esaf"),
    scale: look("scale"), colormap: look("colormap"),
  };
}

export function writeHash(state) {
  const q = new URLSearchParams();
  if (state.esaf) q.set("esaf", String(state.esaf));
  if (state.fn) q.set("fn", state.fn);
  q.set("frame", String(state.frame));
  if (state.contrast !== null) q.set("contrast", String(state.contrast));
  if (state.wval !== null) q.set("wval", String(state.wval));
  for (const k of Object.keys(LOOKS)) if (state[k] !== LOOKS[k][0]) q.set(k, state[k]);
  history.replaceState(null, "", `#${q.toString()}`);
}
