// Serves the SDK's sample app for the browser tests: sdk/dist and sdk/examples on 127.0.0.1, as
// `python3 -m http.server` in sdk/ would (the page imports ../../dist/allpeers.js).
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize, resolve, sep } from "node:path";
import { HERE, onCleanup } from "./harness.mjs";

const SDK = resolve(HERE, "../../sdk");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".map": "application/json" };

/** Starts the server (stopped by cleanupAll); answers the board's URL. */
export async function serveSample() {
  if (!existsSync(join(SDK, "dist/allpeers.js"))) throw new Error("no sdk/dist/allpeers.js: run npm run build in sdk/");
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname));
    const file = join(SDK, path.endsWith("/") ? join(path, "index.html") : path);
    const allowed = [join(SDK, "dist") + sep, join(SDK, "examples") + sep].some((dir) => file.startsWith(dir));
    if (!allowed || !existsSync(file)) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": `${TYPES[extname(file)] ?? "application/octet-stream"}; charset=utf-8` });
    res.end(readFileSync(file));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  onCleanup(() => new Promise((r) => server.close(r)));
  return `http://127.0.0.1:${server.address().port}/examples/board/`;
}
