#!/usr/bin/env node
'use strict';

// Builds the native addon with cargo and installs it as ./herald.node.
//
//   node scripts/build.js            release build (what `npm install` / `npm run build` do)
//   node scripts/build.js --debug    debug build
//   npx herald-build-addon           in an app: builds the installed package's addon from
//                                    the sources it carries (where no prebuilt one exists)
//
// Environment: CARGO (cargo binary, default "cargo"), CARGO_TARGET_DIR (honoured by cargo),
// HERALD_NODE_SKIP_BUILD=1 (do nothing; e.g. when HERALD_NODE_ADDON points at a prebuilt addon).

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const pkgDir = path.resolve(__dirname, '..');
const dest = path.join(pkgDir, 'herald.node');

/**
 * Says what the build is doing. npm hides install scripts' output (unless
 * --foreground-scripts), so the line also goes to the terminal when there is one.
 */
function progress(message) {
  const line = `herald: ${message}\n`;
  process.stderr.write(line);
  if (!process.stderr.isTTY) {
    try {
      fs.writeFileSync('/dev/tty', line);
    } catch {
      // no terminal (CI, a pipe): stderr is enough
    }
  }
}

function fail(message) {
  console.error(`herald: ${message}`);
  process.exit(1);
}

if (process.env.HERALD_NODE_SKIP_BUILD === '1') {
  console.error('herald: HERALD_NODE_SKIP_BUILD=1, not building the native addon');
  process.exit(0);
}

// Sources: the published package carries the core and the binding's crate under
// core/ (a two-member workspace); in a checkout the crate is a member of the Herald
// repository's workspace and depends on the core by path (npm links a local folder
// dependency, so `npm install ./bindings/node` builds in place).
const packagedManifest = path.join(pkgDir, 'core', 'node', 'Cargo.toml');
const manifest = fs.existsSync(packagedManifest) ? packagedManifest : path.join(pkgDir, 'Cargo.toml');
if (manifest !== packagedManifest && !fs.existsSync(path.join(pkgDir, '..', '..', 'Cargo.toml'))) {
  fail(
    `cannot build: ${pkgDir} is neither the published package (with its core/ sources) nor inside a ` +
      'Herald repository checkout (was the package copied, e.g. with --install-links?). Install it from the ' +
      'checkout, or set HERALD_NODE_SKIP_BUILD=1 and HERALD_NODE_ADDON=/path/to/herald.node.',
  );
}

const release = !process.argv.includes('--debug');
const cargo = process.env.CARGO || 'cargo';
const args = [
  'build',
  '-p',
  'herald-node',
  '--manifest-path',
  manifest,
  '--message-format=json-render-diagnostics',
];
if (release) args.push('--release');

progress(
  `compiling the native addon from source (${release ? 'release' : 'debug'}); this usually takes ` +
    `${release ? '2 to 4' : '1 to 3'} minutes on 2 cores (npm shows cargo's progress with --foreground-scripts)`,
);
console.error(`herald: ${cargo} ${args.join(' ')}`);
const started = Date.now();
const run = spawnSync(cargo, args, {
  cwd: pkgDir,
  stdio: ['ignore', 'pipe', 'inherit'], // cargo's progress and diagnostics go straight to stderr
  encoding: 'utf8',
  maxBuffer: 256 * 1024 * 1024,
});
if (run.error) {
  fail(
    run.error.code === 'ENOENT'
      ? `\`${cargo}\` not found; install Rust (https://rustup.rs) to build the native addon`
      : `could not run ${cargo}: ${run.error.message}`,
  );
}
if (run.status !== 0) fail(`cargo build failed (exit status ${run.status})`);

// Find the cdylib cargo produced (its name and directory depend on the
// platform and on CARGO_TARGET_DIR), from cargo's JSON messages.
let artifact = null;
for (const line of run.stdout.split('\n')) {
  if (!line.startsWith('{')) continue;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    continue;
  }
  if (
    msg.reason === 'compiler-artifact' &&
    msg.target &&
    msg.target.name === 'herald_node' &&
    msg.target.kind.includes('cdylib')
  ) {
    artifact = msg.filenames.find((f) => /\.(so|dylib|dll)$/.test(f)) || null;
  }
}
if (!artifact) fail('cargo did not report the herald_node cdylib');

// Copy then rename, so a process that has the previous addon loaded keeps a
// valid mapping instead of seeing its file rewritten in place.
const tmp = `${dest}.${process.pid}.tmp`;
fs.copyFileSync(artifact, tmp);
fs.renameSync(tmp, dest);
progress(`addon compiled in ${Math.round((Date.now() - started) / 1000)} s`);
console.error(`herald: installed ${path.relative(process.cwd(), dest) || dest} (from ${artifact})`);
