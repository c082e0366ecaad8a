// What the browser tests and bench/web.py read from the page (window.pyisViewer): each paint
// and how it was drawn, the view, and the state of the counts and of the frame ahead.

import {url} from "./api.js";

export const telemetry = {
  paints: [],
  lastAction: null,
  pageMapped: 0,
  fallbacks: 0,
  prefetched: 0,
  listingsDropped: 0, // folder listings that came back after a newer one was asked for
};
window.pyisViewer = telemetry;

// `overviewParams(fn?, frame?)`: the overview call's parameters; `busy()`: a redraw of the frame
// ahead is pending.
export function expose({viewer, counts, prefetch, state, overviewParams, busy}) {
  telemetry.view = () => ({zoom: viewer.map.getZoom(), native: viewer.native});
  telemetry.toPage = (x, y) => viewer.toPage(x, y);
  telemetry.zoomTo = (x, y, zoom) => {
    telemetry.lastAction = "pan";
    viewer.map.setView(viewer.toLatLng(x, y), zoom, {animate: false});
  };
  // the overview's counts: whether they are held, and a fetch of them for a frame
  telemetry.countsReady = () => Boolean(state.fn && counts.get(overviewParams()));
  telemetry.loadCounts = (fn, frame = 1) => counts.fetch(overviewParams(fn, frame));
  // the overview call a change would make without counts, and whether the frame ahead arrived
  telemetry.overviewUrl = () => url("image", overviewParams());
  telemetry.aheadReady = () => Boolean(prefetch.params && counts.get(prefetch.params));
  telemetry.idle = () => telemetry.countsReady() && !busy() && (!prefetch.params || telemetry.aheadReady());
  telemetry.overviewPixels = () => {
    const canvas = viewer.overview.painted;
    if (!canvas) return null;
    const {data} = canvas.getContext("2d", {willReadFrequently: true}).getImageData(0, 0, canvas.width, canvas.height);
    let text = "";
    for (let i = 0; i < data.length; i += 0x8000) text += String.fromCharCode(...data.subarray(i, i + 0x8000));
    return {width: canvas.width, height: canvas.height, rgba: btoa(text)};
  };
}
