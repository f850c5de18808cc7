import * as tf from '@tensorflow/tfjs';
import { blasStatus, installBlasProducts } from './blas';
import { requireChoice } from './errors';

/** Names of the tfjs backends modarch can run on, fastest first. */
export const ENGINES = ['tensorflow', 'wasm', 'cpu'] as const;
export type Engine = (typeof ENGINES)[number];

/** Environment variable that forces one engine, for example `MODARCH_ENGINE=cpu`. */
export const ENGINE_VARIABLE = 'MODARCH_ENGINE';

let activeEngine: Engine | undefined;
let pending: Promise<Engine> | undefined;

/**
 * Selects the tfjs backend once per process and logs it to stderr. Order: the engine named by
 * MODARCH_ENGINE, else `tensorflow` (the native @tensorflow/tfjs-node) when it loads, else
 * `wasm`, else `cpu`. A forced engine that cannot start raises instead of falling back.
 */
export function initEngine(forced: string | undefined = process.env[ENGINE_VARIABLE]): Promise<Engine> {
  if (!pending) pending = selectEngine(forced === '' ? undefined : forced);
  return pending;
}

/** Returns the engine chosen by `initEngine`, or throws when none was chosen yet. */
export function currentEngine(): Engine {
  if (!activeEngine) throw new Error('No engine selected yet: call `await initEngine()` first.');
  return activeEngine;
}

/**
 * Describes the running engine in words, for logs and benchmark headers, for example
 * `the tfjs "wasm" engine with OpenBLAS products`.
 */
export function describeEngine(): string {
  const engine = currentEngine();
  if (engine !== 'wasm') return `the tfjs "${engine}" engine`;
  const blas = blasStatus();
  return blas.active
    ? 'the tfjs "wasm" engine with OpenBLAS products'
    : `the tfjs "wasm" engine with its own products (OpenBLAS off: ${blas.reason})`;
}

async function selectEngine(forced: string | undefined): Promise<Engine> {
  const candidates: Engine[] = forced ? [requireChoice(ENGINE_VARIABLE, forced, ENGINES)] : [...ENGINES];
  const failures: string[] = [];

  for (const engine of candidates) {
    try {
      await startEngine(engine);
      activeEngine = engine;
      if (process.env.MODARCH_QUIET !== '1') console.error(`modarch: using ${describeEngine()}`);
      return engine;
    } catch (error) {
      failures.push(`${engine}: ${(error as Error).message}`);
    }
  }
  throw new Error(`No tfjs engine could start (${failures.join('; ')}).`);
}

async function startEngine(engine: Engine): Promise<void> {
  if (engine === 'tensorflow') {
    // danfojs-node's dependency on @tensorflow/tfjs-node is aliased to plain @tensorflow/tfjs so
    // that it installs without network access; only the real native package registers a
    // "tensorflow" backend, so the check below tells the two apart.
    require('@tensorflow/tfjs-node');
    if (!tf.findBackend('tensorflow')) throw new Error('@tensorflow/tfjs-node is not the native package');
  }
  if (engine === 'wasm') {
    require('@tensorflow/tfjs-backend-wasm');
    installBlasProducts();
  }
  if (!(await tf.setBackend(engine))) throw new Error(`tf.setBackend("${engine}") failed`);
  await tf.ready();
}
