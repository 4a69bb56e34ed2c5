// A misbehaving native host for tests. argv[2] says how it misbehaves:
//   garbage   - a frame that is not JSON (the browser drops the port)
//   not-rpc   - valid JSON that is not JSON-RPC
//   bad-hello - answers hello with a result of the wrong shape
import { stdin, stdout } from "node:process";

const mode = process.argv[2];

function frame(text) {
  const body = Buffer.from(text, "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length);
  stdout.write(Buffer.concat([len, body]));
}

let buffered = Buffer.alloc(0);
stdin.on("data", (d) => {
  buffered = Buffer.concat([buffered, d]);
  while (buffered.length >= 4) {
    const n = buffered.readUInt32LE(0);
    if (buffered.length < 4 + n) break;
    const msg = JSON.parse(buffered.subarray(4, 4 + n).toString("utf8"));
    buffered = buffered.subarray(4 + n);
    if (mode === "garbage") frame("this is not json {");
    else if (mode === "not-rpc") frame(JSON.stringify({ hello: "world", id: msg.id }));
    else if (mode === "bad-hello") frame(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { server: 42 } }));
  }
});
stdin.on("end", () => process.exit(0));
