import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  createMlpTask,
  createModel,
  createTask,
  initialParameters,
  linearRule,
  loadCheckpoint,
  MODEL_KINDS,
  ModelKind,
  RandomStream,
  SettingError,
  streamKey,
  trainRun,
} from '../lib/index';

/** Parameter count of an MLP model written out from the layer lists, independent of the code. */
function expectedMlpParameters(kind: ModelKind, rules: number, e: number, h: number): number {
  const linear = (inputs: number, outputs: number) => inputs * outputs + outputs;
  const encoders = linear(1, e) + linear(e, e) + linear(rules, e) + linear(e, e);
  const decoder = linear(h, e) + linear(e, 1);
  const w = h / rules;
  const core: Record<ModelKind, number> = {
    monolithic: linear(3 * e, h) + linear(h, h),
    modular: rules * (linear(3 * e, w) + linear(w, h + 1)),
    'modular-op': rules * (linear(3 * e, w) + linear(w, h)) + linear(e, rules),
    'gt-modular': rules * (linear(3 * e, w) + linear(w, h)),
  };
  return encoders + core[kind] + decoder;
}

test('mlp targets from hand-set rules', () => {
  const task = createMlpTask({ mode: 'regression', rules: [linearRule(2, -1), linearRule(0.5, 3)] });
  // Rule 0: 2 * 0.5 - 1 * 1 = 0; rule 1: 0.5 * 0.5 + 3 * 1 = 3.25.
  assert.equal(task.target(0.5, 1, 0), 0);
  assert.equal(task.target(0.5, 1, 1), 3.25);
  // Rule 0 at (-1, 0.5): -2 - 0.5 = -2.5.
  assert.equal(task.target(-1, 0.5, 0), -2.5);

  const classification = createMlpTask({ mode: 'classification', rules: [linearRule(2, -1), linearRule(0.5, 3)] });
  // A value of exactly 0 is labelled 1 (the label is 1[y >= 0]).
  assert.equal(classification.target(0.5, 1, 0), 1);
  assert.equal(classification.target(-1, 0.5, 0), 0);
  assert.equal(classification.target(-1, 0.5, 1), 1);
});

test('mlp custom rule functions', () => {
  const task = createMlpTask({ mode: 'regression', rules: [Math.min, Math.max, (x1: number, x2: number) => x1 * x2] });
  assert.deepEqual(task.describe().rules, ['min', 'max', 'rule 2']);
  assert.equal(task.target(-1.5, 2, 0), -1.5);
  assert.equal(task.target(-1.5, 2, 1), 2);
  assert.equal(task.target(-1.5, 2, 2), -3);
});

test('mlp batch layout and targets', () => {
  const task = createMlpTask({ mode: 'regression', rules: 3, dataSeed: 7 });
  const batch = task.sample(new RandomStream('batch-layout'), 64);
  assert.deepEqual(batch.inputShape, [64, 5]);
  assert.deepEqual(batch.targetShape, [64, 1]);
  for (let i = 0; i < 64; i++) {
    const row = batch.inputs.subarray(i * 5, i * 5 + 5);
    const rule = batch.rules[i];
    const context = Array.from(row.subarray(2));
    assert.deepEqual(context, [0, 1, 2].map((r) => (r === rule ? 1 : 0)));
    const [a, b] = task.rules[rule].coefficients!;
    assert.ok(Math.abs(batch.targets[i] - (a * row[0] + b * row[1])) < 1e-5);
  }
});

test('mlp coefficients follow the data seed', () => {
  const first = createMlpTask({ mode: 'regression', rules: 4, dataSeed: 3 }).describe().coefficients;
  const again = createMlpTask({ mode: 'regression', rules: 4, dataSeed: 3 }).describe().coefficients;
  const other = createMlpTask({ mode: 'regression', rules: 4, dataSeed: 4 }).describe().coefficients;
  assert.deepEqual(first, again);
  assert.notDeepEqual(first, other);

  const stream = new RandomStream(streamKey('mlp-task', 3));
  const expected = [stream.normal(), stream.normal()];
  assert.deepEqual((first as number[][])[0], expected);
});

test('mlp ood scales inputs only', () => {
  const task = createMlpTask({ mode: 'regression', rules: 2, dataSeed: 0 });
  const id = task.sample(new RandomStream('same'), 4000);
  const ood = task.sample(new RandomStream('same'), 4000, { ood: true });
  for (let i = 0; i < 4000; i++) {
    assert.equal(ood.inputs[i * 4], Math.fround(id.inputs[i * 4] * 2));
    assert.equal(ood.inputs[i * 4 + 2] + ood.inputs[i * 4 + 3], 1);
  }
});

test('mlp rule distribution respected', () => {
  const task = createMlpTask({ mode: 'classification', rules: 4, ruleProbabilities: [0.1, 0.2, 0.3, 0.4] });
  const batch = task.sample(new RandomStream('distribution'), 20000);
  const counts = [0, 0, 0, 0];
  batch.rules.forEach((rule) => counts[rule]++);
  // Standard error of a frequency near 0.4 with 20000 draws is about 0.0035; allow 4 of them.
  [0.1, 0.2, 0.3, 0.4].forEach((p, rule) => assert.ok(Math.abs(counts[rule] / 20000 - p) < 0.014, `rule ${rule}: ${counts[rule]}`));

  const skewed = task.sample(new RandomStream('override'), 1000, { ruleProbabilities: [0, 0, 0, 1] });
  assert.ok(skewed.rules.every((rule) => rule === 3));
});

test('mlp parameter counts match layer lists', () => {
  for (const [rules, e, h] of [[2, 32, 128], [8, 64, 256], [4, 16, 64]]) {
    const task = createMlpTask({ mode: 'classification', rules });
    for (const kind of MODEL_KINDS) {
      const model = createModel(task, { kind, encoderDim: e, hiddenDim: h });
      assert.equal(model.layout.size, expectedMlpParameters(kind, rules, e, h), `${kind} R=${rules} e=${e} h=${h}`);
    }
  }
});

test('invalid settings name value and range', () => {
  const cases: Array<[() => unknown, string, RegExp]> = [
    [() => createMlpTask({ mode: 'classification', rules: 1 }), 'rules', /integer from 2/],
    [() => createMlpTask({ mode: 'classification', rules: 2.5 }), 'rules', /integer/],
    [() => createMlpTask({ mode: 'ranking' as never, rules: 2 }), 'mode', /classification/],
    [() => createMlpTask({ mode: 'regression', rules: 2, ruleProbabilities: [0.5, 0.6] }), 'ruleProbabilities', /sum to 1/],
    [() => createMlpTask({ mode: 'regression', rules: 2, ruleProbabilities: [1] }), 'ruleProbabilities', /2 non-negative/],
    [() => createTask({ architecture: 'cnn' as never }), 'architecture', /mlp/],
    [() => createTask({ architecture: 'mlp', mode: 'classification', rules: 2, ruleProbabilites: [0.5, 0.5] }), 'mlp task setting name', /"ruleProbabilites"\. Accepted: one of mode, rules, dataSeed, ruleProbabilities/],
    [() => createTask({ architecture: 'mha', mode: 'classification', rules: 2, serchVersion: 1, length: 3 }), 'mha task setting name', /\["serchVersion","length"\]\. Accepted: one of .*searchVersion/],
    [() => createModel(createMlpTask({ mode: 'regression', rules: 3 }), { kind: 'modular', encoderDim: 8, hiddenDim: 32 }), 'hiddenDim', /multiple of the number of rules \(3\)/],
    [() => createModel(createMlpTask({ mode: 'regression', rules: 2 }), { kind: 'modular', encoderDim: 8.5, hiddenDim: 32 }), 'encoderDim', /integer/],
    [() => createModel(createMlpTask({ mode: 'regression', rules: 2 }), { kind: 'transformer' as never, encoderDim: 8, hiddenDim: 32 }), 'model kind', /gt-modular/],
    [() => loadCheckpoint(fs.mkdtempSync(path.join(os.tmpdir(), 'modarch-empty-')), 'best'), 'checkpoint', /existing checkpoint/],
  ];
  for (const [call, setting, accepted] of cases) {
    assert.throws(call, (error: unknown) => {
      assert.ok(error instanceof SettingError, `expected SettingError for ${setting}, got ${error}`);
      assert.equal(error.setting, setting);
      assert.match(error.message, accepted);
      return true;
    });
  }
});

test('seeded runs are identical', async () => {
  const run = () =>
    trainRun({
      task: createMlpTask({ mode: 'classification', rules: 2, dataSeed: 1 }),
      model: { kind: 'modular', encoderDim: 16, hiddenDim: 64 },
      modelSeed: 2,
      steps: 200,
      progress: 'off',
    });
  const first = await run();
  const second = await run();
  assert.deepEqual(first.parameters, second.parameters);
  assert.deepEqual(first.record.curves, second.record.curves);
  assert.deepEqual(first.record.metrics, second.record.metrics);

  const task = createMlpTask({ mode: 'classification', rules: 2, dataSeed: 1 });
  const model = createModel(task, { kind: 'modular', encoderDim: 16, hiddenDim: 64 });
  assert.deepEqual(initialParameters(model, 2), initialParameters(model, 2));
  assert.notDeepEqual(initialParameters(model, 2), initialParameters(model, 3));
  assert.deepEqual(task.sample(new RandomStream('x'), 32), task.sample(new RandomStream('x'), 32));
});

test('gt-modular learns 2-rule classification', async () => {
  const { record } = await trainRun({
    task: createMlpTask({ mode: 'classification', rules: 2, dataSeed: 0 }),
    model: { kind: 'gt-modular', encoderDim: 32, hiddenDim: 128 },
    modelSeed: 0,
    profile: 'quick',
    progress: 'off',
  });
  assert.ok(record.id.performance < 5, `ID error ${record.id.performance}%`);
  assert.equal(record.metrics!.collapseAverage, 0);
  assert.equal(record.metrics!.alignment, 0);
});

test('checkpoints save and resume', async () => {
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'modarch-run-'));
  const options = {
    task: createMlpTask({ mode: 'regression' as const, rules: 2, dataSeed: 0 }),
    model: { kind: 'modular-op' as const, encoderDim: 16, hiddenDim: 64 },
    modelSeed: 0,
    steps: 300,
    profile: { ...(await import('../lib/profiles')).PROFILES.quick, evalEvery: { mlp: 100, mha: 100, rnn: 100 } },
    progress: 'off' as const,
  };
  const uninterrupted = await trainRun(options);

  // Stop after the first evaluation, as a killed process would, then train again into the same folder.
  await assert.rejects(
    trainRun({
      ...options,
      runDir,
      onEvaluation: () => {
        throw new Error('interrupted');
      },
    }),
    /interrupted/,
  );
  assert.equal(fs.existsSync(path.join(runDir, 'record.json')), false);
  assert.equal(loadCheckpoint(runDir, 'last').meta.step, 100);

  const resumed = await trainRun({ ...options, runDir });
  assert.deepEqual(resumed.record.curves, uninterrupted.record.curves);
  assert.deepEqual(resumed.parameters, uninterrupted.parameters);
  assert.deepEqual(loadCheckpoint(runDir, 'best').parameters, resumed.parameters);
  const stored = JSON.parse(fs.readFileSync(path.join(runDir, 'record.json'), 'utf8'));
  assert.equal(stored.finished, true);
  assert.equal(stored.model.parameterCount, expectedMlpParameters('modular-op', 2, 16, 64));
});

test('run folder rejects other settings', async () => {
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'modarch-owned-'));
  const options = {
    task: createMlpTask({ mode: 'classification' as const, rules: 2, dataSeed: 1 }),
    model: { kind: 'modular' as const, encoderDim: 8, hiddenDim: 16 },
    steps: 20,
    progress: 'off' as const,
    runDir,
  };
  await trainRun(options);
  const other = { ...options, task: createMlpTask({ mode: 'classification', rules: 2, dataSeed: 2 }) };
  await assert.rejects(trainRun(other), (error: unknown) => {
    assert.ok(error instanceof SettingError);
    assert.equal(error.setting, 'runDir');
    assert.match(error.message, /other settings/);
    return true;
  });
  const again = await trainRun(options);
  assert.equal(again.record.task.dataSeed, 1);
});

test('custom rule must return finite numbers', () => {
  const task = createMlpTask({ mode: 'regression', rules: [Math.min, function broken() { return NaN; }] });
  assert.throws(() => task.target(1, 2, 1), (error: unknown) => {
    assert.ok(error instanceof SettingError);
    assert.equal(error.setting, 'rules[1] (broken)');
    assert.match(error.message, /Invalid rules\[1\] \(broken\): NaN/);
    return true;
  });
});

test('errors print NaN and functions', () => {
  assert.match(new SettingError('rules', NaN, 'x').message, /Invalid rules: NaN\./);
  assert.match(new SettingError('rules', [Math.min], 'x').message, /\["function min"\]/);
  assert.match(new SettingError('steps', [Infinity], 'x').message, /\["Infinity"\]/);
});

test('closure rules get distinct run ids', async () => {
  const { planStudy } = await import('../lib/study');
  const makeRules = (k: number) => [(x1: number, x2: number) => k * x1 - x2, (x1: number, x2: number) => x1 + k * x2];
  const plan = (k: number) => planStudy({ mode: 'regression', rules: [makeRules(k)], kinds: ['modular'], encoderDim: 8, hiddenDim: 16 })[0].id;
  assert.notEqual(plan(1), plan(-3));
  assert.equal(plan(1), plan(1));
});
