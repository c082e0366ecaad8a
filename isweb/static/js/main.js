// The viewer's state and controls; the URL hash (deeplink.js) never holds the session.

import {getImage} from "./api.js";
import {Browser} from "./browser.js";
import {CountsStore} from "./counts.js";
import {LOOKS, readHash, writeHash} from "./deeplink.js";
import {byId, clearError, showError} from "./dom.js";
import {Follow} from "./follow.js";
import {readLook, readSliders, showLevels, showLook} from "./levels.js";
import {adoptLink, showLink} from "./link.js";
import {canMap, mapCounts} from "./mapping.js";
import {cursor, showHeader, showRings, showTimings} from "./panels.js";
import {Prefetch} from "./prefetch.js";
import {frameAt, frameCount, showRange, stepFrom} from "./series.js";
import {expose, telemetry} from "./telemetry.js";
import {Viewer} from "./viewer.js";

const FOLLOW_PX = 1024; // a followed frame is shown from its JPEG alone until the stream pauses
const REAHEAD_MS = 300; // new levels: the frame ahead is asked for again once the slider rests
let reahead = null;
const state = {
  fn: null, frame: 1, contrast: null, wval: null, esaf: null, meta: null, series: null, levels: null,
  scale: "linear", colormap: "inverted",
};

const viewer = new Viewer(byId("map"), {
  onCursor: (x, y) => cursor(x, y, state),
  onPainted: (ms, how = "server") => {
    const decoded = how === "page" ? null : viewer.overview.decoded;
    telemetry.paints.push({action: telemetry.lastAction, ms, at: performance.now(), decoded, how});
    document.body.dataset.painted = String(telemetry.paints.length);
  },
  onError: showError,
});
const counts = new CountsStore(showError);
const prefetch = new Prefetch(counts);
expose({viewer, counts, prefetch, state, overviewParams, busy: () => reahead !== null});
const browser = new Browser({esaf: () => state.esaf, onOpen: (fn, frame) => open(fn, frame, true), onError: showError});

function step(delta) {
  const to = stepFrom(state, delta);
  if (to) open(to.fn, to.frame, false, true);
  return Boolean(to);
}

function jump(n) {
  const to = frameAt(state, n);
  if (to) open(to.fn, to.frame, false, true);
}

let generation = 0;

// `stepping`: a frame of the same series, so the tiles start at once, beside the overview
// request (their levels are the explicit ones, or the server's automatic rule for this frame).
async function open(fn, frame, fromBrowser = false, stepping = false) {
  if (follow.active) follow.stop(); // the user chose a frame: stop jumping to the newest
  clearTimeout(reahead);
  reahead = null;
  const mine = ++generation;
  const early = stepping && viewer.startTiles(viewParams(fn, frame));
  const params = {...viewParams(fn, frame), ...viewer.overviewSize()}; // a series keeps its size
  const ahead = prefetch.take(params); // the frame ahead, or a jump: cancelled
  counts.keepOnly(overviewParams(), overviewParams(fn, frame));
  telemetry.lastAction = telemetry.lastAction ?? "open";
  clearError();
  const dir = fn.includes("/") ? fn.slice(0, fn.lastIndexOf("/")) : "";
  if (!fromBrowser && browser.dir !== dir) await browser.load(dir);
  let reply = ahead && (await ahead);
  if (reply) telemetry.prefetched += 1;
  try {
    reply = reply || (await getImage("image", params));
  } catch (err) {
    if (mine === generation) showError(err);
    return;
  }
  if (mine !== generation) return; // a newer open (play, a click) won
  await display(reply, fn, frame, early);
}

// A frame's reply on screen: the state, the image, then the side panel. `pushed`: a followed
// frame, shown from its own JPEG (no overview fetched for it until the stream pauses).
async function display(reply, fn, frame, early, pushed = false) {
  const mine = generation;
  state.fn = fn;
  state.frame = frame;
  state.meta = reply.meta;
  state.series = browser.seriesOf(fn);
  state.levels = {black: reply.job.bval_used, white: reply.job.wval_used};
  const width = Number(reply.meta.x_pixels_in_detector);
  const height = Number(reply.meta.y_pixels_in_detector);
  // the picture first; the panels after it is on screen (filling them in meanwhile would hold
  // the main thread the decoded picture waits for)
  const shown = viewer.show(width, height, reply, viewParams(fn, frame), early, !pushed);
  drawOverlay();
  byId("title").textContent = frameCount(state) > 1 ? `${fn} #${frame}` : fn;
  await shown.catch(showError);
  if (mine !== generation) return;
  browser.mark(fn);
  writeHash(state);
  showLevels(state);
  showHeader(reply.meta);
  showTimings(reply.job.timings_ms);
  showRange(state);
  if (!pushed) afterShown();
}

// In the background once a frame is on screen: its counts, then the next frame and its counts
// (while playing, the frames ahead only: they pass too fast for a contrast change).
function afterShown() {
  if (!playing) counts.fetch(overviewParams());
  const next = stepFrom(state, 1);
  if (next) prefetch.start({...viewParams(next.fn, next.frame), ...viewer.overviewSize()}, !playing);
  else prefetch.cancel();
}

// Following: the pushed JPEG replaces the image (the previous frame's tiles go); the picture at
// the view's own resolution (the overview, tiles if zoomed in) comes once the stream pauses.
const follow = new Follow({
  target: () => {
    const s = state.series;
    if (s) return s.dir ? `${s.dir}/${s.template}` : s.template;
    if (state.fn && /_master\.h5$/.test(state.fn)) return state.fn;
    return browser.dir || null;
  },
  params: () => {
    const p = viewParams();
    return {xsize: FOLLOW_PX, esaf: p.esaf, contrast: p.contrast, wval: p.wval, scale: p.scale, colormap: p.colormap};
  },
  onFrame: (reply, fn, frame) => {
    ++generation; // an open still in flight is older than this frame
    prefetch.cancel();
    viewer.tiles?.remove();
    display(reply, fn, frame, true, true);
    const s = state.series;
    if (s && s.number > s.last) {
      s.last = s.number;
      showRange(state);
    }
    return s ? s.number : frame;
  },
  onQuiet: () => viewer.refresh(viewParams()).then((r) => r && counts.fetch(overviewParams())).catch(showError),
  onError: showError,
});

// What the overview and the tiles ask for (their sizes are the viewer's): explicit levels once
// the user set them, else none, and the server's automatic rule gives both the same levels.
function summed() {
  const k = Math.round(Number(byId("sum").value));
  return k > 1 ? Math.min(k, 100) : undefined;
}

function viewParams(fn = state.fn, frame = state.frame) {
  const explicit = state.contrast !== null;
  return {
    fn,
    frame,
    sum: summed(),
    esaf: state.esaf ?? undefined,
    contrast: explicit ? state.contrast : undefined,
    wval: explicit ? state.wval : undefined,
    scale: state.scale === LOOKS.scale[0] ? undefined : state.scale,
    colormap: state.colormap === LOOKS.colormap[0] ? undefined : state.colormap,
  };
}

function overviewParams(fn = state.fn, frame = state.frame) {
  return {...viewParams(fn, frame), ...viewer.overviewSize()};
}

// New levels, scale or colour map. With the overview's counts held: painted in the page at once
// (tiles, if zoomed in, from the server); else the overview is asked for again.
function redraw() {
  const held = counts.get(overviewParams());
  const levels = state.contrast !== null ? {contrast: state.contrast, wval: state.wval} : null;
  if (held && canMap(held, levels)) {
    telemetry.pageMapped += 1;
    const {scale, colormap} = state;
    viewer.paintCounts(held, (rgba) => mapCounts(held, levels, scale, colormap, rgba), viewParams());
  } else {
    telemetry.fallbacks += 1; // the counts are not here yet
    viewer.refresh(viewParams()).catch(showError);
  }
  writeHash(state); // after the request left: chromium fetches the favicon again on a new URL
  clearTimeout(reahead);
  reahead = null;
  if (!prefetch.params) return;
  reahead = setTimeout(() => { reahead = null; afterShown(); }, REAHEAD_MS); // the frame ahead, redrawn
}

function changeLevels() {
  if (!state.fn) return;
  const {contrast, wval} = readSliders();
  if (contrast === state.contrast && wval === state.wval) return; // a repeated event: no request
  telemetry.lastAction = "contrast";
  state.contrast = contrast;
  state.wval = wval;
  state.levels = {black: state.contrast, white: state.wval};
  showLevels(state);
  redraw();
  if (follow.active) follow.start(); // newer frames with these levels
}

function changeLook() {
  telemetry.lastAction = "look";
  Object.assign(state, readLook());
  if (state.fn) redraw();
  if (follow.active) follow.start(); // newer frames in this look
}

function drawOverlay() {
  if (state.meta) showRings(viewer, state.meta);
}

let playing = null;

function play() {
  if (playing) {
    clearInterval(playing);
    playing = null;
    byId("play").textContent = "Play";
    if (state.fn) afterShown(); // the counts of the frame it stopped on
    return;
  }
  const fps = Math.min(30, Math.max(0.2, Number(byId("rate").value) || 2));
  byId("play").textContent = "Stop";
  playing = setInterval(() => {
    telemetry.lastAction = "play";
    if (!step(1)) play();
  }, 1000 / fps);
}

function wire() {
  byId("prev").addEventListener("click", () => { telemetry.lastAction = "prev"; step(-1); });
  byId("next").addEventListener("click", () => { telemetry.lastAction = "next"; step(1); });
  byId("jump").addEventListener("change", () => { telemetry.lastAction = "jump"; jump(Number(byId("jump").value)); });
  byId("play").addEventListener("click", play);
  byId("contrast").addEventListener("change", changeLevels);
  byId("white").addEventListener("change", changeLevels);
  byId("scale").addEventListener("change", changeLook);
  byId("colormap").addEventListener("change", changeLook);
  byId("auto").addEventListener("click", () => {
    state.contrast = null;
    state.wval = null;
    telemetry.lastAction = "auto";
    if (state.fn) open(state.fn, state.frame);
  });
  for (const id of ["rings", "show-rings", "show-beam"]) byId(id).addEventListener("change", drawOverlay);
  byId("sum").addEventListener("change", () => { if (state.fn) open(state.fn, state.frame); });
  window.addEventListener("hashchange", start);
}

let link = null; // a signed link's {esaf, path, dir} (link.js): the view stays inside it

function start() {
  const h = readHash();
  state.esaf = h.esaf ?? (link?.esaf || null);
  state.contrast = h.contrast;
  state.wval = h.wval;
  state.scale = h.scale;
  state.colormap = h.colormap;
  showLook(state);
  if (h.fn && (h.fn !== state.fn || h.frame !== state.frame)) open(h.fn, h.frame);
  else if (!h.fn) (link ? showLink(link, browser, open) : browser.load(""));
}

async function boot() {
  try {
    link = await adoptLink();
  } catch (err) {
    showError(err); // expired or revoked: said in the page, nothing else is asked
    return;
  }
  if (link) browser.root = link.dir;
  wire();
  start();
}

boot();
