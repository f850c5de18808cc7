import * as tf from '@tensorflow/tfjs';
import { SettingError } from '../errors';
import { linear, linearReluLinear, matMul, scaleModuleSlices, sumModuleSlices } from '../kernels';
import { ParameterLayout, splitFlat } from '../parameters';
import { BatchTensors, ForwardResult, Model, ModelSettings } from './types';

/** Attention heads per module in the modular models. Monolithic has as many heads per rule. */
export const HEADS_PER_MODULE = 2;

/**
 * Returns the hidden size I of each module's group linear layers, chosen so that the modular
 * models have about as many parameters as Monolithic:
 *   I = floor(2D (R H (A + D) + A) / (R (A (H + 1) + R H D))), with H = 2 heads per module.
 * The formula is the one of the benchmark's reference PyTorch code (Mittal et al., 2022).
 */
export function mhaIntermediateSize(encoderDim: number, hiddenDim: number, ruleCount: number): number {
  const D = encoderDim;
  const A = hiddenDim;
  const R = ruleCount;
  const H = HEADS_PER_MODULE;
  const numerator = 2 * D * (R * H * (A + D) + A);
  const denominator = R * (A * (H + 1) + R * H * D);
  return Math.floor(numerator / denominator);
}

/** Intermediate results of a forward pass, for tests and inspection. */
export interface MhaForwardDetails extends ForwardResult {
  /** Softmax attention weights [batch, heads, query token, key token], 0 on the diagonal. */
  attention: tf.Tensor4D;
}

/**
 * The MHA models. Shared pieces: a token encoder Linear(in, D)-ReLU-Linear(D, D), a decoder
 * Linear(D, D)-ReLU-Linear(D, 1) applied to every token, and self-masked attention with
 * H = 2R heads of size d = A / (2R). No token attends to itself, because the diagonal of the
 * scores is -Infinity before the softmax, and scores are scaled by d^-0.5.
 *
 * Monolithic: the attention output [A] and a Linear(D, d) projection of the token go through
 * Linear(d (H + 1), 2D)-ReLU-Linear(2D, D). The modular models have R modules; module m owns
 * heads 2m and 2m + 1 and slice m of a Linear(D, d R) token projection, and maps those 3d
 * values through group linear layers 3d -> I -> D (+1 score logit for Modular), I from
 * `mhaIntermediateSize`. Module outputs are summed with weights p_m: a softmax of the score
 * logits (Modular), softmax(MLP(R -> d -> R)(onehot(rule))) (Modular-op) or onehot(rule)
 * (GT-Modular).
 *
 * For speed on backends where only plain 2-D matrix products are fast (tfjs-backend-wasm),
 * every token-wise layer runs as 2-D products over [batch * length, features], and the second
 * group layer runs as one product over the p-scaled hidden slices of all modules, because
 *   sum_m p_m (hidden_m W2_m + b2_m) = [p_1 hidden_1, ..., p_R hidden_R] W2 + p B2.
 * The first group layer (a different input per module) runs as two products per module.
 */
export class MhaModel implements Model {
  readonly architecture = 'mha' as const;
  readonly layout = new ParameterLayout();
  /** Attention heads in total: 2R for every kind. */
  readonly headCount: number;
  /** Size d of each head. */
  readonly headDim: number;
  /** Hidden size I of the group linear layers; null for Monolithic. */
  readonly intermediateSize: number | null;
  /** Index of the first one-hot context column in a token's input. */
  readonly contextOffset: number;

  constructor(readonly settings: ModelSettings, readonly ruleCount: number, readonly inputSize: number) {
    const { kind, encoderDim: D, hiddenDim: A } = settings;
    const R = ruleCount;
    this.headCount = HEADS_PER_MODULE * R;
    this.headDim = A / this.headCount;
    this.contextOffset = inputSize - R;
    if (!Number.isInteger(this.headDim)) {
      throw new SettingError('hiddenDim', A, `a multiple of 2 * rules = ${this.headCount} (two attention heads per rule)`);
    }
    if (this.contextOffset < 0) throw new SettingError('inputSize', inputSize, `at least the number of rules (${R})`);
    const d = this.headDim;

    this.layout.addLinear('encoder.layer1', inputSize, D).addLinear('encoder.layer2', D, D);
    this.layout.addLinear('attention.query', D, A).addLinear('attention.key', D, A).addLinear('attention.value', D, A);

    if (kind === 'monolithic') {
      this.intermediateSize = null;
      this.layout.addLinear('attention.tokenProjection', D, d);
      this.layout.addLinear('core.layer1', d * (this.headCount + 1), 2 * D).addLinear('core.layer2', 2 * D, D);
    } else {
      const I = mhaIntermediateSize(D, A, R);
      if (I < 1) {
        throw new SettingError('encoderDim', D, `a size that gives each module a hidden size >= 1 (got ${I} with A = ${A}, R = ${R})`);
      }
      this.intermediateSize = I;
      const moduleInput = d * (HEADS_PER_MODULE + 1);
      this.layout.addLinear('attention.tokenProjection', D, d * R);
      this.layout.add('modules.layer1.weight', [R, moduleInput, I], moduleInput);
      this.layout.add('modules.layer1.bias', [R, I], moduleInput);
      this.layout.add('modules.layer2.weight', [R, I, D], I);
      this.layout.add('modules.layer2.bias', [R, D], I);
      if (kind === 'modular') {
        // The score logit is the (D + 1)-th output unit of each module's second group layer.
        this.layout.add('modules.score.weight', [R, I], I);
        this.layout.add('modules.score.bias', [R], I);
      }
      if (kind === 'modular-op') this.layout.addLinear('scorer.layer1', R, d).addLinear('scorer.layer2', d, R);
    }

    this.layout.addLinear('decoder.layer1', D, D).addLinear('decoder.layer2', D, 1);
  }

  /** Shapes: inputs [batch, length, in] -> output [batch, length, 1], moduleWeights [batch, length, R]. */
  forward(p: Record<string, tf.Tensor>, batch: BatchTensors): ForwardResult {
    const { output, moduleWeights } = this.run(p, batch);
    return { output, moduleWeights };
  }

  /** Runs the forward pass and also returns the attention weights [batch, heads, length, length]. */
  forwardWithAttention(p: Record<string, tf.Tensor>, batch: BatchTensors): MhaForwardDetails {
    const { output, moduleWeights, attention } = this.run(p, batch);
    const [batchSize, length] = batch.inputs.shape;
    const byHead = tf.reshape(attention, [this.headCount, batchSize, length, length]);
    return { output, moduleWeights, attention: tf.transpose(byHead, [1, 0, 2, 3]) as tf.Tensor4D };
  }

  /** Runs the forward pass. The returned `attention` is [heads * batch, length, length], head-major. */
  private run(p: Record<string, tf.Tensor>, batch: BatchTensors): ForwardResult & { attention: tf.Tensor3D } {
    const [batchSize, length, width] = batch.inputs.shape;
    if (batch.inputs.rank !== 3 || width !== this.inputSize) {
      throw new SettingError('inputs shape', batch.inputs.shape, `[batch, length, ${this.inputSize}]`);
    }
    const tokenCount = batchSize * length;
    const R = this.ruleCount;
    const kind = this.settings.kind;

    const tokens = tf.reshape(batch.inputs, [tokenCount, width]) as tf.Tensor2D;
    const encoded = linearReluLinear(
      tokens,
      p['encoder.layer1.weight'],
      p['encoder.layer1.bias'],
      p['encoder.layer2.weight'],
      p['encoder.layer2.bias'],
    );
    const query = linear(encoded, p['attention.query.weight'], p['attention.query.bias']);
    const key = linear(encoded, p['attention.key.weight'], p['attention.key.bias']);
    const value = linear(encoded, p['attention.value.weight'], p['attention.value.bias']);
    const tokenProjection = linear(encoded, p['attention.tokenProjection.weight'], p['attention.tokenProjection.bias']);
    const { perHead, attention } = selfMaskedAttention(query, key, value, batchSize, length, this.headCount, this.headDim);

    let features: tf.Tensor2D;
    let moduleWeights: tf.Tensor2D | null = null;
    if (kind === 'monolithic') {
      features = this.monolithicCore(p, perHead, tokenProjection);
    } else {
      const hidden = this.moduleHidden(p, perHead, tokenProjection);
      moduleWeights = this.moduleWeightsOf(p, hidden, batch.inputs as tf.Tensor3D);
      features = this.combineModules(p, hidden, moduleWeights);
    }

    const decoded = linearReluLinear(
      features,
      p['decoder.layer1.weight'],
      p['decoder.layer1.bias'],
      p['decoder.layer2.weight'],
      p['decoder.layer2.bias'],
    );
    return {
      output: tf.reshape(decoded, [batchSize, length, 1]),
      moduleWeights: moduleWeights ? tf.reshape(moduleWeights, [batchSize, length, R]) : null,
      attention,
    };
  }

  /**
   * Runs Linear(d (H + 1), 2D)-ReLU-Linear(2D, D) on [heads, token projection] of every token.
   * The first layer runs as two products (its weight rows for the heads, then for the token
   * projection) so that no [tokens, A + d] concatenation is built.
   * Shapes: perHead [H * tokens, d] (head-major), tokenProjection [tokens, d] -> [tokens, D].
   */
  private monolithicCore(p: Record<string, tf.Tensor>, perHead: tf.Tensor2D, tokenProjection: tf.Tensor2D): tf.Tensor2D {
    const A = this.settings.hiddenDim;
    const d = this.headDim;
    const tokenCount = tokenProjection.shape[0];
    // [H, tokens, d] -> [tokens, H, d]: every token's heads side by side.
    const attended = tf.reshape(tf.transpose(tf.reshape(perHead, [this.headCount, tokenCount, d]), [1, 0, 2]), [tokenCount, A]) as tf.Tensor2D;
    const [headRows, tokenRows] = splitRows(p['core.layer1.weight'] as tf.Tensor2D, [A, d]);
    const hidden = tf.relu(tf.add(matMul(attended, headRows), linear(tokenProjection, tokenRows, p['core.layer1.bias']))) as tf.Tensor2D;
    return linear(hidden, p['core.layer2.weight'], p['core.layer2.bias']);
  }

  /**
   * Runs each module's first group layer and its ReLU: module m reads its two heads and its
   * slice of the token projection, as two products (head rows and token rows of its weight).
   * Shapes: perHead [H * tokens, d] (head-major), tokenProjection [tokens, d R] -> hidden
   * [tokens, R I], module m in columns m I to (m + 1) I.
   *
   * Inputs are regrouped module-major ([R, tokens, ...]) by transposes so that each module's
   * block is contiguous: cutting contiguous blocks is cheap on wasm, column slices are not.
   */
  private moduleHidden(p: Record<string, tf.Tensor>, perHead: tf.Tensor2D, tokenProjection: tf.Tensor2D): tf.Tensor2D {
    const R = this.ruleCount;
    const d = this.headDim;
    const I = this.intermediateSize as number;
    const tokenCount = tokenProjection.shape[0];
    const headWidth = HEADS_PER_MODULE * d;

    // Module m owns heads 2m and 2m + 1: [R, 2, tokens, d] -> [R, tokens, 2, d].
    const headsByModule = tf.transpose(tf.reshape(perHead, [R, HEADS_PER_MODULE, tokenCount, d]), [0, 2, 1, 3]);
    const moduleHeads = splitBlocks(headsByModule, R, [tokenCount, headWidth]);
    // [tokens, R, d] -> [R, tokens, d]
    const projectionByModule = tf.transpose(tf.reshape(tokenProjection, [tokenCount, R, d]), [1, 0, 2]);
    const moduleProjections = splitBlocks(projectionByModule, R, [tokenCount, d]);

    // Each module's weight [3d, I] is its head rows [2d, I] followed by its token rows [d, I].
    const weightPieces = splitFlat(tf.reshape(p['modules.layer1.weight'], [-1]) as tf.Tensor1D, Array.from({ length: 2 * R }, (_, index) => (index % 2 === 0 ? headWidth * I : d * I)));
    const biases = splitFlat(tf.reshape(p['modules.layer1.bias'], [-1]) as tf.Tensor1D, new Array<number>(R).fill(I));

    const hidden = moduleHeads.map((heads, m) => {
      const headRows = tf.reshape(weightPieces[2 * m], [headWidth, I]) as tf.Tensor2D;
      const tokenRows = tf.reshape(weightPieces[2 * m + 1], [d, I]) as tf.Tensor2D;
      return tf.relu(tf.add(matMul(heads, headRows), linear(moduleProjections[m], tokenRows, biases[m]))) as tf.Tensor2D;
    });

    // [R * tokens, I] -> [tokens, R, I]
    return tf.reshape(tf.transpose(tf.reshape(concatBlocks(hidden), [R, tokenCount, I]), [1, 0, 2]), [tokenCount, R * I]) as tf.Tensor2D;
  }

  /**
   * Module weights p [tokens, R] of the modular kinds. Modular-op and GT-Modular read the
   * one-hot rule context from the inputs. Shapes: hidden [tokens, R I], inputs [batch, length, in].
   */
  private moduleWeightsOf(p: Record<string, tf.Tensor>, hidden: tf.Tensor2D, inputs: tf.Tensor3D): tf.Tensor2D {
    const R = this.ruleCount;
    const kind = this.settings.kind;
    if (kind === 'modular') {
      const scoreProducts = tf.mul(hidden, tf.reshape(p['modules.score.weight'], [-1])) as tf.Tensor2D;
      return tf.softmax(tf.add(sumModuleSlices(scoreProducts, R), p['modules.score.bias'])) as tf.Tensor2D;
    }

    const [batchSize, length] = inputs.shape;
    const context = tf.reshape(tf.slice(inputs, [0, 0, this.contextOffset], [batchSize, length, R]), [batchSize * length, R]) as tf.Tensor2D;
    if (kind === 'modular-op') {
      return tf.softmax(
        linearReluLinear(context, p['scorer.layer1.weight'], p['scorer.layer1.bias'], p['scorer.layer2.weight'], p['scorer.layer2.bias']),
      ) as tf.Tensor2D;
    }
    return context;
  }

  /**
   * Runs every module's second group layer and sums the outputs with weights p, as one product
   * over the p-scaled hidden slices. Shapes: hidden [tokens, R I], moduleWeights [tokens, R] -> [tokens, D].
   */
  private combineModules(p: Record<string, tf.Tensor>, hidden: tf.Tensor2D, moduleWeights: tf.Tensor2D): tf.Tensor2D {
    const weight = tf.reshape(p['modules.layer2.weight'], [hidden.shape[1], this.settings.encoderDim]);
    return tf.add(linear(scaleModuleSlices(hidden, moduleWeights), weight), linear(moduleWeights, p['modules.layer2.bias'])) as tf.Tensor2D;
  }

  describe(): Record<string, unknown> {
    return { headCount: this.headCount, headDim: this.headDim, intermediateSize: this.intermediateSize };
  }
}

/**
 * Multi-head attention in which no token attends to itself. Shapes: query, key, value
 * [batch * length, heads * headDim] (head h in columns h headDim to (h + 1) headDim) ->
 * perHead [heads * batch * length, headDim] (the attended values, head-major) and attention
 * [heads * batch, length, length].
 *
 * NOTE: the two products here are 3-D batched products of batch * heads small matrices, which
 * tfjs-backend-wasm 4.22 runs in a plain loop, not in XNNPACK. With their gradients they took
 * about 40% of the CPU time of a training step at R = 4, D = 64, A = 256, length 10, batch 256
 * (scratch timings on a shared 2-core machine); no 2-D formulation without waste was found.
 */
export function selfMaskedAttention(
  query: tf.Tensor2D,
  key: tf.Tensor2D,
  value: tf.Tensor2D,
  batchSize: number,
  length: number,
  heads: number,
  headDim: number,
): { perHead: tf.Tensor2D; attention: tf.Tensor3D } {
  // Head-major order keeps every later regrouping a transpose of rank <= 4. With a
  // [batch, heads, ...] order the modules need rank-5 transposes, which took about 60 ms per
  // step on wasm against about 1.5 ms for a rank-4 one of the same size.
  // [batch, length, heads, headDim] -> [heads, batch, length, headDim]
  const toHeads = (x: tf.Tensor2D) =>
    tf.reshape(tf.transpose(tf.reshape(x, [batchSize, length, heads, headDim]), [2, 0, 1, 3]), [heads * batchSize, length, headDim]) as tf.Tensor3D;

  const scores = tf.matMul(toHeads(query), toHeads(key), false, true);
  const masked = tf.add(tf.mul(scores, headDim ** -0.5), selfMask(length));
  const attention = tf.softmax(masked) as tf.Tensor3D;
  const perHead = tf.reshape(tf.matMul(attention, toHeads(value)), [heads * batchSize * length, headDim]) as tf.Tensor2D;
  return { perHead, attention };
}

/** Additive mask [length, length]: -Infinity on the diagonal, 0 elsewhere. */
function selfMask(length: number): tf.Tensor2D {
  const values = new Float32Array(length * length);
  for (let i = 0; i < length; i++) values[i * length + i] = -Infinity;
  return tf.tensor2d(values, [length, length]);
}

/** Splits the rows of a 2-D weight into consecutive blocks of `rows` rows. */
function splitRows(weight: tf.Tensor2D, rows: number[]): tf.Tensor2D[] {
  const columns = weight.shape[1];
  const pieces = splitFlat(tf.reshape(weight, [-1]) as tf.Tensor1D, rows.map((count) => count * columns));
  return pieces.map((piece, index) => tf.reshape(piece, [rows[index], columns]) as tf.Tensor2D);
}

/** Cuts a tensor whose first axis has `count` entries into `count` blocks of shape `shape`. */
function splitBlocks(x: tf.Tensor, count: number, shape: [number, number]): tf.Tensor2D[] {
  const pieces = splitFlat(tf.reshape(x, [-1]) as tf.Tensor1D, new Array<number>(count).fill(shape[0] * shape[1]));
  return pieces.map((piece) => tf.reshape(piece, shape) as tf.Tensor2D);
}

/**
 * Stacks 2-D blocks with equal column counts along the first axis, like `tf.concat(blocks, 0)`.
 * Its gradient cuts the blocks out with `splitFlat`. The built-in gradient runs one Slice per
 * block instead, and on wasm each Slice copies the whole gradient first.
 */
function concatBlocks(blocks: tf.Tensor2D[]): tf.Tensor2D {
  const sizes = blocks.map((block) => block.size);
  const shapes = blocks.map((block) => block.shape);
  const concatenate = tf.customGrad(((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const inputs = args.slice(0, -1) as tf.Tensor2D[];
    return {
      value: tf.concat(inputs, 0),
      gradFunc: (dy: tf.Tensor) =>
        splitFlat(tf.reshape(dy, [-1]) as tf.Tensor1D, sizes).map((piece, index) => tf.reshape(piece, shapes[index])),
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (...inputs: tf.Tensor2D[]) => tf.Tensor2D;
  return concatenate(...blocks);
}
