/**
 * Builds lib/native, the addon that runs the wasm engine's matrix products on OpenBLAS, with the
 * node-gyp that npm provides to its scripts (run it through `npm run build`).
 *
 * Without the addon modarch still works, on tfjs's own wasm products (about 2-3x slower per
 * training step), so a failed build only warns. Set MODARCH_REQUIRE_BLAS=1 to make it an error.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = path.join(root, 'lib', 'native');
const addon = path.join(nativeDir, 'build', 'Release', 'modarch_blas.node');
const sources = ['blas.c', 'binding.gyp'].map((name) => path.join(nativeDir, name));
const required = process.env.MODARCH_REQUIRE_BLAS === '1';

function modified(file) {
  return fs.statSync(file).mtimeMs;
}

if (process.env.MODARCH_BLAS === '0') {
  console.log('modarch: MODARCH_BLAS=0, the OpenBLAS addon is not built.');
  process.exit(0);
}

if (fs.existsSync(addon) && sources.every((source) => modified(source) <= modified(addon))) {
  process.exit(0);
}

const result = spawnSync('node-gyp', ['rebuild', `--directory=${nativeDir}`], { encoding: 'utf8' });
if (result.status === 0) {
  console.log(`modarch: built the OpenBLAS addon (${path.relative(root, addon)}).`);
  process.exit(0);
}

const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n');
const cause = result.error
  ? `node-gyp could not start (${result.error.message}); run this through \`npm run build\`, which puts npm's node-gyp on PATH`
  : `node-gyp exited with status ${result.status}; its last lines:\n${output.slice(-12).join('\n')}`;
console.error(
  `modarch: the OpenBLAS addon was not built: ${cause}\n` +
    'Training still works, on tfjs\'s own wasm products, about 2-3x slower per step. To build it, install ' +
    'OpenBLAS with its headers (Debian and Ubuntu: `apt-get install libopenblas-dev`) and run `npm run build`.',
);
process.exit(required ? 1 : 0);
