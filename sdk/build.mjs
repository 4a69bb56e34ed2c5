// Builds the SDK: dist/allpeers.js (one ESM file, for bundlers and for a plain
// <script type="module">) and its declarations (dist/*.d.ts, from tsc).
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
rmSync(join(root, "dist"), { recursive: true, force: true });
await build({
  entryPoints: [join(root, "src/allpeers.ts")],
  outfile: join(root, "dist/allpeers.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  platform: "neutral",
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
});
execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", join(root, "tsconfig.json")], {
  stdio: "inherit",
});
