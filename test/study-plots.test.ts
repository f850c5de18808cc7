import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SettingError } from '../lib/errors';
import { randomRouterBaseline } from '../lib/metrics';
import { MODEL_KINDS, MODEL_LABELS, ModelKind } from '../lib/models/types';
import { PlotTrace } from '../lib/plots';
import {
  chanceError,
  lengthFigure,
  matchRulesToModules,
  moduleTimelineFigure,
  performanceFigure,
  studyFindings,
  trainingCurvesFigure,
} from '../lib/study-plots';
import { createMhaTask } from '../lib/tasks/mha';
import { createMlpTask } from '../lib/tasks/mlp';
import { TaskMode } from '../lib/tasks/types';
import { RunRecord } from '../lib/train';

const LENGTHS = [3, 5, 10, 20, 30];

/**
 * Builds a run record of a sequence task by hand. The ID error at length L is `base + L / 10`
 * and the OoD error 5 points more, so every expected number below can be worked out by hand.
 */
function sequenceRecord(kind: ModelKind, rules: number, base: number, options: { mode?: TaskMode; modelSeed?: number } = {}): RunRecord {
  const perLength = LENGTHS.map((length) => ({
    length,
    id: { loss: 0, performance: base + length / 10 },
    ood: { loss: 0, performance: base + length / 10 + 5 },
  }));
  const diagonal = Array.from({ length: rules }, (_, g) => Array.from({ length: rules }, (_, m) => (g === m ? 1 / rules : 0)));
  const uniform = Array.from({ length: rules }, () => Array.from({ length: rules }, () => 1 / (rules * rules)));
  const specialized = kind === 'gt-modular' || kind === 'modular-op';
  return {
    finished: true,
    task: { architecture: 'mha', mode: options.mode ?? 'classification', ruleCount: rules, dataSeed: 0, ruleProbabilities: [], rules: [], trainLength: 10 },
    model: { kind, encoderDim: 32, hiddenDim: 128, label: MODEL_LABELS[kind], parameterCount: 1000 },
    modelSeed: options.modelSeed ?? 0,
    profile: { name: 'quick', steps: 200, learningRate: 1e-3, batchSize: 256, evalEvery: 100, clipNorm: null },
    engine: 'cpu',
    curves: { step: [100, 200], trainLoss: [0.7, 0.6], idLoss: [0.7, 0.6], idPerformance: [base + 2, base + 1], oodLoss: [0.8, 0.7], oodPerformance: [base + 7, base + 6] },
    best: { step: 200, idLoss: 0.6 },
    id: perLength[2].id,
    ood: perLength[4].ood,
    perLength,
    metrics:
      kind === 'monolithic'
        ? null
        : {
            collapseAverage: specialized ? 0 : 0.5,
            collapseWorst: specialized ? 0 : 1,
            inverseMutualInformation: specialized ? 0 : 1,
            alignment: specialized ? 0 : 1 - 1 / rules,
            adaptation: 0,
            activationMatrix: specialized ? diagonal : uniform,
          },
    seconds: 1,
    stepsPerSecond: 100,
  };
}

/** Builds one record per model for each rule count, with ID errors Monolithic > Modular > Modular-op > GT-Modular. */
function studyRecords(ruleCounts: number[], mode: TaskMode = 'classification'): RunRecord[] {
  const bases: Record<ModelKind, number> = { monolithic: 40, modular: 39, 'modular-op': 30, 'gt-modular': 20 };
  return ruleCounts.flatMap((rules) => MODEL_KINDS.map((kind) => sequenceRecord(kind, rules, bases[kind] - (kind === 'gt-modular' ? rules : 0), { mode })));
}

function titleOf(layout: Record<string, unknown>): string {
  return (layout.title as { text: string }).text;
}

describe('performanceFigure', () => {
  test('regression title keeps L1 capitalized', () => {
    const figure = performanceFigure(studyRecords([2], 'regression'), 'id');
    assert.equal(titleOf(figure.layout), 'In-distribution L1 loss');
  });

  test('classification title names the error', () => {
    const figure = performanceFigure(studyRecords([2]), 'ood');
    assert.equal(titleOf(figure.layout), 'Out-of-distribution error (%)');
  });

  test('baseline draws a reference line', () => {
    const figure = performanceFigure(studyRecords([2]), 'id', { baseline: { value: 50, label: 'chance' } });
    const shapes = figure.layout.shapes as Array<{ y0: number }>;
    assert.equal(shapes.length, 1);
    assert.equal(shapes[0].y0, 50);
  });

  test('one seed draws no error bars', () => {
    const figure = performanceFigure(studyRecords([2]), 'id');
    assert.ok(figure.data.every((trace) => trace.error_y === undefined));
  });

  test('two seeds draw error bars', () => {
    const records = [...studyRecords([2]), ...studyRecords([2]).map((record) => ({ ...record, modelSeed: 1, id: { loss: 0, performance: record.id.performance + 2 } }))];
    const figure = performanceFigure(records, 'id');
    assert.ok(figure.data.every((trace) => trace.error_y !== undefined));
  });
});

test('trainingCurvesFigure names the ID error', () => {
  const figure = trainingCurvesFigure(studyRecords([2]), 2, 'idPerformance');
  assert.equal(titleOf(figure.layout), 'ID error (%) during training, 2 rules');
});

describe('lengthFigure', () => {
  test('draws ID solid and OoD dashed per model', () => {
    const figure = lengthFigure(studyRecords([2, 4]), 4);
    const lines = figure.data.filter((trace) => trace.mode === 'lines+markers');
    assert.equal(lines.length, 8);
    const monolithicId = lines.find((trace) => trace.name === 'Monolithic ID') as PlotTrace;
    const monolithicOod = lines.find((trace) => trace.name === 'Monolithic OoD') as PlotTrace;
    assert.deepEqual(monolithicId.x, LENGTHS);
    assert.deepEqual(monolithicId.y, [40.3, 40.5, 41, 42, 43]);
    assert.equal((monolithicId.line as { dash: string }).dash, 'solid');
    assert.equal((monolithicOod.line as { dash: string }).dash, 'dash');
  });

  test('marks the training length', () => {
    const figure = lengthFigure(studyRecords([2]), 2, { splits: ['id'] });
    const shapes = figure.layout.shapes as Array<{ x0: number; xref: string }>;
    assert.ok(shapes.some((shape) => shape.xref === 'x' && shape.x0 === 10));
    assert.equal(figure.data.length, 4);
  });

  test('rejects a rule count not in the records', () => {
    assert.throws(() => lengthFigure(studyRecords([2]), 8), SettingError);
  });

  test('rejects records with one length', () => {
    const records = studyRecords([2]).map((record) => ({ ...record, perLength: record.perLength.slice(0, 1) }));
    assert.throws(() => lengthFigure(records, 2), SettingError);
  });
});

describe('matchRulesToModules', () => {
  test('finds a permutation', () => {
    const activation = [
      [0.01, 0.3, 0.0],
      [0.02, 0.0, 0.3],
      [0.3, 0.05, 0.02],
    ];
    assert.deepEqual(matchRulesToModules(activation), [1, 2, 0]);
  });

  test('keeps modules one-to-one under collapse', () => {
    const collapsed = [
      [0.3, 0.03, 0.0],
      [0.3, 0.0, 0.03],
      [0.3, 0.02, 0.01],
    ];
    const matched = matchRulesToModules(collapsed);
    assert.deepEqual([...matched].sort(), [0, 1, 2]);
  });

  test('rejects a non-square matrix', () => {
    assert.throws(() => matchRulesToModules([[0.5, 0.5]]), SettingError);
  });
});

describe('moduleTimelineFigure', () => {
  const weights = [
    [0.9, 0.1],
    [0.2, 0.8],
    [0.7, 0.3],
  ];

  test('heatmap is modules by steps', () => {
    const figure = moduleTimelineFigure(weights, [0, 1, 0]);
    const heatmapTrace = figure.data[0];
    assert.equal(heatmapTrace.type, 'heatmap');
    assert.deepEqual(heatmapTrace.z, [
      [0.9, 0.2, 0.7],
      [0.1, 0.8, 0.3],
    ]);
    assert.deepEqual(heatmapTrace.x, ['1', '2', '3']);
  });

  test('rule strip sits on the second axis', () => {
    const figure = moduleTimelineFigure(weights, [0, 1, 0]);
    const strip = figure.data[1];
    assert.equal(strip.yaxis, 'y2');
    assert.deepEqual(strip.y, [0, 1, 0]);
    assert.ok(figure.layout.yaxis2);
  });

  test('rings mark the matched module', () => {
    const figure = moduleTimelineFigure(weights, [0, 1, 0], { matchedModules: [1, 0] });
    const rings = figure.data[2];
    assert.deepEqual(rings.y, ['module 1', 'module 0', 'module 1']);
  });

  test('rejects rules of another length', () => {
    assert.throws(() => moduleTimelineFigure(weights, [0, 1]), SettingError);
  });

  test('rejects matches missing a rule', () => {
    assert.throws(() => moduleTimelineFigure(weights, [0, 1, 2], { matchedModules: [0, 1] }), SettingError);
  });
});

describe('chanceError', () => {
  test('linear MHA rules give about 50%', () => {
    const error = chanceError(createMhaTask({ mode: 'classification', rules: 2, searchVersion: 1 }));
    assert.ok(Math.abs(error - 50) < 1.5, `expected about 50, got ${error}`);
  });

  test('non-negative rules give 0%', () => {
    const task = createMlpTask({ mode: 'classification', rules: [(x1: number) => x1 * x1, (x1: number, x2: number) => x2 * x2] });
    assert.equal(chanceError(task, 1000), 0);
  });

  test('rejects regression', () => {
    assert.throws(() => chanceError(createMlpTask({ mode: 'regression', rules: 2 })), SettingError);
  });
});

describe('studyFindings', () => {
  const records = studyRecords([2, 4]);
  const baselines = { 2: randomRouterBaseline(2), 4: randomRouterBaseline(4) };
  const findings = studyFindings(records, baselines, { chanceError: { 2: 50, 4: 49.5 } });

  test('names the best model per rule count', () => {
    assert.match(findings.find((line) => line.includes('**2 rules:**'))!, /lowest ID error: GT-Modular \(19\.0%\).*Chance guessing: 50\.0%/);
    assert.match(findings.find((line) => line.includes('**4 rules:**'))!, /lowest ID error: GT-Modular \(17\.0%\).*Chance guessing: 49\.5%/);
  });

  test('states that the gap grows', () => {
    assert.match(findings.find((line) => line.includes('Benefit of specialization'))!, /22\.0 points at 2 rules and 24\.0 points at 4 rules, so the gap grows/);
  });

  test('reports one seed has no interval', () => {
    assert.match(findings.find((line) => line.includes('Modular against Monolithic'))!, /better by 1\.0 points\. With one seed/);
  });

  test('judges a gap against intervals', () => {
    // Two seeds 0.02 apart give 95% half-widths of 0.13, so the 1-point gap exceeds their sum. At 0.2
    // apart the half-widths are 1.27, which covers it.
    const withSecondSeed = (offset: number) => [
      ...records,
      ...records.map((record) => ({ ...record, modelSeed: 1, id: { loss: 0, performance: record.id.performance + offset } })),
    ];
    const comparison = (offset: number) => studyFindings(withSecondSeed(offset), baselines).find((line) => line.includes('Modular against Monolithic'))!;
    assert.match(comparison(0.02), /better by 1\.0 points\. The difference is larger than/);
    assert.match(comparison(0.2), /better by 1\.0 points\. The difference is within the 95% intervals/);
    assert.match(studyFindings(withSecondSeed(0.02), baselines)[0], /2 model seeds per model/);
  });

  test('places specialization against the router', () => {
    assert.match(findings.find((line) => line.includes('**Modular specialization'))!, /closer to the random router/);
    assert.match(findings.find((line) => line.includes('**Modular-op specialization'))!, /closer to perfect specialization/);
  });

  test('reports the length effect', () => {
    assert.match(findings.find((line) => line.includes('Sequence length'))!, /rises with length for 4 of 4 models.*worse than ID data for 4 of 4/);
  });

  test('uses L1 units for regression', () => {
    const regression = studyFindings(studyRecords([2], 'regression'), { 2: randomRouterBaseline(2) });
    assert.match(regression.find((line) => line.includes('**2 rules:**'))!, /lowest ID L1 loss: GT-Modular \(L1 19\.000\)/);
  });

  test('rejects an empty study', () => {
    assert.throws(() => studyFindings([], {}), SettingError);
  });
});
