// One frame ahead: when a frame is shown, the next one's overview (with the same levels, look
// and size) and then its counts are fetched, so "next" paints what has already arrived. At most
// one frame ahead; a jump elsewhere, new levels or a new look cancel it.

import {getImage} from "./api.js";

export class Prefetch {
  constructor(counts) {
    this.counts = counts; // the CountsStore the next frame's counts go to
    this.ahead = null; // {key, controller, promise}
  }

  // Fetch the overview for `params` (image parameters and size) unless it is what is ahead,
  // then (`withCounts`) its counts.
  start(params, withCounts = true) {
    const key = JSON.stringify(params);
    if (this.ahead?.key === key) {
      if (withCounts) this.ahead.promise.then((reply) => reply && this.counts.fetch(params));
      return;
    }
    this.cancel();
    const controller = new AbortController();
    const promise = getImage("image", params, controller.signal).then(
      (reply) => {
        if (withCounts) this.counts.fetch(params);
        return reply;
      },
      () => null, // the open itself will ask again and show the error
    );
    this.ahead = {key, controller, promise, params};
  }

  // The prefetched reply's promise for `params` (taken: fetched once), or null; anything else
  // ahead is cancelled.
  take(params) {
    const ahead = this.ahead;
    if (ahead && ahead.key === JSON.stringify(params)) {
      this.ahead = null;
      return ahead.promise;
    }
    this.cancel();
    return null;
  }

  get params() {
    return this.ahead?.params ?? null;
  }

  cancel() {
    this.ahead?.controller.abort();
    this.ahead = null;
  }
}
