// Writes the ES module bundle of herald-client that pages load without a build step:
// examples/dashboard/herald-client.js (embedded in the demo binary, served by examples/node).
//   node scripts/bundle.mjs           write it
//   node scripts/bundle.mjs --check   exit 1 if the committed file is stale
import { build } from 'esbuild';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const BUNDLE = join(root, '..', '..', 'examples', 'dashboard', 'herald-client.js');

export async function bundle() {
  const result = await build({
    entryPoints: [join(root, 'src', 'index.ts')],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2020',
    legalComments: 'none',
    write: false,
  });
  const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
  const banner = `// herald-client ${version}: generated from bindings/browser/src by \`node scripts/bundle.mjs\`; do not edit.\n`;
  return banner + result.outputFiles[0].text;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const fresh = await bundle();
  if (process.argv.includes('--check')) {
    let committed = '';
    try {
      committed = readFileSync(BUNDLE, 'utf8');
    } catch {}
    if (committed !== fresh) {
      console.error(`${BUNDLE} is stale: run \`node scripts/bundle.mjs\` in bindings/browser`);
      process.exit(1);
    }
  } else {
    writeFileSync(BUNDLE, fresh);
    console.log(`wrote ${BUNDLE} (${fresh.length} bytes)`);
  }
}
