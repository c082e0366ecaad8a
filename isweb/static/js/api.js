// One fetch per API call; a refusal becomes an ApiError carrying the image server's sentence.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  return q.toString();
}

async function refusal(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (body && typeof body.error === "string") {
    return new ApiError(response.status, body.error, String(body.message ?? ""));
  }
  return new ApiError(response.status, "internal", `the web gateway answered HTTP ${response.status}`);
}

export function url(name, params) {
  return `/api/${name}?${query(params)}`;
}

export async function getJSON(name, params, signal) {
  const response = await fetch(url(name, params), {signal, credentials: "same-origin"});
  if (!response.ok) throw await refusal(response);
  return response.json();
}

// A JPEG and the reply beside it (job with the levels used and timings_ms, meta).
export async function getImage(name, params, signal) {
  const response = await fetch(url(name, params), {signal, credentials: "same-origin"});
  if (!response.ok) throw await refusal(response);
  const blob = await response.blob();
  let reply = {job: {}, meta: {}};
  const header = response.headers.get("X-Pyis-Reply");
  if (header) reply = JSON.parse(header);
  return {blob, job: reply.job ?? {}, meta: reply.meta ?? {}};
}
