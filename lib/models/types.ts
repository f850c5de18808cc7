import * as tf from '@tensorflow/tfjs';
import { ParameterLayout } from '../parameters';
import { Architecture } from '../tasks/types';

export const MODEL_KINDS = ['monolithic', 'modular', 'modular-op', 'gt-modular'] as const;
/**
 * The four model families, from no modular bias to perfect specialization:
 * `monolithic` (one network), `modular` (modules score themselves), `modular-op` (a scorer sees
 * only the rule context), `gt-modular` (module weights are the one-hot true rule).
 */
export type ModelKind = (typeof MODEL_KINDS)[number];

/** Display names used in tables and plots. */
export const MODEL_LABELS: Record<ModelKind, string> = {
  monolithic: 'Monolithic',
  modular: 'Modular',
  'modular-op': 'Modular-op',
  'gt-modular': 'GT-Modular',
};

/**
 * Size settings of a model. `encoderDim` is e (MLP, RNN) or the token dimension D (MHA);
 * `hiddenDim` is h (MLP), the attention dimension A (MHA) or the LSTM size n (RNN).
 * The benchmark uses hiddenDim = 4 * encoderDim.
 */
export interface ModelSettings {
  kind: ModelKind;
  encoderDim: number;
  hiddenDim: number;
}

/** Tensors of one batch, built from a `DataBatch`. */
export interface BatchTensors {
  /** [batch, features] or [batch, length, features]. */
  inputs: tf.Tensor;
  /** True rule per sample or token: [batch] or [batch, length], int32. */
  rules: tf.Tensor;
  /** Same shape as the model output. */
  targets: tf.Tensor;
}

/** Output of a forward pass. */
export interface ForwardResult {
  /** Logits (classification) or predictions (regression), shaped like the targets. */
  output: tf.Tensor;
  /** Module weights p_m per sample or token, [..., modules]; null for Monolithic. */
  moduleWeights: tf.Tensor | null;
}

/** A model: a parameter layout and a pure forward function of (parameters, batch). */
export interface Model {
  readonly architecture: Architecture;
  readonly settings: ModelSettings;
  readonly ruleCount: number;
  readonly layout: ParameterLayout;
  forward(parameters: Record<string, tf.Tensor>, batch: BatchTensors): ForwardResult;
  /** Extra fields for run records (for example a derived module size). */
  describe(): Record<string, unknown>;
}
