import { RandomStream } from '../random';

export const ARCHITECTURES = ['mlp', 'mha', 'rnn'] as const;
/** The three experiments: rules over a pair of numbers, over a set of tokens, over time. */
export type Architecture = (typeof ARCHITECTURES)[number];

export const TASK_MODES = ['classification', 'regression'] as const;
/** Classification trains with BCE on logits and reports error in %; regression uses L1. */
export type TaskMode = (typeof TASK_MODES)[number];

/** Scale applied to the input features of out-of-distribution data. */
export const OOD_SCALE = 2;

/** Options of one draw of data. */
export interface SampleOptions {
  /** Scale the input features by OOD_SCALE (the rule context stays one-hot). */
  ood?: boolean;
  /** Distribution of rules for this draw; defaults to the task's own. */
  ruleProbabilities?: number[];
  /** Sequence length, for the sequence tasks. */
  length?: number;
}

/**
 * One batch of data as flat row-major arrays. Shapes are [batch, features] for the MLP task and
 * [batch, length, features] for sequence tasks; `rules` has one entry per sample or token.
 */
export interface DataBatch {
  inputs: Float32Array;
  inputShape: number[];
  rules: Int32Array;
  targets: Float32Array;
  targetShape: number[];
}

/** JSON description of a task, stored in run records. */
export interface TaskDescription {
  architecture: Architecture;
  mode: TaskMode;
  ruleCount: number;
  dataSeed: number;
  ruleProbabilities: number[];
  rules: string[];
  [detail: string]: unknown;
}

/** A rule task: a fixed set of rules (drawn from a data seed) and a sampler of batches. */
export interface Task {
  readonly architecture: Architecture;
  readonly mode: TaskMode;
  readonly ruleCount: number;
  /** Features per sample (MLP) or per token or step (sequence tasks), context included. */
  readonly inputSize: number;
  /** Target values per sample, token or step. */
  readonly outputSize: number;
  readonly ruleProbabilities: number[];
  /** Default sequence length of training data; 1 for the MLP task. */
  readonly trainLength: number;
  /** Lengths scored at the end of training; the last is the OoD length. [1] for the MLP task. */
  readonly evalLengths: number[];
  sample(stream: RandomStream, batchSize: number, options?: SampleOptions): DataBatch;
  describe(): TaskDescription;
}
