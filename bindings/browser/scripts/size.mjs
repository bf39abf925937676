// Prints the minified + gzipped size of the core client (src/index.ts bundled with
// esbuild, as an app would ship it) and fails above the budget (HERALD_CLIENT_SIZE_BUDGET bytes, default 6144).
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const budget = Number(process.env.HERALD_CLIENT_SIZE_BUDGET ?? 6144);
const result = await build({
  entryPoints: [join(root, 'src', 'index.ts')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  write: false,
});
const code = result.outputFiles[0].contents;
const gz = gzipSync(code, { level: 9 }).length;
console.log(`herald-client core: ${code.length} bytes minified, ${gz} bytes minified+gzipped (budget ${budget})`);
if (gz > budget) {
  console.error(`over budget by ${gz - budget} bytes`);
  process.exit(1);
}
