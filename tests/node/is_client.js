// One request to the image server, exactly as a web front-end's is.js sends it: a zeromq v6
// Request socket, one JSON frame out, the reply frames back. Prints a JSON summary on stdout
// for tests/test_node.py; exits 3 when no reply comes within the timeout (receiveTimeout), so
// a hung server fails the test instead of hanging it.
//
//   node is_client.js ENDPOINT REQUEST_JSON [JPEG_OUT] [TIMEOUT_MS]
"use strict";

const fs = require("fs");
const zmq = require("zeromq");

const EXIT_USAGE = 2;
const EXIT_TIMEOUT = 3;

function parseJson(buf) {
  try {
    return JSON.parse(buf.toString("utf8"));
  } catch (err) {
    return { unparsable: String(err) };
  }
}

function summarize(frames, jpegOut) {
  const summary = {
    frames: frames.length,
    first_frame_length: frames[0].length,
    error: null,
    job: null,
    meta: null,
    jpeg_length: null,
    jpeg_head: null,
  };
  if (frames[0].length) {
    summary.error = frames[0].toString("utf8"); // "not_found: ..." etc., one frame
    return summary;
  }
  summary.job = parseJson(frames[1]);
  summary.meta = frames.length > 2 ? parseJson(frames[2]) : null;
  if (frames.length > 3) {
    const jpeg = frames[3];
    summary.jpeg_length = jpeg.length;
    summary.jpeg_head = jpeg.subarray(0, 4).toString("hex");
    if (jpegOut) fs.writeFileSync(jpegOut, jpeg);
  }
  return summary;
}

async function main(argv) {
  const [endpoint, requestJson, jpegOut, timeoutArg] = argv;
  if (!endpoint || !requestJson) {
    process.stderr.write("usage: node is_client.js ENDPOINT REQUEST_JSON [JPEG_OUT] [TIMEOUT_MS]\n");
    return EXIT_USAGE;
  }
  const timeoutMs = Number(timeoutArg || 30000);
  const sock = new zmq.Request({ receiveTimeout: timeoutMs, sendTimeout: timeoutMs, linger: 0 });
  sock.connect(endpoint);
  try {
    await sock.send(requestJson);
    const frames = await sock.receive();
    process.stdout.write(JSON.stringify(summarize(frames, jpegOut)) + "\n");
    return 0;
  } catch (err) {
    if (err.code === "EAGAIN") {
      process.stderr.write(`no reply from ${endpoint} within ${timeoutMs} ms\n`);
      return EXIT_TIMEOUT;
    }
    throw err;
  } finally {
    sock.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`is_client.js: ${err.stack || err}\n`);
    process.exit(1);
  },
);
