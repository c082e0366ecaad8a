// The directory and series browser: one `list` call per page; names shown as text only.

import {getJSON} from "./api.js";
import {byId, clear, el} from "./dom.js";
import {telemetry} from "./telemetry.js";

const PAGE = 200;

function describe(entry) {
  if (entry.kind === "series") return `${entry.template}  ${entry.first}–${entry.last} (${entry.count})`;
  if (entry.kind === "hdf5") return entry.frames ? `${entry.name}  (${entry.frames} frames)` : entry.name;
  return entry.name;
}

function join(dir, name) {
  return dir ? `${dir}/${name}` : name;
}

export class Browser {
  constructor({esaf, onOpen, onError}) {
    this.esaf = esaf;
    this.onOpen = onOpen;
    this.onError = onError;
    this.dir = "";
    this.root = ""; // a signed link's directory: "home" and the crumbs start there
    this.entries = [];
    this.asked = 0; // the latest folder asked for: a slower reply for an earlier one is dropped
    byId("more").addEventListener("click", () => this.load(this.dir, this.entries.length));
  }

  // The series (template, first, last) holding `fn`, from the listing of its directory.
  seriesOf(fn) {
    const name = fn.split("/").pop();
    for (const e of this.entries) {
      if (e.kind !== "series") continue;
      const m = /^(.*?)(#+)(\..+)$/.exec(e.template);
      if (!m) continue;
      const re = new RegExp(`^${m[1].replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(\\d{${m[2].length}})${m[3].replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
      const hit = re.exec(name);
      if (hit) return {dir: this.dir, template: e.template, first: e.first, last: e.last, number: Number(hit[1])};
    }
    return null;
  }

  async load(dir, offset = 0) {
    // Listings run concurrently in the worker and can come back in any order: "home", then a
    // folder clicked at once, must end on the folder, not on whichever reply came last.
    const ticket = offset === 0 ? ++this.asked : this.asked;
    let reply;
    try {
      reply = await getJSON("list", {fn: dir, offset, limit: PAGE, esaf: this.esaf()});
    } catch (err) {
      if (ticket === this.asked) this.onError(err);
      return;
    }
    if (ticket !== this.asked) {
      telemetry.listingsDropped += 1;
      return;
    }
    const listing = reply.meta;
    if (offset === 0) {
      this.entries = [];
      clear(byId("entries"));
    }
    this.dir = listing.dir;
    this.entries.push(...listing.entries);
    this.crumbs(listing.dir);
    const list = byId("entries");
    for (const entry of listing.entries) list.appendChild(this.item(entry));
    const more = byId("more");
    more.hidden = this.entries.length >= listing.total;
  }

  crumbs(dir) {
    const bar = byId("crumbs");
    clear(bar);
    const parts = dir ? dir.split("/") : [];
    const home = el("button", "home");
    home.addEventListener("click", () => this.load(this.root));
    bar.appendChild(home);
    const below = this.root ? this.root.split("/").length : 0;
    parts.forEach((part, i) => {
      if (i < below) return;
      bar.appendChild(document.createTextNode(" / "));
      const b = el("button", part);
      b.addEventListener("click", () => this.load(parts.slice(0, i + 1).join("/")));
      bar.appendChild(b);
    });
  }

  item(entry) {
    const li = el("li", null, entry.kind);
    const button = el("button", describe(entry));
    button.title = entry.error ?? describe(entry);
    const path = join(this.dir, entry.name);
    button.dataset.path = path;
    if (entry.kind === "dir") {
      button.addEventListener("click", () => this.load(path));
    } else if (entry.kind !== "other") {
      button.addEventListener("click", () => this.onOpen(path, 1));
    }
    li.appendChild(button);
    return li;
  }

  mark(fn) {
    for (const b of byId("entries").querySelectorAll("button")) {
      b.classList.toggle("current", b.dataset.path === fn);
    }
  }
}
