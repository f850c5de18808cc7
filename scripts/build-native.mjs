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
// node-gyp's output ends with many "gyp ERR!" lines of its own, so show the compiler's or
// linker's error lines, which name the cause.
const compilerErrors = output.filter((line) => !line.startsWith('gyp ') && /error|cannot find|undefined reference|no such file/i.test(line));
const details = compilerErrors.length > 0 ? compilerErrors.slice(0, 10) : output.slice(-12);
const cause = result.error
  ? `node-gyp could not start (${result.error.message}); run this through \`npm run build\`, which puts npm's node-gyp on PATH`
  : `node-gyp exited with status ${result.status}:\n${details.join('\n')}`;
const advice =
  'Check that OpenBLAS and its headers are installed (Debian and Ubuntu: `apt-get install libopenblas-dev`), then run `npm run build`.';
const consequence = required
  ? 'MODARCH_REQUIRE_BLAS=1 makes this an error.'
  : "Training still works, on tfjs's own wasm products, about 2-3x slower per step.";
console.error(`modarch: the OpenBLAS addon was not built: ${cause}\n${consequence} ${advice}`);
process.exit(required ? 1 : 0);
