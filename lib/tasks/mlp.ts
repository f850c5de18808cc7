import { requireDistribution, requireInteger, requireChoice, SettingError } from '../errors';
import { cumulativeOf, RandomStream } from '../random';
import { linearTwoInputRule, resolveTwoInputRules, TwoInputRule } from './two-input-rules';
import { DataBatch, OOD_SCALE, SampleOptions, Task, TaskDescription, TaskMode, TASK_MODES } from './types';

/** A rule of the MLP task: maps the two input numbers (x1, x2) to a real-valued target. */
export type MlpRule = TwoInputRule;

const MLP_INPUT_NAMES = ['x1', 'x2'] as const;

/** Builds the linear rule y = a x1 + b x2, the kind of rule the benchmark draws. */
export function linearRule(a: number, b: number): MlpRule {
  return linearTwoInputRule(a, b, MLP_INPUT_NAMES);
}

/** Settings of an MLP rule task. */
export interface MlpTaskSettings {
  mode: TaskMode;
  /**
   * Number of linear rules drawn from the data seed, or the rules themselves: a function
   * `(x1, x2) => y` (its name labels it) or a named `MlpRule`.
   */
  rules: number | Array<MlpRule | ((x1: number, x2: number) => number)>;
  dataSeed?: number;
  /** Distribution of rules; uniform by default. */
  ruleProbabilities?: number[];
}

/** Names of every MLP task setting. The type makes the compiler reject a missing or extra name. */
export const MLP_TASK_SETTINGS: Record<keyof MlpTaskSettings, true> = { mode: true, rules: true, dataSeed: true, ruleProbabilities: true };

/**
 * Creates the MLP rule task. Each sample draws x1, x2 ~ N(0, 1) and a rule c; the input is
 * [x1, x2, onehot(c)] and the regression target is rule c applied to (x1, x2); the
 * classification label is 1 when that value is >= 0. Linear rules draw a_r, b_r ~ N(0, 1)
 * from the data seed alone, so one seed always gives the same task.
 */
export function createMlpTask(settings: MlpTaskSettings): MlpTask {
  const mode = requireChoice('mode', settings.mode, TASK_MODES);
  const dataSeed = requireInteger('dataSeed', settings.dataSeed ?? 0, 0);
  const rules = resolveTwoInputRules(settings.rules, dataSeed, 'mlp-task', MLP_INPUT_NAMES);
  const ruleProbabilities = settings.ruleProbabilities
    ? requireDistribution('ruleProbabilities', settings.ruleProbabilities, rules.length)
    : rules.map(() => 1 / rules.length);
  return new MlpTask(mode, rules, dataSeed, ruleProbabilities);
}

/** The MLP rule task; see `createMlpTask`. */
export class MlpTask implements Task {
  readonly architecture = 'mlp' as const;
  readonly ruleCount: number;
  readonly inputSize: number;
  readonly outputSize = 1;
  readonly trainLength = 1;
  readonly evalLengths = [1];

  constructor(
    readonly mode: TaskMode,
    readonly rules: MlpRule[],
    readonly dataSeed: number,
    readonly ruleProbabilities: number[],
  ) {
    this.ruleCount = rules.length;
    this.inputSize = 2 + rules.length;
  }

  /** Regression value of rule `rule` at (x1, x2): the target before any thresholding. */
  value(x1: number, x2: number, rule: number): number {
    const value = this.rules[rule].apply(x1, x2);
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new SettingError(`rules[${rule}] (${this.rules[rule].name})`, value, `a finite number for every input; it returned this at x1=${x1}, x2=${x2}`);
    }
    return value;
  }

  /** Target of one sample: the value, or for classification 1 when the value is >= 0, else 0. */
  target(x1: number, x2: number, rule: number): number {
    const value = this.value(x1, x2, rule);
    if (this.mode === 'regression') return value;
    return value >= 0 ? 1 : 0;
  }

  /** Draws `batchSize` samples: inputs [batch, 2 + R], rules [batch], targets [batch, 1]. */
  sample(stream: RandomStream, batchSize: number, options: SampleOptions = {}): DataBatch {
    const probabilities = options.ruleProbabilities
      ? requireDistribution('ruleProbabilities', options.ruleProbabilities, this.ruleCount)
      : this.ruleProbabilities;
    const cumulative = cumulativeOf(probabilities);
    const scale = options.ood ? OOD_SCALE : 1;
    const width = this.inputSize;
    const inputs = new Float32Array(batchSize * width);
    const rules = new Int32Array(batchSize);
    const targets = new Float32Array(batchSize);

    for (let i = 0; i < batchSize; i++) {
      // Targets come from the float32 inputs the model receives, so they are a function of them.
      const x1 = Math.fround(stream.normal() * scale);
      const x2 = Math.fround(stream.normal() * scale);
      const rule = stream.categorical(cumulative);
      inputs[i * width] = x1;
      inputs[i * width + 1] = x2;
      inputs[i * width + 2 + rule] = 1;
      rules[i] = rule;
      targets[i] = this.target(x1, x2, rule);
    }
    return { inputs, inputShape: [batchSize, width], rules, targets, targetShape: [batchSize, 1] };
  }

  describe(): TaskDescription {
    return {
      architecture: 'mlp',
      mode: this.mode,
      ruleCount: this.ruleCount,
      dataSeed: this.dataSeed,
      ruleProbabilities: this.ruleProbabilities,
      rules: this.rules.map((rule) => rule.name),
      coefficients: this.rules.map((rule) => rule.coefficients ?? null),
    };
  }
}
