import * as tf from '@tensorflow/tfjs';
import { blasProductsActive } from './blas';

/** Gates of an LSTM cell in PyTorch's order: input, forget, candidate (cell input), output. */
export const GATE_NAMES = ['i', 'f', 'g', 'o'] as const;
export type GateName = (typeof GATE_NAMES)[number];

/** One tensor per gate. */
export type PerGate<T extends tf.Tensor = tf.Tensor> = Record<GateName, T>;

/**
 * Rule that mixes the proposals of the R cells into the shared state at each step.
 * - `single`: one cell (R = 1), no mixing, as PyTorch's LSTMCell.
 * - `given`: module weights supplied per step and row, [length * batch, R] in time-major order.
 * - `scored`: weights are softmax over modules of sum_j relu(x_j) w_j, where x runs over the
 *   module's input-to-hidden and hidden-to-hidden preactivations and w over its score weights
 *   (per gate, [R units] each, in the column layout of the preactivations).
 */
export type ModuleMixing =
  | { kind: 'single' }
  | { kind: 'given'; moduleWeights: tf.Tensor2D }
  | { kind: 'scored'; inputScoreWeights: PerGate; recurrentScoreWeights: PerGate };

/** Inputs of `runLstmSequence`. */
export interface LstmSequenceOptions {
  /** Step inputs in time-major order: rows [t batch, (t + 1) batch) are step t. [length * batch, in]. */
  inputs: tf.Tensor2D;
  length: number;
  /** Number of cells R; 1 for `single`. */
  modules: number;
  /** Input-to-hidden weights per gate, [in, R units], module m in columns [m units, (m + 1) units). */
  inputWeights: PerGate;
  /** Hidden-to-hidden weights per gate, [units, R units], same column layout. */
  recurrentWeights: PerGate;
  /** Bias per gate ([R units]), added to the input-to-hidden part; b_ih + b_hh for a PyTorch cell. */
  biases?: PerGate;
  mixing: ModuleMixing;
}

/** Outputs of `runLstmSequence`, both in time-major row order. */
export interface LstmSequenceResult {
  /** Hidden state after each step, [length * batch, units]. */
  hidden: tf.Tensor2D;
  /** Module weights of each step, [length * batch, R]; null for `single`. */
  moduleWeights: tf.Tensor2D | null;
}

/**
 * Runs R LSTM cells over a sequence from the zero state, with one hand-written backward pass.
 *
 * At each step every cell m reads the shared state (h, c) and proposes
 * c_m = sigmoid(f_m) c + sigmoid(i_m) tanh(g_m) and h_m = sigmoid(o_m) tanh(c_m), where the
 * preactivations are x W_ih + b + h W_hh (gate order i, f, g, o as PyTorch's LSTMCell). The new
 * shared state is sum over m of p_m (h_m, c_m), with p from `options.mixing`; `single` keeps
 * the one proposal as it is.
 *
 * Why one custom operation: recorded op by op on the tape, each step took about 30 operations,
 * tfjs copied every tensor an operation saved for its gradient, and each weight gradient ran as
 * one small product per step and gate. Here the backward pass walks the steps once, and each
 * weight gradient is one product over all steps.
 *
 * NOTE: the operation reads `inputs`, the given module weights and the output gradient with
 * `dataSync` to split them into steps, because `tf.slice` on the wasm backend copies its whole
 * input each time. That is cheap on the CPU backends (wasm, cpu, tensorflow) but stalls a GPU.
 * For `scored` mixing the returned module weights carry no gradient: the softmax gradient
 * reaches the score weights only through the hidden states.
 */
export function runLstmSequence(options: LstmSequenceOptions): LstmSequenceResult {
  const { inputs, length, modules, mixing } = options;
  const tensors: tf.Tensor[] = [inputs, ...GATE_NAMES.map((gate) => options.inputWeights[gate])];
  tensors.push(...GATE_NAMES.map((gate) => options.recurrentWeights[gate]));
  const biasOffset = tensors.length;
  if (options.biases) tensors.push(...GATE_NAMES.map((gate) => options.biases![gate]));
  const scoreOffset = tensors.length;
  if (mixing.kind === 'scored') {
    tensors.push(...GATE_NAMES.map((gate) => mixing.inputScoreWeights[gate]));
    tensors.push(...GATE_NAMES.map((gate) => mixing.recurrentScoreWeights[gate]));
  }
  const givenOffset = tensors.length;
  if (mixing.kind === 'given') tensors.push(mixing.moduleWeights);

  const layout: SequenceLayout = {
    length,
    modules,
    batch: inputs.shape[0] / length,
    columns: options.inputWeights.i.shape[1] as number,
    units: options.recurrentWeights.i.shape[0] as number,
    mixing: mixing.kind,
    hasBiases: options.biases !== undefined,
    biasOffset,
    scoreOffset,
    givenOffset,
  };

  let scoredWeights: tf.Tensor2D | null = null;
  const sequence = tf.customGrad(((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const values = args.slice(0, -1) as tf.Tensor[];
    const forward = forwardSequence(values, layout);
    // The tape keeps no inputs of a custom operation, so the ones the backward pass reads
    // (step inputs, weights, biases, score weights) are saved after the per-step tensors.
    save([...forward.saved, ...values.slice(0, givenOffset)]);
    // The scored module weights leave the forward scope through `keep`; the caller takes them over.
    if (forward.moduleWeights) scoredWeights = tf.keep(forward.moduleWeights);
    return {
      value: forward.hidden,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const stepCount = length * SAVED_PER_STEP.length;
        // tidy frees the backward pass's temporaries here rather than at the end of the step.
        return tf.tidy(() => backwardSequence(dy as tf.Tensor2D, saved.slice(0, stepCount), saved.slice(stepCount), layout));
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (...values: tf.Tensor[]) => tf.Tensor2D;

  const hidden = sequence(...tensors);
  let moduleWeights: tf.Tensor2D | null = null;
  if (mixing.kind === 'given') moduleWeights = mixing.moduleWeights;
  if (scoredWeights) {
    const kept: tf.Tensor2D = scoredWeights;
    moduleWeights = tf.clone(kept);
    kept.dispose();
  }
  return { hidden, moduleWeights };
}

/** Positions of the per-gate weights among the operation's inputs; the step inputs come first. */
const INPUT_WEIGHTS = 1;
const RECURRENT_WEIGHTS = INPUT_WEIGHTS + GATE_NAMES.length;

/** Sizes and input positions shared by the forward and backward passes. */
interface SequenceLayout {
  length: number;
  modules: number;
  batch: number;
  /** R units: columns of each gate's preactivations. */
  columns: number;
  units: number;
  mixing: ModuleMixing['kind'];
  hasBiases: boolean;
  biasOffset: number;
  scoreOffset: number;
  givenOffset: number;
}

/** Tensors saved per step for the backward pass, in this order. */
const SAVED_PER_STEP = [
  'inputGate',
  'forgetGate',
  'candidate',
  'outputGate',
  'proposedCell',
  'squashedCell',
  'previousHidden',
  'previousCell',
  'moduleWeights',
  'rectifiedInput.i',
  'rectifiedInput.f',
  'rectifiedInput.g',
  'rectifiedInput.o',
  'rectifiedRecurrent.i',
  'rectifiedRecurrent.f',
  'rectifiedRecurrent.g',
  'rectifiedRecurrent.o',
] as const;
type SavedName = (typeof SAVED_PER_STEP)[number];

function savedAt(saved: tf.Tensor[], step: number, name: SavedName): tf.Tensor2D {
  return saved[step * SAVED_PER_STEP.length + SAVED_PER_STEP.indexOf(name)] as tf.Tensor2D;
}

/**
 * Computes tanh(x) as 2 sigmoid(2x) - 1, because the wasm backend of tfjs 4.22 ran tf.tanh about
 * 15x slower than tf.sigmoid on a [256, 1024] tensor here. The absolute error is about 1e-7.
 */
function tanh<T extends tf.Tensor>(x: T): T {
  return tf.sub(tf.mul(tf.sigmoid(tf.mul(x, 2)), 2), 1);
}

/** Splits time-major rows [length * batch, columns] into one tensor per step, reading the values once. */
function splitSteps(values: tf.Tensor2D, length: number): tf.Tensor2D[] {
  const [rows, columns] = values.shape;
  const batch = rows / length;
  const data = values.dataSync() as Float32Array;
  return Array.from({ length }, (_, step) =>
    tf.tensor2d(data.subarray(step * batch * columns, (step + 1) * batch * columns), [batch, columns]),
  );
}

/** Repeats a [batch, units] state for every module: [batch, R units]. */
function repeatForModules(state: tf.Tensor2D, modules: number): tf.Tensor2D {
  if (modules === 1) return state;
  const [batch, units] = state.shape;
  return tf.reshape(tf.mul(tf.reshape(state, [batch, 1, units]), tf.ones([1, modules, 1])), [batch, modules * units]);
}

/** Returns sum over m of weights[:, m] values[:, m-th block]: [batch, R units] -> [batch, units]. */
function mixModules(values: tf.Tensor2D, weights: tf.Tensor2D): tf.Tensor2D {
  const [batch, modules] = weights.shape;
  const units = values.shape[1] / modules;
  return tf.sum(tf.mul(tf.reshape(values, [batch, modules, units]), tf.reshape(weights, [batch, modules, 1])), 1);
}

/** Scales each module's block of `values` by that module's weight: [batch, R units]. */
function scaleModules(values: tf.Tensor2D, weights: tf.Tensor2D): tf.Tensor2D {
  const [batch, modules] = weights.shape;
  const columns = values.shape[1];
  const scaled = tf.mul(tf.reshape(values, [batch, modules, columns / modules]), tf.reshape(weights, [batch, modules, 1]));
  return tf.reshape(scaled, [batch, columns]);
}

/** Sums each module's block of `values`: [batch, R units] -> [batch, R]. */
function sumModules(values: tf.Tensor2D, modules: number): tf.Tensor2D {
  const [batch, columns] = values.shape;
  return tf.sum(tf.reshape(values, [batch, modules, columns / modules]), 2);
}

/**
 * Plain 2-D product. Inside this operation no tape records it, so the transposed forms of the
 * built-in gradient never run.
 */
function product(a: tf.Tensor, b: tf.Tensor): tf.Tensor2D {
  return tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D);
}

/** Returns column sums [columns] of `values` [rows, columns] as a product with a row of ones. */
function columnSums(values: tf.Tensor2D): tf.Tensor1D {
  return tf.reshape(product(tf.ones([1, values.shape[0]]) as tf.Tensor2D, values), [values.shape[1]]);
}

function forwardSequence(
  values: tf.Tensor[],
  layout: SequenceLayout,
): { hidden: tf.Tensor2D; moduleWeights: tf.Tensor2D | null; saved: tf.Tensor[] } {
  const { length, modules, mixing } = layout;
  const weightOf = (offset: number, gate: GateName) => values[offset + GATE_NAMES.indexOf(gate)] as tf.Tensor2D;
  const stepInputs = splitSteps(values[0] as tf.Tensor2D, length);
  const givenWeights = mixing === 'given' ? splitSteps(values[layout.givenOffset] as tf.Tensor2D, length) : null;
  const placeholder = tf.zeros([1, 1]) as tf.Tensor2D;

  const hiddens: tf.Tensor2D[] = [];
  const weightsPerStep: tf.Tensor2D[] = [];
  const saved: tf.Tensor[] = [];
  let hidden: tf.Tensor2D | null = null;
  let cell: tf.Tensor2D | null = null;

  for (let step = 0; step < length; step++) {
    const inputParts = {} as PerGate<tf.Tensor2D>;
    const recurrentParts = {} as PerGate<tf.Tensor2D>;
    const preactivations = {} as PerGate<tf.Tensor2D>;
    for (const gate of GATE_NAMES) {
      let inputPart = product(stepInputs[step], weightOf(INPUT_WEIGHTS, gate));
      if (layout.hasBiases) inputPart = tf.add<tf.Tensor2D>(inputPart, weightOf(layout.biasOffset, gate));
      inputParts[gate] = inputPart;
      // The state starts at zero, so the first step has no hidden-to-hidden product.
      if (hidden) recurrentParts[gate] = product(hidden, weightOf(RECURRENT_WEIGHTS, gate));
      preactivations[gate] = hidden ? tf.add<tf.Tensor2D>(inputPart, recurrentParts[gate]) : inputPart;
    }

    const inputGate = tf.sigmoid(preactivations.i);
    const candidate = tanh(preactivations.g);
    const outputGate = tf.sigmoid(preactivations.o);
    const forgetGate = cell ? tf.sigmoid(preactivations.f) : null;
    const written = tf.mul<tf.Tensor2D>(inputGate, candidate);
    const proposedCell: tf.Tensor2D =
      cell && forgetGate ? tf.add<tf.Tensor2D>(tf.mul(forgetGate, repeatForModules(cell, modules)), written) : written;
    const squashedCell: tf.Tensor2D = tanh(proposedCell);
    const proposedHidden = tf.mul<tf.Tensor2D>(outputGate, squashedCell);

    let weights: tf.Tensor2D | null = null;
    if (mixing === 'given') weights = givenWeights![step];
    if (mixing === 'scored') {
      let weighted: tf.Tensor | null = null;
      for (const gate of GATE_NAMES) {
        const inputTerm = tf.mul(tf.relu(inputParts[gate]), weightOf(layout.scoreOffset, gate));
        weighted = weighted ? tf.add(weighted, inputTerm) : inputTerm;
        if (!hidden) continue;
        const recurrentTerm = tf.mul(tf.relu(recurrentParts[gate]), weightOf(layout.scoreOffset + GATE_NAMES.length, gate));
        weighted = tf.add(weighted, recurrentTerm);
      }
      weights = tf.softmax(sumModules(weighted as tf.Tensor2D, modules)) as tf.Tensor2D;
      weightsPerStep.push(weights);
    }

    const previous: Record<'previousHidden' | 'previousCell', tf.Tensor2D> = {
      previousHidden: hidden ?? placeholder,
      previousCell: cell ?? placeholder,
    };
    const stepSaved: Record<SavedName, tf.Tensor> = {
      inputGate,
      forgetGate: forgetGate ?? placeholder,
      candidate,
      outputGate,
      proposedCell,
      squashedCell,
      ...previous,
      moduleWeights: weights ?? placeholder,
      'rectifiedInput.i': placeholder,
      'rectifiedInput.f': placeholder,
      'rectifiedInput.g': placeholder,
      'rectifiedInput.o': placeholder,
      'rectifiedRecurrent.i': placeholder,
      'rectifiedRecurrent.f': placeholder,
      'rectifiedRecurrent.g': placeholder,
      'rectifiedRecurrent.o': placeholder,
    };
    if (mixing === 'scored') {
      for (const gate of GATE_NAMES) {
        stepSaved[`rectifiedInput.${gate}`] = tf.relu(inputParts[gate]);
        if (hidden) stepSaved[`rectifiedRecurrent.${gate}`] = tf.relu(recurrentParts[gate]);
      }
    }
    saved.push(...SAVED_PER_STEP.map((name) => stepSaved[name]));

    if (weights) {
      hidden = mixModules(proposedHidden, weights);
      cell = mixModules(proposedCell, weights);
    } else {
      hidden = proposedHidden;
      cell = proposedCell;
    }
    hiddens.push(hidden);
  }

  return {
    hidden: tf.concat(hiddens, 0),
    moduleWeights: mixing === 'scored' ? tf.concat(weightsPerStep, 0) : null,
    saved,
  };
}

/**
 * Returns the gradients of every input of the operation, in input order. `saved` contains the
 * per-step tensors of the forward pass, and `values` the inputs before the given module weights.
 */
function backwardSequence(dy: tf.Tensor2D, saved: tf.Tensor[], values: tf.Tensor[], layout: SequenceLayout): tf.Tensor[] {
  const { length, modules, batch, columns, mixing } = layout;
  const weightOf = (offset: number, gate: GateName) => values[offset + GATE_NAMES.indexOf(gate)] as tf.Tensor2D;
  const hiddenGradients = splitSteps(dy, length);
  // The hidden-state gradient of all four gates is one product with the stacked W_hh^T [4 R units, units].
  const stackedRecurrent = stackTransposed(GATE_NAMES.map((gate) => weightOf(RECURRENT_WEIGHTS, gate)));

  // Per gate and step: gradients of the input-to-hidden and hidden-to-hidden parts.
  const inputPartGradients = emptyPerGate();
  const recurrentPartGradients = emptyPerGate();
  const moduleWeightGradients: tf.Tensor2D[] = [];
  const scoreProducts = { input: {} as Partial<PerGate>, recurrent: {} as Partial<PerGate> };
  let carriedHidden: tf.Tensor2D | null = null;
  let carriedCell: tf.Tensor2D | null = null;

  for (let step = length - 1; step >= 0; step--) {
    const get = (name: SavedName) => savedAt(saved, step, name);
    const hasPrevious = step > 0;
    const weights = mixing === 'single' ? null : get('moduleWeights');
    const hiddenGradient: tf.Tensor2D = carriedHidden
      ? tf.add<tf.Tensor2D>(hiddenGradients[step], carriedHidden)
      : hiddenGradients[step];
    const cellGradient = carriedCell;

    // Mixing: h = sum_m p_m h_m and c = sum_m p_m c_m.
    let proposedHiddenGradient = hiddenGradient;
    let proposedCellGradient = cellGradient;
    let logitGradient: tf.Tensor2D | null = null;
    if (weights) {
      const proposedHidden = tf.mul(get('outputGate'), get('squashedCell')) as tf.Tensor2D;
      const spreadHidden = repeatForModules(hiddenGradient, modules);
      proposedHiddenGradient = scaleModules(spreadHidden, weights);
      let moduleWeightGradient = sumModules(tf.mul(proposedHidden, spreadHidden), modules);
      if (cellGradient) {
        const spreadCell = repeatForModules(cellGradient, modules);
        proposedCellGradient = scaleModules(spreadCell, weights);
        const cellTerm = sumModules(tf.mul(get('proposedCell'), spreadCell), modules);
        moduleWeightGradient = tf.add(moduleWeightGradient, cellTerm);
      }
      if (mixing === 'given') moduleWeightGradients.push(moduleWeightGradient);
      if (mixing === 'scored') {
        // Softmax: dlogits = p (dp - sum_m p_m dp_m).
        const centered = tf.sub(moduleWeightGradient, tf.sum(tf.mul(weights, moduleWeightGradient), 1, true));
        logitGradient = tf.mul(weights, centered) as tf.Tensor2D;
      }
    }

    // Cell update: c_m = f c + i g and h_m = o tanh(c_m).
    const outputGate = get('outputGate');
    const squashedCell = get('squashedCell');
    let candidateCellGradient = tf.mul(tf.mul(proposedHiddenGradient, outputGate), tf.sub(1, tf.square(squashedCell)));
    if (proposedCellGradient) candidateCellGradient = tf.add(candidateCellGradient, proposedCellGradient);
    const inputGate = get('inputGate');
    const candidate = get('candidate');
    const preactivationGradients: PerGate<tf.Tensor2D> = {
      i: tf.mul(tf.mul(candidateCellGradient, candidate), tf.mul(inputGate, tf.sub(1, inputGate))),
      f: tf.zeros([batch, columns]),
      g: tf.mul(tf.mul(candidateCellGradient, inputGate), tf.sub(1, tf.square(candidate))),
      o: tf.mul(tf.mul(proposedHiddenGradient, squashedCell), tf.mul(outputGate, tf.sub(1, outputGate))),
    };
    if (hasPrevious) {
      const forgetGate = get('forgetGate');
      const previousCell = repeatForModules(get('previousCell'), modules);
      const forgetSlope = tf.mul(forgetGate, tf.sub(1, forgetGate));
      preactivationGradients.f = tf.mul(tf.mul(candidateCellGradient, previousCell), forgetSlope);
      const throughForget = tf.mul(candidateCellGradient, forgetGate) as tf.Tensor2D;
      carriedCell = modules === 1 ? throughForget : sumBlocks(throughForget, modules);
    }

    // Scores: logit_m = sum over module m's columns of relu(x) w, for both parts.
    const inputGradients: PerGate<tf.Tensor2D> = { ...preactivationGradients };
    const recurrentGradients: PerGate<tf.Tensor2D> = { ...preactivationGradients };
    if (logitGradient) {
      const spread = repeatEachModule(logitGradient, columns / modules);
      for (const gate of GATE_NAMES) {
        const rectifiedInput = get(`rectifiedInput.${gate}`);
        const inputScore = tf.mul(tf.mul(spread, weightOf(layout.scoreOffset, gate)), tf.step(rectifiedInput));
        inputGradients[gate] = tf.add<tf.Tensor2D>(inputGradients[gate], inputScore);
        scoreProducts.input[gate] = accumulate(scoreProducts.input[gate], tf.mul(spread, rectifiedInput));
        if (!hasPrevious) continue;
        const rectifiedRecurrent = get(`rectifiedRecurrent.${gate}`);
        const scoreWeight = weightOf(layout.scoreOffset + GATE_NAMES.length, gate);
        const recurrentScore = tf.mul(tf.mul(spread, scoreWeight), tf.step(rectifiedRecurrent));
        recurrentGradients[gate] = tf.add<tf.Tensor2D>(recurrentGradients[gate], recurrentScore);
        scoreProducts.recurrent[gate] = accumulate(scoreProducts.recurrent[gate], tf.mul(spread, rectifiedRecurrent));
      }
    }

    for (const gate of GATE_NAMES) inputPartGradients[gate][step] = inputGradients[gate];
    if (hasPrevious) {
      for (const gate of GATE_NAMES) recurrentPartGradients[gate][step - 1] = recurrentGradients[gate];
      carriedHidden = stackedRecurrent.times(tf.concat(GATE_NAMES.map((gate) => recurrentGradients[gate]), 1));
    }
  }

  const gradients = weightGradients(values, saved, inputPartGradients, recurrentPartGradients, layout);

  if (mixing === 'scored') {
    for (const part of ['input', 'recurrent'] as const) {
      const offset = layout.scoreOffset + (part === 'input' ? 0 : GATE_NAMES.length);
      for (const gate of GATE_NAMES) {
        const accumulated = scoreProducts[part][gate];
        const shape = weightOf(offset, gate).shape;
        gradients.push(accumulated ? tf.reshape(columnSums(accumulated as tf.Tensor2D), shape) : tf.zeros(shape));
      }
    }
  }
  if (mixing === 'given') gradients.push(tf.concat(moduleWeightGradients.reverse(), 0));
  return gradients;
}

/**
 * Returns the gradients of the step inputs, the input-to-hidden and hidden-to-hidden weights and
 * the biases, in input order, from the preactivation gradients of every step and gate.
 * Each weight gradient x^T dz is one product over all steps, computed as (dz^T x)^T. In that
 * order XNNPACK packs the shared x once for all four gates, and each bias gradient is a sum
 * along the rows of the transposed dz, which needs no further transpose.
 */
function weightGradients(
  values: tf.Tensor[],
  saved: tf.Tensor[],
  inputPartGradients: Record<GateName, tf.Tensor2D[]>,
  recurrentPartGradients: Record<GateName, tf.Tensor2D[]>,
  layout: SequenceLayout,
): tf.Tensor[] {
  const { length, units, columns } = layout;
  const weightOf = (offset: number, gate: GateName) => values[offset + GATE_NAMES.indexOf(gate)] as tf.Tensor2D;
  const inputs = values[0] as tf.Tensor2D;

  const allInputParts = GATE_NAMES.map((gate) => tf.concat(inputPartGradients[gate], 0));
  const stackedInput = stackTransposed(GATE_NAMES.map((gate) => weightOf(INPUT_WEIGHTS, gate)));
  const gradients: tf.Tensor[] = [stackedInput.times(tf.concat(allInputParts, 1))];
  const previousHiddens = Array.from({ length: length - 1 }, (_, step) => savedAt(saved, step + 1, 'previousHidden'));
  const stackedHiddens = previousHiddens.length > 0 ? tf.concat(previousHiddens, 0) : null;
  const biasShape = (gate: GateName) => weightOf(layout.biasOffset, gate).shape;

  if (blasProductsActive()) {
    // OpenBLAS reads transposed operands in place: x^T dz directly, bias sums as products.
    for (const parts of allInputParts) gradients.push(tf.matMul(inputs, parts, true, false));
    for (const gate of GATE_NAMES) {
      gradients.push(stackedHiddens ? tf.matMul(stackedHiddens, tf.concat(recurrentPartGradients[gate], 0), true, false) : tf.zeros([units, columns]));
    }
    if (layout.hasBiases) GATE_NAMES.forEach((gate, index) => gradients.push(tf.reshape(columnSums(allInputParts[index]), biasShape(gate))));
    return gradients;
  }

  const transposedInputParts = allInputParts.map((parts) => tf.transpose(parts));
  for (const transposed of transposedInputParts) gradients.push(tf.transpose(product(transposed, inputs)));
  for (const gate of GATE_NAMES) {
    if (!stackedHiddens) {
      gradients.push(tf.zeros([units, columns]));
      continue;
    }
    const transposed = tf.transpose(tf.concat(recurrentPartGradients[gate], 0));
    gradients.push(tf.transpose(product(transposed, stackedHiddens)));
  }

  if (layout.hasBiases) {
    GATE_NAMES.forEach((gate, index) => {
      gradients.push(tf.reshape(tf.sum(transposedInputParts[index], 1), biasShape(gate)));
    });
  }
  return gradients;
}

/**
 * Stacks the gate weights W_g [in, out] as [W_1^T; W_2^T; ...] for products dz W^T, where dz
 * contains every gate's gradient side by side. On OpenBLAS the weights stay side by side and
 * the product reads them transposed. Otherwise they are transposed once here.
 */
function stackTransposed(weights: tf.Tensor2D[]): { times: (gradients: tf.Tensor2D) => tf.Tensor2D } {
  if (blasProductsActive()) {
    const sideBySide = tf.concat(weights, 1);
    return { times: (gradients) => tf.matMul(gradients, sideBySide, false, true) };
  }
  const stacked = tf.concat(weights.map((weight) => tf.transpose(weight)), 0);
  return { times: (gradients) => product(gradients, stacked) };
}

/** Sums the R blocks of `values` column-wise: [batch, R units] -> [batch, units]. */
function sumBlocks(values: tf.Tensor2D, modules: number): tf.Tensor2D {
  const [batch, columns] = values.shape;
  return tf.sum(tf.reshape(values, [batch, modules, columns / modules]), 1);
}

/** Repeats each module's value over that module's columns: [batch, R] -> [batch, R width]. */
function repeatEachModule(values: tf.Tensor2D, width: number): tf.Tensor2D {
  const [batch, modules] = values.shape;
  return tf.reshape(tf.mul(tf.reshape(values, [batch, modules, 1]), tf.ones([1, 1, width])), [batch, modules * width]);
}

function emptyPerGate(): Record<GateName, tf.Tensor2D[]> {
  return { i: [], f: [], g: [], o: [] };
}

function accumulate(total: tf.Tensor | undefined, term: tf.Tensor): tf.Tensor {
  return total ? tf.add(total, term) : term;
}
