// A real Foxglove WebSocket client for the tests: @foxglove/ws-protocol's FoxgloveClient on Node's WebSocket
// (node --experimental-websocket), offering exactly the subprotocols given, as a viewer does:
//   node --experimental-websocket client.cjs <url> <subprotocol,subprotocol> <topic,topic,...> <stamp ns> <timeout ms>
// It subscribes to the given topics once they are advertised, prints {"event": "subscribed"} and then the first
// message of every topic whose log time is <stamp ns> as JSON lines (payload and schema base64, for the test to
// decode), and exits 0 when it has all of them; 2 when the connection fails or closes first, 3 on timeout.
// The packages come from test/ros/foxglove_js/vendor/ (installed offline by the test; NODE_PATH points at them).
"use strict";
const { FoxgloveClient } = require("@foxglove/ws-protocol");

const [url, offers, topicList, stampText, timeoutText] = process.argv.slice(2);
const topics = new Set(topicList.split(","));
const stamp = BigInt(stampText);
const fs = require("fs");
// Synchronous: process.exit() would cut an asynchronous write to the pipe (a message line is megabytes).
const print = (obj) => fs.writeSync(1, JSON.stringify(obj) + "\n");

const ws = new WebSocket(url, offers.split(","));
const client = new FoxgloveClient({ ws });
const channels = new Map(); // subscription id -> channel
const got = new Map(); // topic -> message
let done = false;

const finish = (code) => {
  if (done) return;
  done = true;
  try { client.close(); } catch (_) { /* already closed */ }
  process.exit(code);
};

setTimeout(() => { print({ event: "timeout", received: [...got.keys()] }); finish(3); }, Number(timeoutText));
let opened = false;
client.on("open", () => { opened = true; print({ event: "open", protocol: ws.protocol }); });
client.on("error", (err) => {
  print({ event: "error", message: String(err && err.message ? err.message : err) });
  if (!opened) finish(2); // the handshake failed (e.g. HTTP 400)
});
client.on("close", (ev) => { print({ event: "close", code: ev.code }); finish(2); });
client.on("serverInfo", (info) => print({ event: "serverInfo", name: info.name }));
client.on("advertise", (advertised) => {
  for (const channel of advertised) {
    if (topics.has(channel.topic)) {
      channels.set(client.subscribe(channel.id), channel);
    }
  }
  if ([...channels.values()].length === topics.size) print({ event: "subscribed" });
});
client.on("message", ({ subscriptionId, timestamp, data }) => {
  const channel = channels.get(subscriptionId);
  if (!channel || timestamp !== stamp || got.has(channel.topic)) return;
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  got.set(channel.topic, true);
  print({ event: "message", topic: channel.topic, schemaName: channel.schemaName, encoding: channel.encoding,
          logTime: timestamp.toString(), schema: channel.schema, data: bytes.toString("base64") });
  if (got.size === topics.size) finish(0);
});
