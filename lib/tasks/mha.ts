import { requireChoice, requireDistribution, requireInteger, SettingError } from '../errors';
import { cumulativeOf, RandomStream } from '../random';
import { linearTwoInputRule, resolveTwoInputRules, TwoInputRule } from './two-input-rules';
import { DataBatch, OOD_SCALE, SampleOptions, Task, TaskDescription, TaskMode, TASK_MODES } from './types';

export const SEARCH_VERSIONS = [1, 2] as const;
/**
 * Search variant of the task. Version 1: two scalar keys per rule, and the partner has the
 * nearest key by absolute difference. Version 2: two 2-D unit vectors per rule, and the partner
 * has the largest dot product.
 */
export type SearchVersion = (typeof SEARCH_VERSIONS)[number];

/** Features each rule owns in a token: 4 in version 1 (2 keys, 2 values), 6 in version 2. */
export const FEATURES_PER_RULE: Record<SearchVersion, number> = { 1: 4, 2: 6 };

/** Default training length and evaluation lengths of the MHA task (the last is the OoD length). */
export const MHA_TRAIN_LENGTH = 10;
export const MHA_EVAL_LENGTHS: readonly number[] = [3, 5, 10, 20, 30];

/** A rule of the MHA task: combines the two retrieved values v1, v2 into a real-valued target. */
export type MhaRule = TwoInputRule;

const MHA_INPUT_NAMES = ['v1', 'v2'] as const;

/** Returns the linear rule y = a v1 + b v2, the kind of rule the benchmark draws. */
export function linearMhaRule(a: number, b: number): MhaRule {
  return linearTwoInputRule(a, b, MHA_INPUT_NAMES);
}

/** Settings of an MHA (search and retrieve) rule task. */
export interface MhaTaskSettings {
  mode: TaskMode;
  /**
   * Number of linear rules drawn from the data seed, or the rules themselves: a function
   * `(v1, v2) => y` (its name labels it) or a named `MhaRule`.
   */
  rules: number | Array<MhaRule | ((v1: number, v2: number) => number)>;
  dataSeed?: number;
  /** Distribution of rules per token, uniform by default. */
  ruleProbabilities?: number[];
  searchVersion: SearchVersion;
  /** Sequence length of training data, 10 by default. */
  trainLength?: number;
  /**
   * Lengths scored at the end of training, [3, 5, 10, 20, 30] by default. The list must contain
   * `trainLength`, and its last length is the OoD length.
   */
  evalLengths?: number[];
}

/** Names of every MHA task setting. The type makes the compiler reject a missing or extra name. */
export const MHA_TASK_SETTINGS: Record<keyof MhaTaskSettings, true> = {
  mode: true,
  rules: true,
  dataSeed: true,
  ruleProbabilities: true,
  searchVersion: true,
  trainLength: true,
  evalLengths: true,
};

/** Fields of a task that `mhaTargets` reads. `MhaTask` has them. */
export interface MhaTargetDefinition {
  mode: TaskMode;
  searchVersion: SearchVersion;
  rules: readonly MhaRule[];
}

/**
 * Creates the MHA rule task (search and retrieve over a set of tokens). Every token of a
 * sequence draws its own rule r and its features from N(0, 1). Version 1 has 4R features, and
 * rule r uses features 4r, 4r+1 as keys and 4r+2, 4r+3 as values. Version 2 has 6R features:
 * features 6r..6r+1 and 6r+2..6r+3 are 2-D unit vectors (normalized draws) and 6r+4, 6r+5 are
 * values. The token input is [features, onehot(rule)]. See `mhaTargets` for the target.
 *
 * Linear rules draw (a_r, b_r) ~ N(0, 1) per rule, in rule order, from the data seed alone.
 * A seed therefore gives the same coefficients in both search versions and both modes, and the
 * first R rules of a larger task equal those of an R-rule task.
 */
export function createMhaTask(settings: MhaTaskSettings): MhaTask {
  const mode = requireChoice('mode', settings.mode, TASK_MODES);
  const searchVersion = requireSearchVersion(settings.searchVersion);
  const dataSeed = requireInteger('dataSeed', settings.dataSeed ?? 0, 0);
  const rules = resolveTwoInputRules(settings.rules, dataSeed, 'mha-task', MHA_INPUT_NAMES);
  const ruleProbabilities = settings.ruleProbabilities
    ? requireDistribution('ruleProbabilities', settings.ruleProbabilities, rules.length)
    : rules.map(() => 1 / rules.length);
  const trainLength = requireInteger('trainLength', settings.trainLength ?? MHA_TRAIN_LENGTH, 2);
  const evalLengths = requireEvalLengths(settings.evalLengths ?? [...MHA_EVAL_LENGTHS], trainLength);
  return new MhaTask(mode, searchVersion, rules, dataSeed, ruleProbabilities, trainLength, evalLengths);
}

function requireSearchVersion(value: unknown): SearchVersion {
  if (value !== 1 && value !== 2) throw new SettingError('searchVersion', value, '1 or 2');
  return value;
}

function requireEvalLengths(value: unknown, trainLength: number): number[] {
  const accepted = `a non-empty list of distinct integers >= 2 that contains trainLength (${trainLength})`;
  if (!Array.isArray(value) || value.length === 0) throw new SettingError('evalLengths', value, accepted);
  value.forEach((length, index) => requireInteger(`evalLengths[${index}]`, length, 2));
  if (new Set(value).size !== value.length || !value.includes(trainLength)) {
    throw new SettingError('evalLengths', value, accepted);
  }
  return [...value];
}

/**
 * Finds the two partners of every token. For a token of rule r, partner 1 is the other token
 * (j != i) of the same sequence whose first key is closest to the token's own first key, and
 * partner 2 likewise for the second key. Version 1 keys are scalars compared by absolute
 * difference, and version 2 keys are 2-D vectors compared by dot product (largest wins).
 * Ties go to the lowest token index. All arithmetic is in float64 on the given float32 values.
 *
 * Shapes: inputs [batch, length, F + R] with F = 4R (version 1) or 6R (version 2), rules
 * [batch, length]. Returns positions within the sequence, [batch, length, 2].
 */
export function mhaPartners(
  inputs: Float32Array,
  rules: Int32Array,
  batchSize: number,
  length: number,
  searchVersion: SearchVersion,
  ruleCount: number,
): Int32Array {
  const featuresPerRule = FEATURES_PER_RULE[searchVersion];
  const width = (featuresPerRule + 1) * ruleCount;
  requireShape(inputs, rules, batchSize, length, ruleCount, width);
  const partners = new Int32Array(batchSize * length * 2);

  for (let sequence = 0; sequence < batchSize; sequence++) {
    const first = sequence * length;
    for (let i = 0; i < length; i++) {
      const token = first + i;
      const base = rules[token] * featuresPerRule;
      for (let key = 0; key < 2; key++) {
        partners[token * 2 + key] =
          searchVersion === 1
            ? nearestScalarKey(inputs, width, first, length, i, base + key)
            : largestDotProduct(inputs, width, first, length, i, base + 2 * key);
      }
    }
  }
  return partners;
}

function nearestScalarKey(inputs: Float32Array, width: number, first: number, length: number, i: number, feature: number): number {
  const own = inputs[(first + i) * width + feature];
  let best = -1;
  let bestDistance = Infinity;
  for (let j = 0; j < length; j++) {
    if (j === i) continue;
    const distance = Math.abs(inputs[(first + j) * width + feature] - own);
    if (distance < bestDistance) {
      best = j;
      bestDistance = distance;
    }
  }
  return best;
}

function largestDotProduct(inputs: Float32Array, width: number, first: number, length: number, i: number, feature: number): number {
  const ownX = inputs[(first + i) * width + feature];
  const ownY = inputs[(first + i) * width + feature + 1];
  let best = -1;
  let bestProduct = -Infinity;
  for (let j = 0; j < length; j++) {
    if (j === i) continue;
    const offset = (first + j) * width + feature;
    const product = ownX * inputs[offset] + ownY * inputs[offset + 1];
    if (product > bestProduct) {
      best = j;
      bestProduct = product;
    }
  }
  return best;
}

/**
 * Computes the target of every token. With r the token's rule, v1 is value 1 of rule r
 * (feature 4r+2 in version 1, 6r+4 in version 2) read from partner 1, and v2 is value 2
 * (feature 4r+3 or 6r+5) read from partner 2. The regression target is rule r applied to
 * (v1, v2), and the classification label is 1 when that value is >= 0, else 0. The result
 * depends only on the float32 inputs and the task. See `mhaPartners` for the search and ties.
 *
 * Shapes: inputs [batch, length, F + R], rules [batch, length] -> targets [batch, length] (the
 * same values as [batch, length, 1]).
 */
export function mhaTargets(
  inputs: Float32Array,
  rules: Int32Array,
  batchSize: number,
  length: number,
  definition: MhaTargetDefinition,
): Float32Array {
  const { searchVersion, mode } = definition;
  const ruleCount = definition.rules.length;
  const featuresPerRule = FEATURES_PER_RULE[searchVersion];
  const width = (featuresPerRule + 1) * ruleCount;
  const partners = mhaPartners(inputs, rules, batchSize, length, searchVersion, ruleCount);
  const targets = new Float32Array(batchSize * length);

  for (let token = 0; token < batchSize * length; token++) {
    const first = Math.floor(token / length) * length;
    const rule = rules[token];
    const valueFeature = rule * featuresPerRule + featuresPerRule - 2;
    const v1 = inputs[(first + partners[token * 2]) * width + valueFeature];
    const v2 = inputs[(first + partners[token * 2 + 1]) * width + valueFeature + 1];
    const value = definition.rules[rule].apply(v1, v2);
    if (mode === 'regression') targets[token] = value;
    else targets[token] = value >= 0 ? 1 : 0;
  }
  return targets;
}

function requireShape(inputs: Float32Array, rules: Int32Array, batchSize: number, length: number, ruleCount: number, width: number): void {
  requireInteger('length', length, 2);
  if (inputs.length !== batchSize * length * width) {
    throw new SettingError('inputs', `${inputs.length} values`, `batchSize * length * ${width} = ${batchSize * length * width} values`);
  }
  if (rules.length !== batchSize * length) {
    throw new SettingError('rules', `${rules.length} values`, `batchSize * length = ${batchSize * length} values`);
  }
  const invalid = rules.findIndex((rule) => rule < 0 || rule >= ruleCount);
  if (invalid >= 0) throw new SettingError(`rules[${invalid}]`, rules[invalid], `a rule index from 0 to ${ruleCount - 1}`);
}

/** The MHA rule task, built by `createMhaTask`. */
export class MhaTask implements Task, MhaTargetDefinition {
  readonly architecture = 'mha' as const;
  readonly ruleCount: number;
  /** Features per token before the one-hot rule context: 4R (version 1) or 6R (version 2). */
  readonly featureCount: number;
  readonly inputSize: number;
  readonly outputSize = 1;

  constructor(
    readonly mode: TaskMode,
    readonly searchVersion: SearchVersion,
    readonly rules: MhaRule[],
    readonly dataSeed: number,
    readonly ruleProbabilities: number[],
    readonly trainLength: number,
    readonly evalLengths: number[],
  ) {
    this.ruleCount = rules.length;
    this.featureCount = FEATURES_PER_RULE[searchVersion] * rules.length;
    this.inputSize = this.featureCount + rules.length;
  }

  /**
   * Draws `batchSize` sequences of `options.length` tokens (default: the training length).
   * Shapes: inputs [batch, length, F + R], rules [batch, length], targets [batch, length, 1].
   * With `ood`, every feature is scaled by OOD_SCALE, but the one-hot context is not.
   */
  sample(stream: RandomStream, batchSize: number, options: SampleOptions = {}): DataBatch {
    requireInteger('batchSize', batchSize, 1);
    const length = requireInteger('length', options.length ?? this.trainLength, 2);
    const probabilities = options.ruleProbabilities
      ? requireDistribution('ruleProbabilities', options.ruleProbabilities, this.ruleCount)
      : this.ruleProbabilities;
    const cumulative = cumulativeOf(probabilities);
    const scale = options.ood ? OOD_SCALE : 1;
    const width = this.inputSize;
    const tokenCount = batchSize * length;
    const inputs = new Float32Array(tokenCount * width);
    const rules = new Int32Array(tokenCount);

    for (let token = 0; token < tokenCount; token++) {
      const offset = token * width;
      if (this.searchVersion === 1) {
        for (let feature = 0; feature < this.featureCount; feature++) {
          inputs[offset + feature] = Math.fround(stream.normal() * scale);
        }
      } else {
        for (let rule = 0; rule < this.ruleCount; rule++) {
          const ruleOffset = offset + rule * 6;
          writeUnitVector(stream, inputs, ruleOffset, scale);
          writeUnitVector(stream, inputs, ruleOffset + 2, scale);
          inputs[ruleOffset + 4] = Math.fround(stream.normal() * scale);
          inputs[ruleOffset + 5] = Math.fround(stream.normal() * scale);
        }
      }
      const rule = stream.categorical(cumulative);
      inputs[offset + this.featureCount + rule] = 1;
      rules[token] = rule;
    }

    // Targets are computed from the float32 inputs the model receives, so they are a function of them.
    const targets = mhaTargets(inputs, rules, batchSize, length, this);
    return { inputs, inputShape: [batchSize, length, width], rules, targets, targetShape: [batchSize, length, 1] };
  }

  describe(): TaskDescription {
    return {
      architecture: 'mha',
      mode: this.mode,
      ruleCount: this.ruleCount,
      dataSeed: this.dataSeed,
      ruleProbabilities: this.ruleProbabilities,
      rules: this.rules.map((rule) => rule.name),
      coefficients: this.rules.map((rule) => rule.coefficients ?? null),
      searchVersion: this.searchVersion,
      trainLength: this.trainLength,
      evalLengths: this.evalLengths,
    };
  }
}

/** Writes a 2-D unit vector (a normalized Gaussian draw) times `scale` at `offset`. */
function writeUnitVector(stream: RandomStream, target: Float32Array, offset: number, scale: number): void {
  let x = 0;
  let y = 0;
  let norm = 0;
  while (norm === 0) {
    x = stream.normal();
    y = stream.normal();
    norm = Math.hypot(x, y);
  }
  target[offset] = Math.fround((x / norm) * scale);
  target[offset + 1] = Math.fround((y / norm) * scale);
}
