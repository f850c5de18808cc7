import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  activationMatrix,
  adaptation,
  adaptationScore,
  alignment,
  collapseAverage,
  collapseWorst,
  drawAdaptationDistributions,
  inverseMutualInformation,
  randomRouterBaseline,
  SPECIALIZATION_METRICS,
  specializationMetrics,
} from '../lib/metrics';
import { SettingError } from '../lib/errors';
import { RandomStream, streamKey } from '../lib/random';

const TOLERANCE = 1e-9;

/** The eps = 1e-8 inside the mutual-information logarithm moves exact values by up to ~1e-6. */
const MI_TOLERANCE = 1e-6;

function assertClose(actual: number, expected: number, tolerance: number, label: string): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${label}: expected ${expected} within ${tolerance}, got ${actual}`,
  );
}

function assertMatrixClose(actual: number[][], expected: number[][], tolerance: number): void {
  assert.equal(actual.length, expected.length, 'row count');
  expected.forEach((row, g) => {
    assert.equal(actual[g].length, row.length, `row ${g} length`);
    row.forEach((value, m) => assertClose(actual[g][m], value, tolerance, `P[${g}][${m}]`));
  });
}

/** Builds P from per-rule mean module weights (each row summing to 1) by dividing by R. */
function fromRuleMeans(ruleMeans: number[][]): number[][] {
  return ruleMeans.map((row) => row.map((value) => value / ruleMeans.length));
}

function uniformMatrix(ruleCount: number): number[][] {
  return Array.from({ length: ruleCount }, () => new Array<number>(ruleCount).fill(1 / ruleCount ** 2));
}

function identityMatrix(ruleCount: number): number[][] {
  return Array.from({ length: ruleCount }, (_, g) =>
    Array.from({ length: ruleCount }, (_, m) => (g === m ? 1 / ruleCount : 0)),
  );
}

describe('specialization metrics on hand-computed matrices', () => {
  it('uniform router matrix', () => {
    // R = 4, every entry 1/16, so every module usage q_m = 4/16 = 1/4 = 1/R.
    // Collapse-Avg = 4/3 * sum max(1/4 - 1/4, 0) = 0. Collapse-Worst = 1 - 4 * 1/4 = 0.
    // MI: P / (rowsum * colsum) = (1/16) / (1/4 * 1/4) = 1, so ln(1) = 0, MI = 0 and
    // inverse MI = (ln 4 - 0) / ln 4 = 1.
    // Alignment: R P is 1/4 everywhere. Any permutation has 4 cells at |1 - 1/4| = 3/4 and
    // 12 cells at 1/4, so the distance is (4 * 3/4 + 12 * 1/4) / (2 * 4) = 6/8 = 0.75.
    const metrics = specializationMetrics(uniformMatrix(4));

    assertClose(metrics.collapseAverage, 0, TOLERANCE, 'collapseAverage');
    assertClose(metrics.collapseWorst, 0, TOLERANCE, 'collapseWorst');
    assertClose(metrics.inverseMutualInformation, 1, MI_TOLERANCE, 'inverseMutualInformation');
    assertClose(metrics.alignment, 0.75, TOLERANCE, 'alignment');
  });

  it('identity matrix', () => {
    // R = 4, P = I / 4, so q_m = 1/4 for every module: both collapse metrics are 0.
    // MI: each diagonal cell gives (1/4) ln((1/4) / (1/4 * 1/4)) = (1/4) ln 4, and four of them
    // give ln 4, so inverse MI = 0. The eps terms lower MI by about 16e-8, which shifts
    // inverse MI to about 1.2e-7.
    // Alignment: R P = I is a permutation matrix, so the distance is 0.
    const metrics = specializationMetrics(identityMatrix(4));

    assertClose(metrics.collapseAverage, 0, TOLERANCE, 'collapseAverage');
    assertClose(metrics.collapseWorst, 0, TOLERANCE, 'collapseWorst');
    assertClose(metrics.inverseMutualInformation, 0, MI_TOLERANCE, 'inverseMutualInformation');
    assert.ok(metrics.inverseMutualInformation > 0, 'eps keeps inverse MI slightly above 0');
    assertClose(metrics.alignment, 0, TOLERANCE, 'alignment');
  });

  it('permuted identity matrix', () => {
    // Rule 0 -> module 2, rule 1 -> module 0, rule 2 -> module 3, rule 3 -> module 1.
    // Column sums and the MI terms are those of the identity, so the values match it, and the
    // assignment finds this permutation, so alignment is 0 as well.
    const moduleOfRule = [2, 0, 3, 1];
    const P = moduleOfRule.map((module) => [0, 1, 2, 3].map((m) => (m === module ? 1 / 4 : 0)));
    const metrics = specializationMetrics(P);

    assertClose(metrics.collapseAverage, 0, TOLERANCE, 'collapseAverage');
    assertClose(metrics.collapseWorst, 0, TOLERANCE, 'collapseWorst');
    assertClose(metrics.inverseMutualInformation, 0, MI_TOLERANCE, 'inverseMutualInformation');
    assertClose(metrics.alignment, 0, TOLERANCE, 'alignment');
  });

  it('fully collapsed matrix', () => {
    // R = 3 and module 1 takes all weight: P[g][1] = 1/3, every other entry 0.
    // q = [0, 1, 0]. Collapse-Avg = 3/2 * (1/3 + 0 + 1/3) = 1. Collapse-Worst = 1 - 3 * 0 = 1.
    // MI: each nonzero cell has P / (rowsum * colsum) = (1/3) / (1/3 * 1) = 1, so MI = 0 up
    // to eps and inverse MI = 1.
    // Alignment: R P has ones in column 1. The best permutation covers one of them (total 1),
    // so the distance is 2 uncovered ones + 2 permutation cells on zeros = 4, and 4 / 6 = 2/3.
    const P = [
      [0, 1 / 3, 0],
      [0, 1 / 3, 0],
      [0, 1 / 3, 0],
    ];
    const metrics = specializationMetrics(P);

    assertClose(metrics.collapseAverage, 1, TOLERANCE, 'collapseAverage');
    assertClose(metrics.collapseWorst, 1, TOLERANCE, 'collapseWorst');
    assertClose(metrics.inverseMutualInformation, 1, MI_TOLERANCE, 'inverseMutualInformation');
    assertClose(metrics.alignment, 2 / 3, TOLERANCE, 'alignment');
  });

  it('partially collapsed 4x4 matrix', () => {
    // Per-rule mean module weights (rows of R P):
    //   rule 0: [1,    0,    0,   0  ]
    //   rule 1: [0.75, 0.25, 0,   0  ]
    //   rule 2: [0,    0,    1,   0  ]
    //   rule 3: [0,    0,    0.5, 0.5]
    // P = (R P) / 4, so each row sums to 1/4 and q = [1.75, 0.25, 1.5, 0.5] / 4
    //   = [0.4375, 0.0625, 0.375, 0.125].
    // Collapse-Avg = 4/3 * ((0.25 - 0.0625) + (0.25 - 0.125)) = 4/3 * 0.3125 = 5/12.
    // Collapse-Worst = 1 - 4 * 0.0625 = 0.75.
    // Alignment: the best permutation is the diagonal, total T = 1 + 0.25 + 1 + 0.5 = 2.75
    // (taking rule 1 -> module 0 instead gives 0.75 + 0 + 1 + 0.5 = 2.25). Distance:
    // row 1 gives 0.75 + 0.75 = 1.5, row 3 gives 0.5 + 0.5 = 1, total 2.5 / 8 = 0.3125.
    // MI, with rowsum 1/4 for every rule:
    //   P[0][0] = 0.25,   ratio 0.25 / (0.25 * 0.4375) = 16/7
    //   P[1][0] = 0.1875, ratio 0.1875 / 0.109375 = 12/7
    //   P[1][1] = 0.0625, ratio 0.0625 / (0.25 * 0.0625) = 4
    //   P[2][2] = 0.25,   ratio 0.25 / (0.25 * 0.375) = 8/3
    //   P[3][2] = 0.125,  ratio 0.125 / 0.09375 = 4/3
    //   P[3][3] = 0.125,  ratio 0.125 / (0.25 * 0.125) = 4
    // MI = 0.20667 + 0.10106 + 0.08664 + 0.24521 + 0.03596 + 0.17329 = 0.84883, and
    // inverse MI = (1.38629 - 0.84883) / 1.38629 = 0.38770.
    const P = fromRuleMeans([
      [1, 0, 0, 0],
      [0.75, 0.25, 0, 0],
      [0, 0, 1, 0],
      [0, 0, 0.5, 0.5],
    ]);
    const mutualInformation =
      0.25 * Math.log(16 / 7) +
      0.1875 * Math.log(12 / 7) +
      0.0625 * Math.log(4) +
      0.25 * Math.log(8 / 3) +
      0.125 * Math.log(4 / 3) +
      0.125 * Math.log(4);

    assertClose(collapseAverage(P), 5 / 12, TOLERANCE, 'collapseAverage');
    assertClose(collapseWorst(P), 0.75, TOLERANCE, 'collapseWorst');
    assertClose(alignment(P), 0.3125, TOLERANCE, 'alignment');
    assertClose(inverseMutualInformation(P), (Math.log(4) - mutualInformation) / Math.log(4), MI_TOLERANCE, 'inverse MI formula');
    assertClose(inverseMutualInformation(P), 0.3877, 1e-4, 'inverse MI value');
  });

  it('partially collapsed 3x3 matrix', () => {
    // Rules 0 and 1 both go to module 0, rule 2 splits between modules 1 and 2:
    // R P rows [1, 0, 0], [1, 0, 0], [0, 0.5, 0.5], so q = [2/3, 1/6, 1/6].
    // Collapse-Avg = 3/2 * (1/6 + 1/6) = 0.5. Collapse-Worst = 1 - 3 * 1/6 = 0.5.
    // MI = 2 * (1/3) ln((1/3) / (1/3 * 2/3)) + 2 * (1/6) ln((1/6) / (1/3 * 1/6))
    //    = (2/3) ln 1.5 + (1/3) ln 3 = ln 3 - (2/3) ln 2, so inverse MI = (2/3) ln 2 / ln 3 = 0.42062.
    // Alignment: best total T = 1 + 0 + 0.5 = 1.5, so (3 - 1.5) / 3 = 0.5.
    const P = fromRuleMeans([
      [1, 0, 0],
      [1, 0, 0],
      [0, 0.5, 0.5],
    ]);
    const metrics = specializationMetrics(P);

    assertClose(metrics.collapseAverage, 0.5, TOLERANCE, 'collapseAverage');
    assertClose(metrics.collapseWorst, 0.5, TOLERANCE, 'collapseWorst');
    assertClose(metrics.inverseMutualInformation, ((2 / 3) * Math.log(2)) / Math.log(3), MI_TOLERANCE, 'inverseMutualInformation');
    assertClose(metrics.alignment, 0.5, TOLERANCE, 'alignment');
  });

  it('metrics accept Float64Array rows', () => {
    const P = identityMatrix(3).map((row) => Float64Array.from(row));

    assertClose(alignment(P), 0, TOLERANCE, 'alignment');
    assertClose(collapseWorst(P), 0, TOLERANCE, 'collapseWorst');
  });
});

describe('activationMatrix', () => {
  it('averages per rule and divides by R', () => {
    // Rule 0 has two samples and rule 1 one, and each row still weighs 1/R = 1/2:
    // rule 0 mean = ([0.8, 0.2] + [0.6, 0.4]) / 2 = [0.7, 0.3] -> / 2 = [0.35, 0.15]
    // rule 1 mean = [0.3, 0.7]                                 -> / 2 = [0.15, 0.35]
    // The total is already 1.
    const P = activationMatrix(
      [
        [0.8, 0.2],
        [0.6, 0.4],
        [0.3, 0.7],
      ],
      [0, 0, 1],
      2,
    );

    assertMatrixClose(
      P,
      [
        [0.35, 0.15],
        [0.15, 0.35],
      ],
      TOLERANCE,
    );
  });

  it('flat Float32Array matches nested rows', () => {
    const nested = [
      [0.8, 0.2],
      [0.6, 0.4],
      [0.3, 0.7],
    ];
    const flat = Float32Array.from(nested.flat());
    const rules = Int32Array.from([0, 0, 1]);

    // Float32 rounding of these weights is below 1e-7.
    assertMatrixClose(activationMatrix(flat, rules, 2), activationMatrix(nested, [0, 0, 1], 2), 1e-7);
  });

  it('zero row for a rule without samples', () => {
    // R = 3 and no sample has rule 2.
    // rule 0 mean = ([0.8, 0.2, 0] + [0.6, 0.2, 0.2]) / 2 = [0.7, 0.2, 0.1]
    // rule 1 mean = ([0.1, 0.9, 0] + [0.3, 0.5, 0.2]) / 2 = [0.2, 0.7, 0.1]
    // Times 1/3 the total is 2/3, so normalizing divides by 2/3, which leaves the rule means / 2:
    // [0.35, 0.1, 0.05], [0.1, 0.35, 0.05], [0, 0, 0].
    const P = activationMatrix(
      [
        [0.8, 0.2, 0],
        [0.6, 0.2, 0.2],
        [0.1, 0.9, 0],
        [0.3, 0.5, 0.2],
      ],
      [0, 0, 1, 1],
      3,
    );

    assertMatrixClose(
      P,
      [
        [0.35, 0.1, 0.05],
        [0.1, 0.35, 0.05],
        [0, 0, 0],
      ],
      TOLERANCE,
    );
  });

  it('missing rule makes a good router look collapsed', () => {
    // The matrix of the previous test: rows sum to [0.5, 0.5, 0] and q = [0.45, 0.45, 0.1].
    // Collapse-Avg = 3/2 * (1/3 - 0.1) = 0.35. Collapse-Worst = 1 - 3 * 0.1 = 0.7.
    // MI: ratios 0.35 / (0.5 * 0.45) = 14/9, 0.1 / 0.225 = 4/9 and 0.05 / (0.5 * 0.1) = 1,
    // so MI = 2 * (0.35 ln(14/9) + 0.1 ln(4/9)) = 0.14710 and inverse MI = 0.86611.
    // Alignment: 3 P = [[1.05, 0.3, 0.15], [0.3, 1.05, 0.15], [0, 0, 0]] and the diagonal wins.
    // Rows 0 and 1 each give 0.05 + 0.3 + 0.15 = 0.5 and row 2 gives 1, so 2 / 6 = 1/3.
    const P = [
      [0.35, 0.1, 0.05],
      [0.1, 0.35, 0.05],
      [0, 0, 0],
    ];
    const mutualInformation = 0.7 * Math.log(14 / 9) + 0.2 * Math.log(4 / 9);

    assertClose(collapseAverage(P), 0.35, TOLERANCE, 'collapseAverage');
    assertClose(collapseWorst(P), 0.7, TOLERANCE, 'collapseWorst');
    assertClose(inverseMutualInformation(P), (Math.log(3) - mutualInformation) / Math.log(3), MI_TOLERANCE, 'inverse MI formula');
    assertClose(inverseMutualInformation(P), 0.86611, 1e-5, 'inverse MI value');
    assertClose(alignment(P), 1 / 3, TOLERANCE, 'alignment');
  });

  it('normalizes rows that do not sum to 1', () => {
    // Unnormalized weights: rule 0 mean [2, 0], rule 1 mean [0, 6]. Times 1/2 gives
    // [1, 0], [0, 3] with total 4, so P = [[0.25, 0], [0, 0.75]].
    const P = activationMatrix([2, 0, 0, 6], [0, 1], 2);

    assertMatrixClose(
      P,
      [
        [0.25, 0],
        [0, 0.75],
      ],
      TOLERANCE,
    );
  });

  it('one-hot weights give perfect metrics', () => {
    const rules = [0, 1, 2, 2, 1, 0, 0];
    const oneHot = rules.map((rule) => [0, 1, 2].map((m) => (m === rule ? 1 : 0)));
    const metrics = specializationMetrics(activationMatrix(oneHot, rules, 3));

    assertClose(metrics.collapseAverage, 0, TOLERANCE, 'collapseAverage');
    assertClose(metrics.collapseWorst, 0, TOLERANCE, 'collapseWorst');
    assertClose(metrics.inverseMutualInformation, 0, MI_TOLERANCE, 'inverseMutualInformation');
    assertClose(metrics.alignment, 0, TOLERANCE, 'alignment');
  });
});

describe('adaptation', () => {
  it('perfect router scores 0', async () => {
    const result = await adaptation((p) => p, 4);

    assert.equal(result.scores.length, 100);
    assert.equal(result.mean, 0);
    for (const score of result.scores) assert.equal(score, 0);
  });

  it('perfect router with modules permuted scores 0', async () => {
    // Module m serves rule (m + 1) mod 4, so q_hat is p rotated by one. Sorting removes the
    // rotation, up to float rounding.
    const result = await adaptation((p) => p.map((_, m) => p[(m + 1) % 4]), 4);

    assertClose(result.mean, 0, 1e-12, 'mean');
  });

  it('uniform router matches baseline', async () => {
    const ruleCount = 5;
    const uniform = new Array<number>(ruleCount).fill(1 / ruleCount);
    const result = await adaptation(async () => uniform, ruleCount);
    const baseline = randomRouterBaseline(ruleCount);

    assertClose(result.mean, baseline.adaptation, 1e-15, 'mean versus baseline');
  });

  it('uniform router score recomputed by hand', async () => {
    // Redraw the 100 distributions from the documented stream and score each as
    // 0.5 * sum |sort(p) - 1/R|, which for R = 3 needs no sorting of the uniform side.
    const stream = new RandomStream(streamKey('adaptation', 0));
    let total = 0;
    for (let draw = 0; draw < 100; draw++) {
      const p = stream.flatDirichlet(3);
      total += 0.5 * p.reduce((sum, value) => sum + Math.abs(value - 1 / 3), 0);
    }
    const result = await adaptation(() => [1 / 3, 1 / 3, 1 / 3], 3);

    assertClose(result.mean, total / 100, 1e-12, 'mean');
  });

  it('uniform router expectation for R = 2', () => {
    // With p = (u, 1 - u) and u ~ Uniform(0, 1), the score is |max(u, 1 - u) - 1/2|, which is
    // uniform on [0, 1/2] with mean 1/4 and standard deviation 0.144. Over 20000 draws the
    // standard error is 0.001, so 0.01 is 10 standard errors.
    const baseline = randomRouterBaseline(2, { draws: 20000 });

    assertClose(baseline.adaptation, 0.25, 0.01, 'adaptation');
  });

  it('same scores across calls', async () => {
    const router = (p: number[]) => [p[0] * 0.5 + 0.25, p[1] * 0.5 + 0.25, p[2] * 0.5];
    const normalized = (p: number[]) => {
      const q = router(p);
      const total = q[0] + q[1] + q[2];
      return q.map((value) => value / total);
    };
    const first = await adaptation(normalized, 3);
    const second = await adaptation(normalized, 3);

    assert.deepEqual(second.scores, first.scores);
    assert.equal(second.mean, first.mean);
    assert.ok(first.mean > 0, 'an imperfect router scores above 0');
  });

  it('seed and draws change the distributions', () => {
    const seedZero = drawAdaptationDistributions(3, { draws: 10 });
    const seedOne = drawAdaptationDistributions(3, { draws: 10, seed: 1 });
    const longer = drawAdaptationDistributions(3, { draws: 20 });

    assert.notDeepEqual(seedOne, seedZero);
    assert.deepEqual(longer.slice(0, 10), seedZero);
    for (const p of seedZero) {
      assert.equal(p.length, 3);
      assertClose(p.reduce((sum, value) => sum + value, 0), 1, 1e-12, 'distribution total');
    }
  });

  it('estimator receives a copy', async () => {
    // A router that overwrites its argument must not change the score of that draw.
    const result = await adaptation((p) => {
      const q = [...p];
      p.fill(0);
      return q;
    }, 3);

    assert.equal(result.mean, 0);
  });

  it('adaptationScore by hand', () => {
    // sort(p) = [0.1, 0.3, 0.6], sort(q) = [0.2, 0.2, 0.6]: 0.5 * (0.1 + 0.1 + 0) = 0.1.
    assertClose(adaptationScore([0.6, 0.1, 0.3], [0.2, 0.6, 0.2]), 0.1, 1e-12, 'score');
    // A one-hot rule distribution against the uniform router scores 1 - 1/R = 0.75.
    assertClose(adaptationScore([0, 0, 1, 0], [0.25, 0.25, 0.25, 0.25]), 0.75, 1e-12, 'worst case');
  });
});

describe('randomRouterBaseline', () => {
  it('matrix metrics of the uniform router', () => {
    // Same arithmetic as the uniform matrix test, for R = 8: alignment = 1 - 1/8 = 0.875.
    const baseline = randomRouterBaseline(8);

    assertClose(baseline.collapseAverage, 0, TOLERANCE, 'collapseAverage');
    assertClose(baseline.collapseWorst, 0, TOLERANCE, 'collapseWorst');
    assertClose(baseline.inverseMutualInformation, 1, MI_TOLERANCE, 'inverseMutualInformation');
    assertClose(baseline.alignment, 0.875, TOLERANCE, 'alignment');
    assert.ok(baseline.adaptation > 0, `adaptation ${baseline.adaptation} above 0`);
    assert.ok(baseline.adaptation < 0.875, `adaptation ${baseline.adaptation} below 1 - 1/R`);
  });
});

describe('SPECIALIZATION_METRICS', () => {
  it('lists every baseline key once', () => {
    const keys = SPECIALIZATION_METRICS.map((metric) => metric.key);

    assert.deepEqual([...keys].sort(), Object.keys(randomRouterBaseline(2, { draws: 1 })).sort());
    for (const metric of SPECIALIZATION_METRICS) {
      assert.ok(metric.label.length > 0, `${metric.key} label`);
      assert.ok(metric.description.length > 0, `${metric.key} description`);
    }
  });
});

describe('input validation', () => {
  function assertSettingError(action: () => unknown, setting: string): void {
    assert.throws(action, (error: unknown) => {
      assert.ok(error instanceof SettingError, `expected SettingError, got ${String(error)}`);
      assert.equal(error.setting, setting);
      return true;
    });
  }

  it('non-square matrix', () => {
    const P = [
      [0.25, 0.25, 0],
      [0.25, 0.25],
    ];

    assertSettingError(() => collapseAverage(P), 'activation matrix row 0 length');
    assertSettingError(() => alignment([[0.5, 0.5], [0]]), 'activation matrix row 1 length');
  });

  it('fewer than two rules', () => {
    assertSettingError(() => specializationMetrics([[1]]), 'activation matrix row count R');
    assertSettingError(() => activationMatrix([[1]], [0], 1), 'ruleCount');
    assertSettingError(() => randomRouterBaseline(1), 'ruleCount');
    assertSettingError(() => drawAdaptationDistributions(0), 'ruleCount');
  });

  it('matrix that does not sum to 1', () => {
    assertSettingError(() => inverseMutualInformation(identityMatrix(2).map((row) => row.map((v) => v * 2))), 'activation matrix total');
  });

  it('negative or non-finite matrix entry', () => {
    assertSettingError(() => collapseWorst([[0.75, -0.25], [0.25, 0.25]]), 'activation matrix entry [0][1]');
    assertSettingError(() => collapseWorst([[0.5, 0], [Number.NaN, 0.5]]), 'activation matrix entry [1][0]');
  });

  it('rule out of range', () => {
    assertSettingError(() => activationMatrix([[0.5, 0.5], [0.5, 0.5]], [0, 2], 2), 'rules[1]');
    assertSettingError(() => activationMatrix([[0.5, 0.5], [0.5, 0.5]], [-1, 0], 2), 'rules[0]');
    assertSettingError(() => activationMatrix([[0.5, 0.5], [0.5, 0.5]], [0, 0.5], 2), 'rules[1]');
  });

  it('mismatched lengths', () => {
    assertSettingError(() => activationMatrix([[0.5, 0.5]], [0, 1], 2), 'moduleWeights rows');
    assertSettingError(() => activationMatrix([[0.5, 0.5], [1]], [0, 1], 2), 'moduleWeights[1] length');
    assertSettingError(() => activationMatrix(new Float32Array(5), [0, 1, 1], 2), 'moduleWeights length');
    assertSettingError(() => activationMatrix([[0.5, 0.5, 0], [0.5, 0.5, 0]], [0, 1], 2), 'moduleWeights[0] length');
  });

  it('empty or all-zero weights', () => {
    assertSettingError(() => activationMatrix([], [], 2), 'rules length');
    assertSettingError(() => activationMatrix(new Float32Array(4), [0, 1], 2), 'moduleWeights');
  });

  it('negative weight', () => {
    assertSettingError(() => activationMatrix([0.5, 0.5, 1.5, -0.5], [0, 1], 2), 'moduleWeights[1][1]');
  });

  it('invalid adaptation options', async () => {
    assertSettingError(() => drawAdaptationDistributions(3, { draws: 0 }), 'draws');
    assertSettingError(() => drawAdaptationDistributions(3, { seed: 1.5 }), 'seed');
    await assert.rejects(adaptation((p) => p, 3, { draws: -1 }), SettingError);
  });

  it('invalid module usage from the estimator', async () => {
    await assert.rejects(adaptation(() => [0.5, 0.5], 3), (error: unknown) => {
      assert.ok(error instanceof SettingError);
      assert.equal(error.setting, 'moduleUsage length');
      return true;
    });
    // Sums instead of means: the total is far from 1.
    await assert.rejects(adaptation((p) => p.map((value) => value * 1000), 3), (error: unknown) => {
      assert.ok(error instanceof SettingError);
      assert.equal(error.setting, 'moduleUsage total');
      return true;
    });
  });

  it('message names value and range', () => {
    assert.throws(() => activationMatrix([[0.5, 0.5], [0.5, 0.5]], [0, 7], 2), {
      message: 'Invalid rules[1]: 7. Accepted: an integer from 0 to 1.',
    });
  });
});
