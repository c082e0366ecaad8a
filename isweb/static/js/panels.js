// The panels beside the image: the header values, the server's timings, the ring list and the
// cursor readout (raw value from a `pixels` call, resolution from the header's geometry).

import {getJSON} from "./api.js";
import {byId, clear, el, showError} from "./dom.js";
import {resolutionAt} from "./geometry.js";

export function showHeader(meta) {
  const body = byId("header").tBodies[0];
  clear(body);
  for (const [k, v] of Object.entries(meta).sort()) {
    if (v !== null && typeof v === "object") continue;
    const tr = el("tr");
    tr.appendChild(el("td", k));
    tr.appendChild(el("td", typeof v === "number" ? Number(v.toPrecision(8)) : v));
    body.appendChild(tr);
  }
}

export function showTimings(timings) {
  const box = byId("timings");
  if (!timings || typeof timings !== "object") {
    box.textContent = "– (the server sent none)";
    return;
  }
  box.textContent = Object.entries(timings).map(([k, v]) => `${k} ${Number(v).toFixed(1)}`).join(" · ");
}

let cursorSeq = 0;
let cursorTimer = null;

export function cursor(x, y, state) {
  byId("cursor-xy").textContent = `${x}, ${y}`;
  const d = state.meta ? resolutionAt(state.meta, x + 0.5, y + 0.5) : null;
  byId("cursor-res").textContent = d === null ? "–" : d === Infinity ? "∞" : `${d.toFixed(2)} Å`;
  clearTimeout(cursorTimer);
  cursorTimer = setTimeout(async () => {
    const seq = ++cursorSeq;
    try {
      const reply = await getJSON("pixels", {fn: state.fn, frame: state.frame, esaf: state.esaf ?? undefined, x, y, size: 1});
      if (seq !== cursorSeq) return;
      const v = reply.meta.values?.[0]?.[0];
      const box = byId("cursor-value");
      box.textContent = v === null || v === undefined ? "masked" : String(v);
      box.dataset.x = String(x);
      box.dataset.y = String(y);
    } catch (err) {
      if (seq === cursorSeq) showError(err);
    }
  }, 60);
}

function spacings() {
  return byId("rings").value.split(/[\s,;]+/).map(Number).filter((d) => Number.isFinite(d) && d > 0).slice(0, 20);
}

// The rings at the d-spacings typed and the beam centre, drawn by the viewer; their radii listed.
export function showRings(viewer, meta) {
  const rings = viewer.drawOverlay(meta, spacings(), byId("show-rings").checked, byId("show-beam").checked);
  const list = byId("ring-list");
  clear(list);
  for (const {d, r} of rings) {
    const li = el("li", r === null ? `${d} Å: no geometry in this header` : `${d} Å: r = ${r.toFixed(1)} px`);
    li.dataset.d = String(d);
    if (r !== null) li.dataset.radiusPx = String(r);
    list.appendChild(li);
  }
  if (!rings.length && spacings().length) list.appendChild(el("li", "no beam centre in this header"));
}
