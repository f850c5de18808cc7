import { munkres } from 'munkres';
import { SettingError, requireInteger } from './errors';
import { RandomStream, streamKey } from './random';

/**
 * Specialization metrics of a modular system, computed from its module weights (the router's
 * softmax output p_m) and the true rule of each sample. They follow Mittal, Bengio and Lajoie,
 * "Is a Modular Architecture Enough?" (NeurIPS 2022). For every metric here lower is better,
 * and 0 is perfect specialization (each rule routed to its own module). The uniform router
 * (every module weight 1/R) scores 0 on the two collapse metrics, because it uses every module
 * equally, the worst value on inverse mutual information and alignment, and a value that
 * depends on R on adaptation (about 0.25 for R = 2).
 *
 * All functions are pure and work on plain arrays. Probability matrices are `number[][]`
 * indexed [rule][module].
 */

/**
 * Activation matrix P, shape [rules, modules] with rules = modules = R. P[g][m] is the joint
 * probability of true rule g and module m, so the whole matrix sums to 1.
 */
export type ActivationMatrix = number[][];

/** Read-only matrix input, such as `number[][]` or an array of `Float32Array` rows. */
export type MatrixLike = ArrayLike<ArrayLike<number>>;

/** The four metrics computed from an activation matrix. */
export interface SpecializationMetrics {
  collapseAverage: number;
  collapseWorst: number;
  inverseMutualInformation: number;
  alignment: number;
}

/** The four activation-matrix metrics plus the mean adaptation score. */
export interface RouterMetrics extends SpecializationMetrics {
  adaptation: number;
}

/** Names of the five specialization metrics, in plot order. */
export type SpecializationMetricKey = keyof RouterMetrics;

/** Plot metadata of one specialization metric. */
export interface SpecializationMetricInfo {
  key: SpecializationMetricKey;
  label: string;
  description: string;
}

/** Plot labels and one-line descriptions of the specialization metrics. Lower is better for all. */
export const SPECIALIZATION_METRICS: readonly SpecializationMetricInfo[] = [
  {
    key: 'collapseAverage',
    label: 'Collapse-Avg',
    description: 'Total shortfall of module usage below 1/R, scaled to [0, 1]. It is 1 when one module takes everything.',
  },
  {
    key: 'collapseWorst',
    label: 'Collapse-Worst',
    description: 'One minus R times the usage of the least used module. It is 1 when some module is never used.',
  },
  {
    key: 'inverseMutualInformation',
    label: 'Inverse MI',
    description: 'One minus the mutual information between rule and module divided by ln R. It is 1 for a router that ignores the rule.',
  },
  {
    key: 'alignment',
    label: 'Alignment',
    description: 'Distance of R P from the best matching permutation matrix, in [0, 1 - 1/R].',
  },
  {
    key: 'adaptation',
    label: 'Adaptation',
    description: 'Mean distance between sorted rule frequencies and sorted module usage over random Dirichlet rule distributions, in [0, 1 - 1/R].',
  },
];

/** Tolerance on the total of an activation matrix passed to the metric functions. */
const MATRIX_TOTAL_TOLERANCE = 1e-6;

/** Smoothing constant inside the mutual-information logarithm, as in metrics.py of github.com/sarthmit/Mod_Arch. */
const MUTUAL_INFORMATION_EPS = 1e-8;

/**
 * Tolerance on the total of an estimated module usage q_hat. It is looser than the matrix
 * tolerance because q_hat is usually a float32 mean over thousands of softmax rows, whose
 * rounding error may exceed 1e-6.
 */
const MODULE_USAGE_TOTAL_TOLERANCE = 1e-3;

/** Default number of Dirichlet rule distributions in the adaptation metric. */
const DEFAULT_ADAPTATION_DRAWS = 100;

/**
 * Builds the activation matrix P from per-sample module weights and true rules.
 *
 * For each rule g, the module weights of the samples (or tokens) whose rule is g are averaged
 * and multiplied by 1/R, giving P[g][m]. P is then divided by its total so that it sums to 1.
 * Each row therefore weighs 1/R no matter how many samples the rule had.
 *
 * A rule with no samples gets a zero row, and normalization spreads the mass over the other
 * rules. The metrics then treat that rule as absent, so even a perfect router scores as
 * partly collapsed (its module for the missing rule looks unused). Draw enough samples that
 * every rule occurs.
 *
 * @param moduleWeights Module weights p_m, shape [samples, modules] with modules = ruleCount:
 *   either row-major flat (`Float32Array`, `number[]`) or one row per sample (`number[][]`).
 *   Entries must be finite and >= 0. Rows need not sum to 1.
 * @param rules True rule id of each sample, integers in [0, ruleCount), length = samples.
 * @param ruleCount Number of rules R (>= 2), which is also the number of modules.
 * @returns P as R rows of R numbers summing to 1.
 * @throws SettingError when ruleCount < 2, the shapes disagree, a rule id is out of range, a
 *   weight is negative or not finite, there are no samples, or every weight is 0.
 *
 * @example
 * // Two rules, three samples: rule 0 twice, rule 1 once.
 * activationMatrix([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]], [0, 0, 1], 2);
 * // [[0.35, 0.15], [0.15, 0.35]]
 */
export function activationMatrix(
  moduleWeights: ArrayLike<number> | MatrixLike,
  rules: ArrayLike<number>,
  ruleCount: number,
): ActivationMatrix {
  requireInteger('ruleCount', ruleCount, 2);
  const sampleCount = rules.length;
  if (sampleCount === 0) {
    throw new SettingError('rules length', 0, 'at least 1 sample, because an activation matrix needs module weights to average');
  }
  const readWeight = weightReader(moduleWeights, sampleCount, ruleCount);

  const sums = zeroMatrix(ruleCount);
  const counts = new Array<number>(ruleCount).fill(0);
  for (let sample = 0; sample < sampleCount; sample++) {
    const rule = requireInteger(`rules[${sample}]`, rules[sample], 0, ruleCount - 1);
    counts[rule] += 1;
    for (let module = 0; module < ruleCount; module++) {
      sums[rule][module] += readWeight(sample, module);
    }
  }

  // Average per rule and weigh each present rule by 1/R. Absent rules keep their zero row.
  let total = 0;
  for (let rule = 0; rule < ruleCount; rule++) {
    if (counts[rule] === 0) continue;
    for (let module = 0; module < ruleCount; module++) {
      sums[rule][module] /= counts[rule] * ruleCount;
      total += sums[rule][module];
    }
  }
  if (total === 0) {
    throw new SettingError('moduleWeights', 'all zero', 'at least one positive module weight');
  }

  return sums.map((row) => row.map((value) => value / total));
}

/**
 * Returns a function that reads module weight (sample, module) from flat row-major or nested
 * input, after checking the shape. Each read checks that the weight is finite and >= 0.
 */
function weightReader(
  moduleWeights: ArrayLike<number> | MatrixLike,
  sampleCount: number,
  moduleCount: number,
): (sample: number, module: number) => number {
  const isNested = moduleWeights.length > 0 && typeof moduleWeights[0] !== 'number';

  if (!isNested) {
    const flat = moduleWeights as ArrayLike<number>;
    const expected = sampleCount * moduleCount;
    if (flat.length !== expected) {
      throw new SettingError(
        'moduleWeights length',
        flat.length,
        `${expected} (rules.length ${sampleCount} times ruleCount ${moduleCount}), because flat moduleWeights are row-major [samples, modules]`,
      );
    }
    return (sample, module) => checkWeight(flat[sample * moduleCount + module], sample, module);
  }

  const nested = moduleWeights as MatrixLike;
  if (nested.length !== sampleCount) {
    throw new SettingError('moduleWeights rows', nested.length, `${sampleCount}, one row per entry of rules`);
  }
  for (let sample = 0; sample < sampleCount; sample++) {
    const row = nested[sample];
    if (row === null || typeof row !== 'object' || row.length !== moduleCount) {
      throw new SettingError(`moduleWeights[${sample}] length`, row?.length ?? row, `${moduleCount}, one weight per module`);
    }
  }
  return (sample, module) => checkWeight(nested[sample][module], sample, module);
}

function checkWeight(value: number, sample: number, module: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new SettingError(`moduleWeights[${sample}][${module}]`, value, 'a finite number >= 0');
  }
  return value;
}

/**
 * Computes Collapse-Avg, the average shortfall of module usage below uniform.
 *
 * With q_m = sum over g of P[g][m], the value is R/(R-1) * sum over m of max(1/R - q_m, 0).
 * Range [0, 1], lower is better. It is 0 whenever every module is used equally (both perfect
 * specialization and the uniform router score 0) and 1 when one module takes all the weight.
 *
 * @param P Activation matrix, R x R (R >= 2), non-negative, summing to 1.
 */
export function collapseAverage(P: MatrixLike): number {
  const ruleCount = validateActivationMatrix(P);
  const usage = moduleUsage(P);

  let shortfall = 0;
  for (const q of usage) shortfall += Math.max(1 / ruleCount - q, 0);
  return (ruleCount / (ruleCount - 1)) * shortfall;
}

/**
 * Computes Collapse-Worst, the shortfall of the least used module below uniform usage.
 *
 * The value is 1 - R * min over m of q_m, with q_m the column sums of P. Range [0, 1], lower
 * is better. It is 0 when every module is used equally (perfect specialization and the
 * uniform router both score 0) and 1 when some module is never used.
 *
 * @param P Activation matrix, R x R (R >= 2), non-negative, summing to 1.
 */
export function collapseWorst(P: MatrixLike): number {
  const ruleCount = validateActivationMatrix(P);
  return 1 - ruleCount * Math.min(...moduleUsage(P));
}

/**
 * Computes the inverse mutual information between the true rule and the module,
 * (ln R - MI) / ln R, where
 * MI = sum over g, m of P[g][m] ln(P[g][m] / (rowsum_g colsum_m + eps) + eps) and eps = 1e-8.
 *
 * Range [0, 1] up to the eps terms, lower is better. Perfect specialization scores about
 * R^2 * 1e-8 / ln R (1.2e-7 for R = 4, 3e-6 for R = 32) instead of exactly 0, and a router
 * that ignores the rule, such as the uniform one, scores 1 (again within about 1e-6).
 *
 * @param P Activation matrix, R x R (R >= 2), non-negative, summing to 1.
 */
export function inverseMutualInformation(P: MatrixLike): number {
  const ruleCount = validateActivationMatrix(P);
  const ruleMarginal = Array.from({ length: ruleCount }, (_, g) => rowSum(P[g]));
  const moduleMarginal = moduleUsage(P);

  let mutualInformation = 0;
  for (let g = 0; g < ruleCount; g++) {
    for (let m = 0; m < ruleCount; m++) {
      const joint = P[g][m];
      // A zero entry adds 0 * ln(eps) = 0, so it needs no special case.
      const independent = ruleMarginal[g] * moduleMarginal[m] + MUTUAL_INFORMATION_EPS;
      mutualInformation += joint * Math.log(joint / independent + MUTUAL_INFORMATION_EPS);
    }
  }

  const maximum = Math.log(ruleCount);
  return (maximum - mutualInformation) / maximum;
}

/**
 * Computes alignment, the distance between R P and the permutation matrix closest to it.
 *
 * The permutation maximizes the total of R P over its entries (a linear sum assignment, solved
 * with the Hungarian algorithm). The value is sum over g, m of |Perm[g][m] - R P[g][m]| / (2R).
 * When rows of P sum to 1/R this equals (R - T) / R, with T the total of R P on the chosen
 * permutation. Range [0, 1 - 1/R], lower is better. Perfect specialization scores 0, even when
 * modules serve the rules in a permuted order. The uniform router and a router that sends
 * everything to one module both score 1 - 1/R.
 *
 * @param P Activation matrix, R x R (R >= 2), non-negative, summing to 1.
 */
export function alignment(P: MatrixLike): number {
  const ruleCount = validateActivationMatrix(P);
  const scaled = Array.from({ length: ruleCount }, (_, g) => Array.from(P[g], (value) => value * ruleCount));

  // munkres minimizes cost, so negate the scaled probabilities to maximize their total.
  const cost = scaled.map((row) => row.map((value) => -value));
  const permutation = zeroMatrix(ruleCount);
  for (const [rule, module] of munkres(cost)) permutation[rule][module] = 1;

  let distance = 0;
  for (let g = 0; g < ruleCount; g++) {
    for (let m = 0; m < ruleCount; m++) distance += Math.abs(permutation[g][m] - scaled[g][m]);
  }
  return distance / (2 * ruleCount);
}

/**
 * Computes Collapse-Avg, Collapse-Worst, inverse mutual information and alignment of one
 * activation matrix. Each function documents its formula and range, and lower is better for all.
 *
 * @param P Activation matrix, R x R (R >= 2), non-negative, summing to 1.
 */
export function specializationMetrics(P: MatrixLike): SpecializationMetrics {
  validateActivationMatrix(P);
  return {
    collapseAverage: collapseAverage(P),
    collapseWorst: collapseWorst(P),
    inverseMutualInformation: inverseMutualInformation(P),
    alignment: alignment(P),
  };
}

/** Options of the adaptation metric. */
export interface AdaptationOptions {
  /** Number of Dirichlet(1, ..., 1) rule distributions to score, default 100. */
  draws?: number;
  /** Seed of the stream `streamKey('adaptation', seed)` that draws them, default 0. */
  seed?: number;
}

/** Result of the adaptation metric. */
export interface AdaptationResult {
  /** Mean score over the draws. */
  mean: number;
  /** Score of each draw, in draw order. */
  scores: number[];
}

/**
 * Callback that estimates a model's module usage q_hat for a rule distribution: the mean
 * module weights over data whose rules are drawn from `ruleDistribution`. It may be async.
 * It receives a copy of the distribution, so changing it has no effect on the score.
 */
export type ModuleUsageEstimator = (ruleDistribution: number[]) => ArrayLike<number> | Promise<ArrayLike<number>>;

/**
 * Draws the rule distributions of the adaptation metric: `draws` samples of Dirichlet(1, ..., 1)
 * over `ruleCount` rules from the stream `streamKey('adaptation', seed)`. The same arguments
 * always return the same distributions, so every model is scored on the same set, and the first
 * n draws do not depend on how many follow.
 */
export function drawAdaptationDistributions(ruleCount: number, options: AdaptationOptions = {}): number[][] {
  requireInteger('ruleCount', ruleCount, 2);
  const draws = requireInteger('draws', options.draws ?? DEFAULT_ADAPTATION_DRAWS, 1);
  const seed = requireInteger('seed', options.seed ?? 0, 0);

  const stream = new RandomStream(streamKey('adaptation', seed));
  return Array.from({ length: draws }, () => stream.flatDirichlet(ruleCount));
}

/**
 * Scores one adaptation draw: 0.5 * sum |sort(p) - sort(q_hat)|, the total variation distance
 * between the sorted rule distribution and the sorted module usage. Sorting makes the score
 * ignore which module serves which rule. Range [0, 1 - 1/R], lower is better.
 *
 * @param ruleDistribution Rule distribution p, R non-negative numbers summing to 1.
 * @param moduleUsage Estimated module usage q_hat, R non-negative numbers summing to 1 within 1e-3.
 */
export function adaptationScore(ruleDistribution: ArrayLike<number>, moduleUsage: ArrayLike<number>): number {
  const ruleCount = requireInteger('ruleDistribution length', ruleDistribution?.length, 2);
  requireProbabilities('ruleDistribution', ruleDistribution, ruleCount, MATRIX_TOTAL_TOLERANCE);
  requireProbabilities('moduleUsage', moduleUsage, ruleCount, MODULE_USAGE_TOTAL_TOLERANCE);

  const sortedRules = Float64Array.from(ruleDistribution).sort();
  const sortedModules = Float64Array.from(moduleUsage).sort();
  let distance = 0;
  for (let i = 0; i < ruleCount; i++) distance += Math.abs(sortedRules[i] - sortedModules[i]);
  return distance / 2;
}

/**
 * Computes adaptation, which measures whether module usage follows a change in how often each
 * rule occurs.
 *
 * Draws `draws` rule distributions p ~ Dirichlet(1, ..., 1) with `drawAdaptationDistributions`,
 * calls `estimateModuleUsage(p)` for the model's mean module weights q_hat under each (one call
 * at a time, in draw order), and scores each with `adaptationScore`. Range [0, 1 - 1/R], lower
 * is better: 0 for perfect specialization (q_hat = p). The uniform router scores the
 * `adaptation` field of `randomRouterBaseline` (about 0.25 for R = 2).
 *
 * @param estimateModuleUsage Returns q_hat for a rule distribution, sync or async.
 * @param ruleCount Number of rules R (>= 2), which is also the number of modules.
 * @throws SettingError for invalid options or when a q_hat is not R non-negative numbers
 *   summing to 1 within 1e-3.
 */
export async function adaptation(
  estimateModuleUsage: ModuleUsageEstimator,
  ruleCount: number,
  options: AdaptationOptions = {},
): Promise<AdaptationResult> {
  const distributions = drawAdaptationDistributions(ruleCount, options);

  const scores: number[] = [];
  for (const distribution of distributions) {
    const usage = await estimateModuleUsage([...distribution]);
    scores.push(adaptationScore(distribution, usage));
  }
  return { mean: mean(scores), scores };
}

/**
 * Computes the metrics of the uniform random router, the reference line in metric plots.
 *
 * Its activation matrix has every entry 1/R^2, and its module usage is 1/R for every module
 * whatever the rule distribution. The matrix metrics are: Collapse-Avg 0, Collapse-Worst 0,
 * inverse mutual information 1 (within about 1e-6) and alignment 1 - 1/R. Adaptation is
 * scored on the same seeded draws that `adaptation` uses with the same options.
 */
export function randomRouterBaseline(ruleCount: number, options: AdaptationOptions = {}): RouterMetrics {
  requireInteger('ruleCount', ruleCount, 2);
  const uniformMatrix = Array.from({ length: ruleCount }, () => new Array<number>(ruleCount).fill(1 / ruleCount ** 2));
  const uniformUsage = new Array<number>(ruleCount).fill(1 / ruleCount);

  const scores = drawAdaptationDistributions(ruleCount, options).map((distribution) =>
    adaptationScore(distribution, uniformUsage),
  );
  return { ...specializationMetrics(uniformMatrix), adaptation: mean(scores) };
}

/**
 * Checks that P is a square matrix of at least 2 x 2 with finite non-negative entries summing
 * to 1 within 1e-6, and returns its size R.
 */
function validateActivationMatrix(P: MatrixLike): number {
  if (P === null || typeof P !== 'object' || typeof P.length !== 'number') {
    throw new SettingError('activation matrix', P, 'an R x R array of rows, indexed [rule][module]');
  }
  const ruleCount = requireInteger('activation matrix row count R', P.length, 2);

  let total = 0;
  for (let g = 0; g < ruleCount; g++) {
    const row = P[g];
    if (row === null || typeof row !== 'object' || row.length !== ruleCount) {
      throw new SettingError(
        `activation matrix row ${g} length`,
        row?.length ?? row,
        `${ruleCount}, the number of rows, because the matrix must be square (rules x modules)`,
      );
    }
    for (let m = 0; m < ruleCount; m++) {
      const value = row[m];
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
        throw new SettingError(`activation matrix entry [${g}][${m}]`, value, 'a finite number >= 0');
      }
      total += value;
    }
  }

  if (Math.abs(total - 1) > MATRIX_TOTAL_TOLERANCE) {
    throw new SettingError(
      'activation matrix total',
      total,
      `1 within ${MATRIX_TOTAL_TOLERANCE.toExponential()}. Build P with activationMatrix or divide every entry by the total`,
    );
  }
  return ruleCount;
}

/** Checks that `values` has `count` finite non-negative entries summing to 1 within `tolerance`. */
function requireProbabilities(setting: string, values: ArrayLike<number>, count: number, tolerance: number): void {
  const accepted = `${count} finite numbers >= 0 that sum to 1 within ${tolerance}`;
  if (values === null || typeof values !== 'object' || values.length !== count) {
    throw new SettingError(`${setting} length`, values?.length ?? values, accepted);
  }

  let total = 0;
  for (let i = 0; i < count; i++) {
    const value = values[i];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new SettingError(`${setting}[${i}]`, value, accepted);
    }
    total += value;
  }
  if (Math.abs(total - 1) > tolerance) {
    throw new SettingError(`${setting} total`, total, accepted);
  }
}

/** Column sums q_m of P: how much weight each module receives over all rules. */
function moduleUsage(P: MatrixLike): number[] {
  const usage = new Array<number>(P.length).fill(0);
  for (let g = 0; g < P.length; g++) {
    for (let m = 0; m < P.length; m++) usage[m] += P[g][m];
  }
  return usage;
}

function rowSum(row: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < row.length; i++) total += row[i];
  return total;
}

function zeroMatrix(size: number): number[][] {
  return Array.from({ length: size }, () => new Array<number>(size).fill(0));
}

function mean(values: readonly number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / values.length;
}
