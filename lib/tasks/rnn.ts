import { requireChoice, requireDistribution, requireInteger, SettingError } from '../errors';
import { cumulativeOf, RandomStream, streamKey } from '../random';
import { registerTaskFactory } from './index';
import { DataBatch, OOD_SCALE, SampleOptions, Task, TaskDescription, TaskMode, TASK_MODES } from './types';

/**
 * One rule of the RNN task: a linear dynamical system in row-vector form,
 *   s_t = u_t B + sum over o = 1..k with t - o >= 0 of s_{t-o} A[o].
 * `transitions[o - 1]` is A[o] and `input` is B; all are d x d, indexed [row][column].
 */
export interface LinearDynamics {
  transitions: number[][][];
  input: number[][];
}

/** Settings of an RNN rule task (a switching linear dynamical system). */
export interface RnnTaskSettings {
  mode: TaskMode;
  /**
   * Number of rules drawn from the data seed, or the rules themselves. Drawn rules have
   * A_r[o] entries ~ N(0, 1) / sqrt(k d) and B_r entries ~ N(0, 1) / sqrt(d).
   */
  rules: number | LinearDynamics[];
  dataSeed?: number;
  /** Distribution of rules; uniform by default. */
  ruleProbabilities?: number[];
  /** State dimension d (default 32). Explicit rules set it from their matrices. */
  stateDim?: number;
  /** Markov order k (default 1). Explicit rules set it from their number of transitions. */
  order?: number;
  /** Classification readout w (d values); drawn from N(0, 1) with the data seed when absent. */
  readout?: number[];
  /** Sequence length of training data (default 10). */
  trainLength?: number;
  /** Lengths scored after training (default [3, 5, 10, 20, 30]); the last is the OoD length. */
  evalLengths?: number[];
}

/** Names of every RNN task setting. The type makes the compiler reject a missing or extra name. */
export const RNN_TASK_SETTINGS: Record<keyof RnnTaskSettings, true> = {
  mode: true,
  rules: true,
  dataSeed: true,
  ruleProbabilities: true,
  stateDim: true,
  order: true,
  readout: true,
  trainLength: true,
  evalLengths: true,
};

/** Upper bound on lengths and sizes, far above the benchmark's values, to catch typos early. */
const MAX_SIZE = 4096;

/**
 * Creates the RNN rule task. Each step t of a sequence draws u_t ~ N(0, 1)^d and a rule c_t,
 * and the step input is [u_t, onehot(c_t)]. The state follows rule c_t (see `LinearDynamics`),
 * starting from no earlier states. The regression target of step t is s_t (d values, L1 loss),
 * the classification label is 1 when s_t . w >= 0, else 0. OoD data scale u_t by 2.
 * One data seed always gives the same rules and readout.
 */
export function createRnnTask(settings: RnnTaskSettings): RnnTask {
  const mode = requireChoice('mode', settings.mode, TASK_MODES);
  const dataSeed = requireInteger('dataSeed', settings.dataSeed ?? 0, 0);
  const trainLength = requireInteger('trainLength', settings.trainLength ?? 10, 1, MAX_SIZE);
  const evalLengths = requireLengths(settings.evalLengths ?? [3, 5, 10, 20, 30]);
  const stream = new RandomStream(streamKey('rnn-task', dataSeed));

  let dynamics: LinearDynamics[];
  if (typeof settings.rules === 'number') {
    const ruleCount = requireInteger('rules', settings.rules, 2, 1024);
    const stateDim = requireInteger('stateDim', settings.stateDim ?? 32, 1, MAX_SIZE);
    const order = requireInteger('order', settings.order ?? 1, 1, 64);
    dynamics = drawDynamics(stream, ruleCount, stateDim, order);
  } else {
    dynamics = checkDynamics(settings.rules, settings.stateDim, settings.order);
  }
  const stateDim = dynamics[0].input.length;

  // The readout is drawn last and for regression too, so one seed gives the same dynamics and
  // readout in both modes.
  const readout = settings.readout === undefined ? Array.from({ length: stateDim }, () => stream.normal()) : settings.readout;
  if (!Array.isArray(readout) || readout.length !== stateDim || !readout.every((value) => Number.isFinite(value))) {
    throw new SettingError('readout', settings.readout, `${stateDim} finite numbers (one per state dimension)`);
  }

  const ruleProbabilities = settings.ruleProbabilities
    ? requireDistribution('ruleProbabilities', settings.ruleProbabilities, dynamics.length)
    : dynamics.map(() => 1 / dynamics.length);
  return new RnnTask(mode, dynamics, readout, dataSeed, ruleProbabilities, trainLength, evalLengths);
}

function requireLengths(lengths: unknown): number[] {
  if (!Array.isArray(lengths) || lengths.length === 0) {
    throw new SettingError('evalLengths', lengths, `a non-empty list of integers from 1 to ${MAX_SIZE}`);
  }
  return lengths.map((length, index) => requireInteger(`evalLengths[${index}]`, length, 1, MAX_SIZE));
}

function drawDynamics(stream: RandomStream, ruleCount: number, stateDim: number, order: number): LinearDynamics[] {
  const drawMatrix = (scale: number) =>
    Array.from({ length: stateDim }, () => Array.from({ length: stateDim }, () => stream.normal() * scale));

  // All transition matrices first, then all input matrices: the order of the authors' generator
  // (github.com/sarthmit/Mod_Arch, RNN/Classification/data.py). Its values differ from these
  // because it draws from NumPy's generator.
  const transitions = Array.from({ length: ruleCount }, () =>
    Array.from({ length: order }, () => drawMatrix(1 / Math.sqrt(order * stateDim))),
  );
  const inputs = Array.from({ length: ruleCount }, () => drawMatrix(1 / Math.sqrt(stateDim)));
  return transitions.map((ruleTransitions, rule) => ({ transitions: ruleTransitions, input: inputs[rule] }));
}

function checkDynamics(rules: unknown, stateDim: number | undefined, order: number | undefined): LinearDynamics[] {
  if (!Array.isArray(rules) || rules.length < 2) {
    throw new SettingError('rules', rules, 'an integer >= 2 or a list of at least 2 { transitions, input } rules');
  }
  const first = rules[0] as LinearDynamics;
  const dimension = Array.isArray(first?.input) ? first.input.length : 0;
  const transitionCount = Array.isArray(first?.transitions) ? first.transitions.length : 0;
  if (stateDim !== undefined && stateDim !== dimension) {
    throw new SettingError('stateDim', stateDim, `the size of the rule matrices (${dimension}) or no value`);
  }
  if (order !== undefined && order !== transitionCount) {
    throw new SettingError('order', order, `the number of transition matrices of the rules (${transitionCount}) or no value`);
  }

  const isSquare = (matrix: unknown) =>
    Array.isArray(matrix) &&
    matrix.length === dimension &&
    matrix.every((row) => Array.isArray(row) && row.length === dimension && row.every((value) => Number.isFinite(value)));
  rules.forEach((rule: LinearDynamics, index) => {
    const valid =
      dimension >= 1 &&
      transitionCount >= 1 &&
      isSquare(rule?.input) &&
      Array.isArray(rule?.transitions) &&
      rule.transitions.length === transitionCount &&
      rule.transitions.every(isSquare);
    if (!valid) {
      const size = dimension || 'd';
      const accepted = `{ transitions: ${transitionCount || 'k >= 1'} matrices, input: one matrix }, every matrix ${size} x ${size} of finite numbers`;
      throw new SettingError(`rules[${index}]`, rule, accepted);
    }
  });
  return rules.map((rule: LinearDynamics) => ({
    transitions: rule.transitions.map((matrix) => matrix.map((row) => row.slice())),
    input: rule.input.map((row) => row.slice()),
  }));
}

/**
 * Computes the states of the switching linear dynamical system in float64.
 * Shapes: inputs [batch, length, d + R] (only the first d features, u_t, are read),
 * rules [batch, length] -> states [batch, length, d].
 */
export function computeStates(
  task: Pick<RnnTask, 'dynamics' | 'stateDim' | 'ruleCount'>,
  inputs: Float32Array,
  rules: Int32Array,
  batchSize: number,
  length: number,
): Float64Array {
  const d = task.stateDim;
  const width = d + task.ruleCount;
  if (inputs.length !== batchSize * length * width || rules.length !== batchSize * length) {
    throw new Error(
      `computeStates: expected ${batchSize * length * width} inputs and ${batchSize * length} rules, ` +
        `got ${inputs.length} and ${rules.length}`,
    );
  }
  const states = new Float64Array(batchSize * length * d);

  for (let b = 0; b < batchSize; b++) {
    for (let t = 0; t < length; t++) {
      const step = b * length + t;
      const rule = task.dynamics[rules[step]];
      const state = states.subarray(step * d, (step + 1) * d);

      const inputOffset = step * width;
      for (let i = 0; i < d; i++) {
        const value = inputs[inputOffset + i];
        const row = rule.input[i];
        for (let j = 0; j < d; j++) state[j] += value * row[j];
      }

      for (let o = 1; o <= rule.transitions.length && t - o >= 0; o++) {
        const previousOffset = (step - o) * d;
        const transition = rule.transitions[o - 1];
        for (let i = 0; i < d; i++) {
          const value = states[previousOffset + i];
          const row = transition[i];
          for (let j = 0; j < d; j++) state[j] += value * row[j];
        }
      }
    }
  }
  return states;
}

/**
 * Computes the targets from the states: the states themselves (regression, [.., d]) or the
 * labels 1[s_t . w >= 0] (classification, [.., 1]).
 */
export function targetsOfStates(task: Pick<RnnTask, 'mode' | 'readout' | 'stateDim'>, states: Float64Array): Float32Array {
  if (task.mode === 'regression') return Float32Array.from(states);
  const d = task.stateDim;
  const labels = new Float32Array(states.length / d);
  for (let step = 0; step < labels.length; step++) {
    let projection = 0;
    for (let j = 0; j < d; j++) projection += states[step * d + j] * task.readout[j];
    labels[step] = projection >= 0 ? 1 : 0;
  }
  return labels;
}

/** The RNN rule task; see `createRnnTask`. */
export class RnnTask implements Task {
  readonly architecture = 'rnn' as const;
  readonly ruleCount: number;
  readonly stateDim: number;
  readonly order: number;
  readonly inputSize: number;
  readonly outputSize: number;

  constructor(
    readonly mode: TaskMode,
    readonly dynamics: LinearDynamics[],
    readonly readout: number[],
    readonly dataSeed: number,
    readonly ruleProbabilities: number[],
    readonly trainLength: number,
    readonly evalLengths: number[],
  ) {
    this.ruleCount = dynamics.length;
    this.stateDim = dynamics[0].input.length;
    this.order = dynamics[0].transitions.length;
    this.inputSize = this.stateDim + this.ruleCount;
    this.outputSize = mode === 'regression' ? this.stateDim : 1;
  }

  /**
   * Draws `batchSize` sequences of `options.length` steps (default: the training length):
   * inputs [batch, length, d + R], rules [batch, length], targets [batch, length, outputs].
   */
  sample(stream: RandomStream, batchSize: number, options: SampleOptions = {}): DataBatch {
    const length = requireInteger('length', options.length ?? this.trainLength, 1, MAX_SIZE);
    const probabilities = options.ruleProbabilities
      ? requireDistribution('ruleProbabilities', options.ruleProbabilities, this.ruleCount)
      : this.ruleProbabilities;
    const cumulative = cumulativeOf(probabilities);
    const scale = options.ood ? OOD_SCALE : 1;
    const d = this.stateDim;
    const width = this.inputSize;
    const inputs = new Float32Array(batchSize * length * width);
    const rules = new Int32Array(batchSize * length);

    for (let step = 0; step < batchSize * length; step++) {
      const offset = step * width;
      for (let i = 0; i < d; i++) inputs[offset + i] = stream.normal() * scale;
      const rule = stream.categorical(cumulative);
      inputs[offset + d + rule] = 1;
      rules[step] = rule;
    }

    // The states are computed from the stored float32 inputs, so targets are a function of them.
    const states = computeStates(this, inputs, rules, batchSize, length);
    return {
      inputs,
      inputShape: [batchSize, length, width],
      rules,
      targets: targetsOfStates(this, states),
      targetShape: [batchSize, length, this.outputSize],
    };
  }

  describe(): TaskDescription {
    const terms = (rule: number) =>
      Array.from({ length: this.order }, (_, o) => ` + s_(t-${o + 1}) A_${rule}[${o + 1}]`).join('');
    return {
      architecture: 'rnn',
      mode: this.mode,
      ruleCount: this.ruleCount,
      dataSeed: this.dataSeed,
      ruleProbabilities: this.ruleProbabilities,
      rules: this.dynamics.map((_, rule) => `s_t = u_t B_${rule}${terms(rule)}`),
      stateDim: this.stateDim,
      order: this.order,
      trainLength: this.trainLength,
      evalLengths: this.evalLengths,
    };
  }
}

registerTaskFactory('rnn', (settings) => createRnnTask(settings as unknown as RnnTaskSettings), Object.keys(RNN_TASK_SETTINGS));
