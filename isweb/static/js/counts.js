// The counts of the overviews the page holds: the frame on screen and, prefetched, the next one
// (prefetch.js). Each is fetched in the background after its JPEG, once: a contrast, white
// level, scale or colour map change is then painted from them with no request (mapping.js).

import {ApiError, url} from "./api.js";
import {decodeCounts, loadLooks} from "./mapping.js";

const KEEP = 2; // the frame on screen and one ahead

// What a reduction depends on: the frame and the overview's size, not the levels or the look.
export function countsKey(p) {
  return JSON.stringify([p.fn, p.frame, p.sum ?? 1, p.esaf ?? null, p.xsize, p.ysize ?? null]);
}

async function fetchCounts(p, signal) {
  const params = {fn: p.fn, frame: p.frame, sum: p.sum, esaf: p.esaf, xsize: p.xsize, ysize: p.ysize};
  const [response] = await Promise.all([fetch(url("counts", params), {signal, credentials: "same-origin"}), loadLooks()]);
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    if (body && typeof body.error === "string") throw new ApiError(response.status, body.error, String(body.message ?? ""));
    throw new ApiError(response.status, "internal", `the web gateway answered HTTP ${response.status}`);
  }
  const reply = JSON.parse(response.headers.get("X-Pyis-Reply") ?? "{}");
  const layout = reply.meta?.counts;
  if (!layout) throw new ApiError(502, "internal", "the counts reply has no layout");
  return decodeCounts(await response.arrayBuffer(), layout);
}

export class CountsStore {
  constructor(onError) {
    this.onError = onError;
    this.entries = new Map(); // key -> {controller, promise, counts}
  }

  // Start fetching the counts of `params` (a frame and an overview size) unless held; keep
  // at most KEEP, dropping (and cancelling) the oldest.
  fetch(params) {
    const key = countsKey(params);
    const held = this.entries.get(key);
    if (held) return held.promise;
    const entry = {controller: new AbortController(), counts: null};
    entry.promise = fetchCounts(params, entry.controller.signal).then(
      (counts) => (entry.counts = counts),
      (err) => {
        if (this.entries.get(key) === entry) this.entries.delete(key);
        if (err.name !== "AbortError") this.onError(err);
        return null;
      },
    );
    this.entries.set(key, entry);
    while (this.entries.size > KEEP) this.drop(this.entries.keys().next().value);
    return entry.promise;
  }

  // The counts of `params` if they have arrived, else null (the change goes to the server).
  get(params) {
    return this.entries.get(countsKey(params))?.counts ?? null;
  }

  // Cancel every fetch but those of `keep` (params): a jump away from the frame ahead.
  keepOnly(...keep) {
    const wanted = new Set(keep.filter(Boolean).map(countsKey));
    for (const key of [...this.entries.keys()]) if (!wanted.has(key)) this.drop(key);
  }

  drop(key) {
    this.entries.get(key)?.controller.abort();
    this.entries.delete(key);
  }
}
