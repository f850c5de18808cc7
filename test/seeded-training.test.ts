import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createMlpTask } from '../lib/tasks/mlp';
import { MODEL_KINDS, ModelKind } from '../lib/models/types';
import { Profile } from '../lib/profiles';
import { trainRun, RunRecord } from '../lib/train';
import { TaskMode } from '../lib/tasks/types';

/**
 * Seeded MLP trainings whose records were stored before the kernels were optimized. Faster
 * kernels may reorder float32 sums, so values must agree within RELATIVE_TOLERANCE (plus
 * ABSOLUTE_TOLERANCE for values near zero), not bit for bit.
 * Regenerate the fixture with MODARCH_WRITE_FIXTURES=1 only when a change is meant to alter
 * training results.
 */
const FIXTURE = path.join(__dirname, 'fixtures', 'seeded-mlp-records.json');
const RELATIVE_TOLERANCE = 1e-5;
const ABSOLUTE_TOLERANCE = 1e-6;

const PROFILE: Profile = {
  name: 'quick',
  steps: { mlp: 100, mha: 100, rnn: 100 },
  learningRate: 1e-3,
  batchSize: 64,
  evalEvery: { mlp: 50, mha: 50, rnn: 50 },
  evalBatches: 2,
  clipNorm: { mlp: null, mha: null, rnn: 1 },
};

interface SeededCase {
  name: string;
  mode: TaskMode;
  kind: ModelKind;
}

const CASES: SeededCase[] = [
  ...MODEL_KINDS.map((kind): SeededCase => ({ name: `${kind} classification`, mode: 'classification', kind })),
  { name: 'modular regression', mode: 'regression', kind: 'modular' },
];

/** The parts of a run record that depend on the numerics (no timings, no engine name). */
type SeededResult = Pick<RunRecord, 'curves' | 'best' | 'id' | 'ood' | 'metrics'>;

async function runCase(seededCase: SeededCase): Promise<SeededResult> {
  const task = createMlpTask({ mode: seededCase.mode, rules: 4, dataSeed: 1 });
  const { record } = await trainRun({
    task,
    model: { kind: seededCase.kind, encoderDim: 16, hiddenDim: 64 },
    modelSeed: 2,
    profile: PROFILE,
    progress: 'off',
  });
  return { curves: record.curves, best: record.best, id: record.id, ood: record.ood, metrics: record.metrics };
}

/** Walks `expected` and `actual` together and asserts that every number agrees within tolerance. */
function assertNumbersClose(actual: unknown, expected: unknown, where: string): void {
  if (typeof expected === 'number') {
    assert.equal(typeof actual, 'number', `${where}: expected a number, got ${JSON.stringify(actual)}`);
    const difference = Math.abs((actual as number) - expected);
    const allowed = ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * Math.abs(expected);
    assert.ok(difference <= allowed, `${where}: expected ${expected}, got ${actual} (difference ${difference})`);
    return;
  }
  if (expected === null || typeof expected !== 'object') {
    assert.deepEqual(actual, expected, where);
    return;
  }
  assert.notEqual(actual, null, `${where}: expected an object, got null`);
  assert.equal(typeof actual, 'object', `${where}: expected an object, got ${JSON.stringify(actual)}`);
  const expectedKeys = Object.keys(expected).sort();
  assert.deepEqual(Object.keys(actual as object).sort(), expectedKeys, `${where}: keys`);
  for (const key of expectedKeys) {
    assertNumbersClose((actual as Record<string, unknown>)[key], (expected as Record<string, unknown>)[key], `${where}.${key}`);
  }
}

describe('seeded MLP training', () => {
  if (process.env.MODARCH_WRITE_FIXTURES === '1') {
    it('writes the fixture', async () => {
      const results: Record<string, SeededResult> = {};
      for (const seededCase of CASES) results[seededCase.name] = await runCase(seededCase);
      fs.mkdirSync(path.dirname(FIXTURE), { recursive: true });
      fs.writeFileSync(FIXTURE, `${JSON.stringify(results, null, 1)}\n`);
    });
    return;
  }

  const stored = JSON.parse(fs.readFileSync(FIXTURE, 'utf8')) as Record<string, SeededResult>;
  for (const seededCase of CASES) {
    it(`reproduces ${seededCase.name}`, async () => {
      assert.ok(stored[seededCase.name], `the fixture has no entry "${seededCase.name}"`);
      assertNumbersClose(await runCase(seededCase), stored[seededCase.name], seededCase.name);
    });
  }
});
