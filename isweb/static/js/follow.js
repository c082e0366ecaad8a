// "Follow": keep the newest frame of the collection on screen. is-web pushes each newer frame
// as a Server-Sent Event (/api/follow; one long-poll per series, shared by every tab); read with
// fetch rather than EventSource, so a refusal's sentence reaches the page and a stop aborts it.

import {ApiError, url} from "./api.js";
import {byId} from "./dom.js";

const QUIET_MS = 700; // no newer frame for this long: the full-resolution tiles are fetched
const RECONNECT_MS = 2000; // the stream ended (gateway restart, network): open it again
const SEPARATOR = /\r\n\r\n|\n\n|\r\r/;

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") event = value;
    else if (name === "data") data.push(value);
  }
  return {event, data: data.join("\n")};
}

async function refusal(response) {
  try {
    const body = await response.json();
    return new ApiError(response.status, String(body.error), String(body.message ?? ""));
  } catch {
    return new ApiError(response.status, "internal", `the web gateway answered HTTP ${response.status}`);
  }
}

function jpegBlob(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return new Blob([bytes], {type: "image/jpeg"});
}

export class Follow {
  // target(): what to follow (a directory, a series template or an Eiger master), or null;
  // params(): the rendering fields; onFrame(reply, fn, frame) shows a frame and returns the
  // number to show for it; onQuiet() when no newer frame came for a while.
  constructor({target, params, onFrame, onQuiet, onError}) {
    Object.assign(this, {target, params, onFrame, onQuiet, onError});
    this.box = byId("follow");
    this.status = byId("follow-status");
    this.controller = null;
    this.shown = null; // {number, seq, age_ms, at}
    this.box.addEventListener("change", () => (this.box.checked ? this.start() : this.stop()));
  }

  get active() {
    return this.controller !== null;
  }

  start() {
    const fn = this.target();
    this.stop();
    if (!fn) {
      this.onError(new ApiError(400, "bad_request", "open a folder or a series to follow it"));
      return;
    }
    const controller = (this.controller = new AbortController());
    this.box.checked = true;
    this.status.textContent = "waiting for a new frame…";
    this.ticker = setInterval(() => this.showAge(), 250);
    this.run(fn, {...this.params(), fn}, controller);
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.shown = null;
    clearInterval(this.ticker);
    clearTimeout(this.quiet);
    clearTimeout(this.again);
    this.box.checked = false;
    this.status.textContent = "";
  }

  async run(fn, params, controller) {
    try {
      const response = await fetch(url("follow", params), {signal: controller.signal, credentials: "same-origin"});
      if (!response.ok) throw await refusal(response);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += value;
        for (let cut = SEPARATOR.exec(buffer); cut; cut = SEPARATOR.exec(buffer)) {
          const block = buffer.slice(0, cut.index);
          buffer = buffer.slice(cut.index + cut[0].length);
          if (!this.dispatch(parseEvent(block), controller)) return;
        }
      }
    } catch (err) {
      if (controller.signal.aborted) return;
      if (err instanceof ApiError) {
        this.onError(err);
        this.stop();
        return;
      }
    }
    if (controller !== this.controller) return;
    this.status.textContent = "the stream ended; reconnecting…";
    this.again = setTimeout(() => controller === this.controller && this.run(fn, params, controller), RECONNECT_MS);
  }

  // One event; false once the stream is over (a refusal, or a newer start()).
  dispatch({event, data}, controller) {
    if (controller !== this.controller) return false;
    if (event === "refusal") {
      const body = JSON.parse(data);
      this.onError(new ApiError(403, String(body.error), String(body.message ?? "")));
      this.stop();
      return false;
    }
    if (event === "retry") {
      const body = JSON.parse(data);
      this.status.textContent = `${body.error}: retrying`;
      return true;
    }
    if (event !== "frame") return true;
    const frame = JSON.parse(data);
    const number = this.onFrame({blob: jpegBlob(frame.jpeg), job: frame.job ?? {}, meta: frame.meta ?? {}}, frame.fn, frame.frame);
    this.shown = {number, seq: frame.seq, fn: frame.fn, age_ms: Number(frame.age_ms) || 0, at: performance.now()};
    this.status.dataset.seq = String(frame.seq);
    this.status.dataset.fn = frame.fn;
    this.showAge();
    clearTimeout(this.quiet);
    this.quiet = setTimeout(() => controller === this.controller && this.onQuiet(), QUIET_MS);
    return true;
  }

  showAge() {
    if (!this.shown || !this.active) return;
    const age = (this.shown.age_ms + performance.now() - this.shown.at) / 1000;
    this.status.textContent = `frame ${this.shown.number} · ${age < 10 ? age.toFixed(1) : Math.round(age)} s old`;
  }
}
