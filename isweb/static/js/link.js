// Signed viewer links (`is-authsign link`): the token rides in the URL's #fragment, which the
// browser never sends. It is taken out of the address bar (and the history entry) at once and
// posted to the gateway in a body; the gateway makes the link's session this browser's (an
// HttpOnly cookie) once the image server accepted it, and says in a readable cookie beside it
// (`pyis_link`, gone with a login or logout) what the link shows, so a reload stays inside it.

import {ApiError} from "./api.js";

const COOKIE = "pyis_link";

export class LinkError extends ApiError {}

// The link this tab was opened with: {esaf, path, dir}, or null for an ordinary login.
export async function adoptLink() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!token) return current();
  history.replaceState(null, "", location.pathname + location.search);
  const response = await fetch("/link", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token}),
    credentials: "same-origin",
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const why = body && typeof body.message === "string" ? body.message : `HTTP ${response.status}`;
    throw new LinkError(response.status, body?.error ?? "internal", `this link no longer works: ${why}`);
  }
  return body;
}

export function current() {
  const pair = document.cookie.split("; ").find((c) => c.startsWith(`${COOKIE}=`));
  try {
    return pair ? JSON.parse(decodeURIComponent(pair.slice(COOKIE.length + 1))) : null;
  } catch {
    return null;
  }
}

// A directory link shows its directory; a file or series link (the server lists only the
// names it covers) opens its first entry too.
export async function showLink(link, browser, open) {
  await browser.load(link.dir);
  if (link.path.endsWith("/")) return;
  const first = browser.entries.find((e) => e.kind !== "dir" && e.kind !== "other");
  if (first) open(link.dir ? `${link.dir}/${first.name}` : first.name, 1, true);
}
