import * as tf from '@tensorflow/tfjs';
import { SettingError } from '../errors';
import { linear, linearReluLinear } from '../kernels';
import { GATE_NAMES, ModuleMixing, PerGate, runLstmSequence } from '../lstm';
import { ParameterLayout } from '../parameters';
import { registerModelFactory } from './index';
import { BatchTensors, ForwardResult, Model, ModelSettings } from './types';

/**
 * Returns the hidden size n' of each of the R LSTM cells of the modular RNN models, chosen so
 * that they have about as many parameters as a Monolithic LSTM of hidden size n:
 *   n' = floor((sqrt((4Re + 1)^2 + 4(4R + 1)(5n^2 + n(4e + 1))) - (4Re + 1)) / (2(4R + 1))),
 * the positive root of (4R + 1) n'^2 + (4Re + 1) n' = 5n^2 + n(4e + 1).
 * With R = 1 the root is exactly n.
 */
export function moduleHiddenSize(rules: number, encoderDim: number, hiddenDim: number): number {
  const linearTerm = 4 * rules * encoderDim + 1;
  const quadraticTerm = 4 * rules + 1;
  const matched = 5 * hiddenDim * hiddenDim + hiddenDim * (4 * encoderDim + 1);
  const root = (Math.sqrt(linearTerm * linearTerm + 4 * quadraticTerm * matched) - linearTerm) / (2 * quadraticTerm);
  return Math.floor(root);
}

/** Sizes of the data a model reads and writes; a `Task` has all three. */
export interface RnnShape {
  /** Features per step: d input values then the one-hot rule context of length R. */
  inputSize: number;
  outputSize: number;
  ruleCount: number;
}

/**
 * The RNN models. A step encoder Linear(in, e)-ReLU-Linear(e, e) embeds each step, an LSTM state
 * (zero at the start) runs over the steps, and a decoder Linear(n, n)-ReLU-Linear(n, out) reads
 * the hidden state at every step.
 *
 * Monolithic is one LSTM cell of hidden size n with input and recurrent biases. The modular
 * models are R LSTM cells of hidden size n' (see `moduleHiddenSize`) without biases. All of them
 * read one shared state, and the new state is the p-weighted sum of their proposals. Module
 * weights p:
 * Modular, softmax over modules of a bias-free score of each module's ReLU-ed input-to-hidden
 * and hidden-to-hidden preactivations (8 n' values -> 1); Modular-op, softmax of a bias-free
 * MLP(R -> n' -> R) of onehot(c_t); GT-Modular, onehot(c_t).
 *
 * Weights are stored per gate (i, f, g, o), each gate packing all modules side by side: gate
 * weights are [e, R n'] (input-to-hidden) and [n', R n'] (hidden-to-hidden) with module m in
 * columns [m n', (m + 1) n'), so each gate costs one 2-D product per step for all modules (see
 * `runLstmSequence`, which also holds the backward pass). Separate gates avoid splitting one
 * [batch, 4 R n'] product, because slicing copies its whole input on the wasm backend. The
 * Monolithic cell uses the same layout with R = 1; its weights are PyTorch's weight_ih and
 * weight_hh split by gate and transposed ([in, n] per gate).
 */
export class RnnModel implements Model {
  readonly architecture = 'rnn' as const;
  readonly layout = new ParameterLayout();
  readonly ruleCount: number;
  /** Hidden size of each LSTM cell: n for Monolithic, n' for the modular models. */
  readonly cellHiddenSize: number;
  /** Features of u_t, the input before the rule context. */
  readonly valueSize: number;

  constructor(
    readonly settings: ModelSettings,
    readonly shape: RnnShape,
  ) {
    const { kind, encoderDim: e, hiddenDim: n } = settings;
    const rules = shape.ruleCount;
    this.ruleCount = rules;
    this.valueSize = shape.inputSize - rules;
    if (this.valueSize < 0) {
      throw new SettingError('inputSize', shape.inputSize, `at least the number of rules (${rules})`);
    }
    this.cellHiddenSize = kind === 'monolithic' ? n : moduleHiddenSize(rules, e, n);
    const cellSize = this.cellHiddenSize;
    if (cellSize < 1) {
      throw new SettingError('hiddenDim', n, `a size that leaves each of the ${rules} modules at least 1 unit (n' = ${cellSize})`);
    }

    this.layout.addLinear('encoder.layer1', shape.inputSize, e).addLinear('encoder.layer2', e, e);

    if (kind === 'monolithic') {
      // PyTorch's LSTMCell draws every weight and bias from U(-1/sqrt(n), 1/sqrt(n)).
      for (const gate of GATE_NAMES) this.layout.add(`cell.${gate}.inputWeight`, [e, n], n);
      for (const gate of GATE_NAMES) this.layout.add(`cell.${gate}.recurrentWeight`, [n, n], n);
      for (const gate of GATE_NAMES) this.layout.add(`cell.${gate}.inputBias`, [n], n);
      for (const gate of GATE_NAMES) this.layout.add(`cell.${gate}.recurrentBias`, [n], n);
    } else {
      const columns = rules * cellSize;
      for (const gate of GATE_NAMES) this.layout.add(`modules.${gate}.inputWeight`, [e, columns], e);
      for (const gate of GATE_NAMES) this.layout.add(`modules.${gate}.recurrentWeight`, [cellSize, columns], cellSize);
      if (kind === 'modular') {
        // Module m's score weights over its 8 n' preactivations, stored per gate and per part in
        // the column layout of the preactivations.
        for (const gate of GATE_NAMES) this.layout.add(`modules.score.${gate}.inputWeight`, [columns], 8 * cellSize);
        for (const gate of GATE_NAMES) this.layout.add(`modules.score.${gate}.recurrentWeight`, [columns], 8 * cellSize);
      }
      if (kind === 'modular-op') {
        this.layout.addLinear('scorer.layer1', rules, cellSize, false);
        this.layout.addLinear('scorer.layer2', cellSize, rules, false);
      }
    }

    this.layout.addLinear('decoder.layer1', cellSize, cellSize).addLinear('decoder.layer2', cellSize, shape.outputSize);
  }

  /** Shapes: inputs [batch, length, d + R] -> output [batch, length, outputs], moduleWeights [batch, length, R]. */
  forward(p: Record<string, tf.Tensor>, batch: BatchTensors): ForwardResult {
    const [batchSize, length, features] = batch.inputs.shape;
    const rows = length * batchSize;
    const kind = this.settings.kind;
    const prefix = kind === 'monolithic' ? 'cell' : 'modules';
    const perGate = (name: (gate: string) => string) => Object.fromEntries(GATE_NAMES.map((gate) => [gate, p[name(gate)]])) as PerGate;

    // Time-major rows put the batch of step t in rows [t batch, (t + 1) batch).
    const steps = tf.reshape(tf.transpose(batch.inputs, [1, 0, 2]), [rows, features]) as tf.Tensor2D;
    const embedding = linearReluLinear(
      steps,
      p['encoder.layer1.weight'],
      p['encoder.layer1.bias'],
      p['encoder.layer2.weight'],
      p['encoder.layer2.bias'],
    );

    let mixing: ModuleMixing;
    let biases: PerGate | undefined;
    if (kind === 'monolithic') {
      mixing = { kind: 'single' };
      // Both biases enter every step, so one sum per gate serves all steps.
      const inputBiases = perGate((gate) => `cell.${gate}.inputBias`);
      const recurrentBiases = perGate((gate) => `cell.${gate}.recurrentBias`);
      biases = Object.fromEntries(GATE_NAMES.map((gate) => [gate, tf.add(inputBiases[gate], recurrentBiases[gate])])) as PerGate;
    } else if (kind === 'modular') {
      mixing = {
        kind: 'scored',
        inputScoreWeights: perGate((gate) => `modules.score.${gate}.inputWeight`),
        recurrentScoreWeights: perGate((gate) => `modules.score.${gate}.recurrentWeight`),
      };
    } else {
      mixing = { kind: 'given', moduleWeights: this.contextModuleWeights(p, steps) };
    }

    const sequence = runLstmSequence({
      inputs: embedding,
      length,
      modules: kind === 'monolithic' ? 1 : this.ruleCount,
      inputWeights: perGate((gate) => `${prefix}.${gate}.inputWeight`),
      recurrentWeights: perGate((gate) => `${prefix}.${gate}.recurrentWeight`),
      biases,
      mixing,
    });

    const decoded = linearReluLinear(
      sequence.hidden,
      p['decoder.layer1.weight'],
      p['decoder.layer1.bias'],
      p['decoder.layer2.weight'],
      p['decoder.layer2.bias'],
    );
    const toBatchMajor = (values: tf.Tensor2D) =>
      tf.transpose(tf.reshape(values, [length, batchSize, values.shape[1]]), [1, 0, 2]);
    return {
      output: toBatchMajor(decoded),
      moduleWeights: sequence.moduleWeights ? toBatchMajor(sequence.moduleWeights) : null,
    };
  }

  /**
   * Returns the module weights of every step of the models whose weights depend only on the rule
   * context: onehot(c_t) for GT-Modular, softmax(MLP(onehot(c_t))) for Modular-op.
   * Shapes: steps [rows, d + R] -> [rows, R].
   */
  private contextModuleWeights(p: Record<string, tf.Tensor>, steps: tf.Tensor2D): tf.Tensor2D {
    const context = tf.slice(steps, [0, this.valueSize], [steps.shape[0], this.ruleCount]) as tf.Tensor2D;
    if (this.settings.kind === 'gt-modular') return context;
    const hidden = tf.relu(linear(context, p['scorer.layer1.weight']));
    return tf.softmax(linear(hidden, p['scorer.layer2.weight'])) as tf.Tensor2D;
  }

  describe(): Record<string, unknown> {
    return { cellHiddenSize: this.cellHiddenSize };
  }
}

registerModelFactory('rnn', (settings, task) => new RnnModel(settings, task));
