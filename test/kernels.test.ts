import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initEngine } from '../lib/engine';
import {
  concatColumns,
  linear,
  linearRelu,
  linearReluLinear,
  matMul,
  moduleSliceDots,
  splitColumns,
  splitFlat,
  sumOfProducts,
} from '../lib/kernels';
import { MlpModel } from '../lib/models/mlp';
import { MODEL_KINDS, ModelKind } from '../lib/models/types';
import { RandomStream, streamKey } from '../lib/random';

/**
 * Every custom op is compared with the same function written with tfjs's own ops, on random
 * inputs: its value and its gradients with respect to every input, for the loss
 * sum(output * R) with a random R. Errors are relative in the L2 norm, ||a - b|| / ||b||,
 * because single values near zero make elementwise relative errors meaningless.
 */
const RELATIVE_TOLERANCE = 1e-5;

/** The custom kernels exist for wasm; cpu runs the fallbacks, which must agree as well. */
const BACKENDS = ['wasm', 'cpu'] as const;

let stream = new RandomStream(streamKey('kernel-tests', 0));

function randomTensor(shape: number[]): tf.Tensor {
  const values = new Float32Array(shape.reduce((product, dimension) => product * dimension, 1));
  return tf.tensor(stream.fillNormal(values), shape);
}

function relativeError(actual: tf.Tensor, expected: tf.Tensor): number {
  return tf.tidy(() => {
    const difference = tf.norm(tf.sub(actual, expected)).dataSync()[0];
    const scale = tf.norm(expected).dataSync()[0];
    return scale === 0 ? difference : difference / scale;
  });
}

function assertClose(actual: tf.Tensor, expected: tf.Tensor, label: string): void {
  assert.deepEqual(actual.shape, expected.shape, `${label}: shape`);
  const error = relativeError(actual, expected);
  assert.ok(error < RELATIVE_TOLERANCE, `${label}: relative error ${error.toExponential(2)} >= ${RELATIVE_TOLERANCE}`);
}

/**
 * Asserts that `custom` and `reference` agree in value and in the gradients of
 * sum(output * R) with respect to each of `inputs`.
 */
function assertSameFunction(
  custom: (...inputs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  reference: (...inputs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  inputs: tf.Tensor[],
  label: string,
): void {
  tf.tidy(() => {
    const asList = (value: tf.Tensor | tf.Tensor[]) => (Array.isArray(value) ? value : [value]);
    const expectedOutputs = asList(reference(...inputs));
    const customOutputs = asList(custom(...inputs));
    assert.equal(customOutputs.length, expectedOutputs.length, `${label}: number of outputs`);
    expectedOutputs.forEach((expected, index) => assertClose(customOutputs[index], expected, `${label}: output ${index}`));

    const weights = expectedOutputs.map((output) => randomTensor(output.shape));
    const lossOf = (fn: typeof custom) => (...xs: tf.Tensor[]) =>
      tf.addN(asList(fn(...xs)).map((output, index) => tf.sum(tf.mul(output, weights[index])))) as tf.Scalar;
    const expectedGrads = tf.grads(lossOf(reference))(inputs);
    const customGrads = tf.grads(lossOf(custom))(inputs);
    expectedGrads.forEach((expected, index) => assertClose(customGrads[index], expected, `${label}: gradient of input ${index}`));
  });
}

for (const backend of BACKENDS) {
  describe(`kernels on ${backend}`, () => {
    before(async () => {
      await initEngine();
      assert.ok(await tf.setBackend(backend), `tf.setBackend("${backend}") failed`);
      stream = new RandomStream(streamKey('kernel-tests', backend));
    });

    after(async () => {
      await tf.setBackend('wasm');
    });

    it('matMul matches tf.matMul', () => {
      // [32, 48] x [48, 40] takes the direct weight gradient; [64, 3] x [3, 96] the flipped one.
      for (const [rows, inner, columns] of [[32, 48, 40], [64, 3, 96], [1, 7, 5]]) {
        const a = randomTensor([rows, inner]);
        const b = randomTensor([inner, columns]);
        assertSameFunction(
          (x, y) => matMul(x as tf.Tensor2D, y as tf.Tensor2D),
          (x, y) => tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D),
          [a, b],
          `matMul ${rows}x${inner}x${columns}`,
        );
      }
    });

    it('linear matches matMul plus bias', () => {
      for (const [rows, inputs, outputs] of [[32, 48, 40], [64, 3, 96], [16, 20, 1]]) {
        const x = randomTensor([rows, inputs]);
        const weight = randomTensor([inputs, outputs]);
        const bias = randomTensor([outputs]);
        assertSameFunction(
          (a, w, b) => linear(a as tf.Tensor2D, w, b),
          (a, w, b) => tf.add(tf.matMul(a as tf.Tensor2D, w as tf.Tensor2D), b),
          [x, weight, bias],
          `linear ${rows}x${inputs}x${outputs}`,
        );
      }
    });

    it('linear without bias matches tf.matMul', () => {
      const x = randomTensor([24, 10]);
      const weight = randomTensor([10, 30]);
      assertSameFunction(
        (a, w) => linear(a as tf.Tensor2D, w),
        (a, w) => tf.matMul(a as tf.Tensor2D, w as tf.Tensor2D),
        [x, weight],
        'linear without bias',
      );
    });

    it('linear with a full bias matrix', () => {
      const x = randomTensor([12, 6]);
      const weight = randomTensor([6, 9]);
      const bias = randomTensor([12, 9]);
      assertSameFunction(
        (a, w, b) => linear(a as tf.Tensor2D, w, b),
        (a, w, b) => tf.add(tf.matMul(a as tf.Tensor2D, w as tf.Tensor2D), b),
        [x, weight, bias],
        'linear with bias [n, out]',
      );
    });

    it('linearRelu matches relu of matMul plus bias', () => {
      for (const [rows, inputs, outputs] of [[32, 48, 40], [64, 3, 96]]) {
        const x = randomTensor([rows, inputs]);
        const weight = randomTensor([inputs, outputs]);
        const bias = randomTensor([outputs]);
        assertSameFunction(
          (a, w, b) => linearRelu(a as tf.Tensor2D, w, b),
          (a, w, b) => tf.relu(tf.add(tf.matMul(a as tf.Tensor2D, w as tf.Tensor2D), b)),
          [x, weight, bias],
          `linearRelu ${rows}x${inputs}x${outputs}`,
        );
      }
    });

    it('linearReluLinear matches two layers of tfjs ops', () => {
      const inputs = [randomTensor([20, 7]), randomTensor([7, 16]), randomTensor([16]), randomTensor([16, 5]), randomTensor([5])];
      assertSameFunction(
        (x, w1, b1, w2, b2) => linearReluLinear(x as tf.Tensor2D, w1, b1, w2, b2),
        (x, w1, b1, w2, b2) =>
          tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(x as tf.Tensor2D, w1 as tf.Tensor2D), b1)) as tf.Tensor2D, w2 as tf.Tensor2D), b2),
        inputs,
        'linearReluLinear',
      );
    });

    it('splitFlat matches tf.split and reshapes', () => {
      const shapes = [[3, 4], [4], [2, 2, 2], [5]];
      const sizes = [12, 4, 8, 5];
      const flat = randomTensor([29]);
      assertSameFunction(
        (x) => splitFlat(x, [[3, 4], 4, [2, 2, 2], [5]]),
        (x) => tf.split(x, sizes).map((piece, index) => tf.reshape(piece, shapes[index])),
        [flat],
        'splitFlat of a vector',
      );

      const matrix = randomTensor([5, 6]);
      assertSameFunction(
        (x) => splitFlat(x, [[4, 6], 6]),
        (x) => [tf.slice(x, [0, 0], [4, 6]), tf.reshape(tf.slice(x, [4, 0], [1, 6]), [6])],
        [matrix],
        'splitFlat of matrix rows',
      );
    });

    it('splitFlat rejects sizes that do not add up', () => {
      assert.throws(() => splitFlat(tf.zeros([10]), [4, 5]), /the shapes hold 9 values, but the input has shape \[10\]/);
    });

    it('splitColumns matches tf.split along columns', () => {
      const x = randomTensor([9, 10]);
      assertSameFunction(
        (a) => splitColumns(a as tf.Tensor2D, [3, 1, 6]),
        (a) => tf.split(a, [3, 1, 6], 1),
        [x],
        'splitColumns',
      );
      assert.throws(() => splitColumns(x as tf.Tensor2D, [3, 3]), /the widths add up to 6, but the input has shape \[9,10\]/);
    });

    it('concatColumns matches tf.concat along columns', () => {
      const blocks = [randomTensor([8, 3]), randomTensor([8, 5]), randomTensor([8, 1])];
      assertSameFunction(
        (...xs) => concatColumns(xs as tf.Tensor2D[]),
        (...xs) => tf.concat(xs, 1),
        blocks,
        'concatColumns',
      );
    });

    it('sumOfProducts matches a sum of tf.matMul', () => {
      const inputs = [randomTensor([16, 24]), randomTensor([16, 4]), randomTensor([24, 10]), randomTensor([4, 10])];
      assertSameFunction(
        (x1, x2, w1, w2) => sumOfProducts([x1, x2] as tf.Tensor2D[], [w1, w2] as tf.Tensor2D[]),
        (x1, x2, w1, w2) => tf.add(tf.matMul(x1 as tf.Tensor2D, w1 as tf.Tensor2D), tf.matMul(x2 as tf.Tensor2D, w2 as tf.Tensor2D)),
        inputs,
        'sumOfProducts',
      );
      assert.throws(() => sumOfProducts([inputs[0] as tf.Tensor2D], []), /expected as many inputs as weights/);
    });

    it('moduleSliceDots matches per-slice products and sums', () => {
      const modules = 3;
      const width = 5;
      const values = randomTensor([11, modules * width]);
      const weight = randomTensor([modules * width]);
      assertSameFunction(
        (x, w) => moduleSliceDots(x as tf.Tensor2D, w, modules),
        (x, w) => tf.sum(tf.reshape(tf.mul(x, w), [11, modules, width]), 2),
        [values, weight],
        'moduleSliceDots',
      );
      assert.throws(() => moduleSliceDots(values as tf.Tensor2D, tf.zeros([14]), modules), /expected 15 weights/);
    });

    for (const kind of MODEL_KINDS) {
      it(`packed MLP ${kind} matches per-module layers`, () => {
        const rules = 3;
        const model = new MlpModel({ kind, encoderDim: 4, hiddenDim: 12 }, rules);
        const flat = tf.tensor1d(model.layout.initialize(new RandomStream(streamKey('kernel-tests-mlp', kind))));
        const { inputs, rules: ruleTensor, targets } = mlpBatch(rules, 16);
        const batch = { inputs, rules: ruleTensor, targets };
        const weightsOfOutput = randomTensor([16, 1]);

        const packed = (parameters: tf.Tensor) => model.forward(model.layout.split(parameters as tf.Tensor1D), batch);
        const reference = (parameters: tf.Tensor) => perModuleForward(kind, model, parameters as tf.Tensor1D, inputs, rules);

        tf.tidy(() => {
          const packedResult = packed(flat);
          const referenceResult = reference(flat);
          assertClose(packedResult.output, referenceResult.output, `${kind}: output`);
          if (kind === 'monolithic') {
            assert.equal(packedResult.moduleWeights, null, 'monolithic has no module weights');
          } else {
            assertClose(packedResult.moduleWeights!, referenceResult.moduleWeights!, `${kind}: module weights`);
          }

          const lossOf = (forward: typeof reference) => (parameters: tf.Tensor) => {
            const result = forward(parameters);
            const moduleTerm = result.moduleWeights ? tf.sum(tf.square(result.moduleWeights)) : tf.scalar(0);
            return tf.add(tf.sum(tf.mul(result.output, weightsOfOutput)), moduleTerm) as tf.Scalar;
          };
          assertClose(tf.grad(lossOf(packed))(flat), tf.grad(lossOf(reference))(flat), `${kind}: gradient of the parameters`);
        });
        flat.dispose();
      });
    }
  });
}

/** Draws a batch in the MLP task's layout: inputs [n, 2 + R] (x1, x2, onehot(rule)), rules [n]. */
function mlpBatch(rules: number, rows: number): { inputs: tf.Tensor2D; rules: tf.Tensor; targets: tf.Tensor } {
  const inputs = new Float32Array(rows * (2 + rules));
  const ruleIds = new Int32Array(rows);
  for (let row = 0; row < rows; row++) {
    inputs[row * (2 + rules)] = stream.normal();
    inputs[row * (2 + rules) + 1] = stream.normal();
    ruleIds[row] = Math.floor(stream.uniform() * rules);
    inputs[row * (2 + rules) + 2 + ruleIds[row]] = 1;
  }
  return {
    inputs: tf.tensor2d(inputs, [rows, 2 + rules]),
    rules: tf.tensor1d(ruleIds, 'int32'),
    targets: tf.zeros([rows, 1]),
  };
}

/**
 * Runs the MLP models written layer by layer with tfjs's own ops, one module at a time, as the
 * model definitions read: module m is Linear(3e, h/R)-ReLU-Linear(h/R, h [+1]), and the
 * modules' outputs are summed with weights p_m. Parameters are cut from the flat vector with
 * tf.split, independent of the layout's own split.
 */
function perModuleForward(
  kind: ModelKind,
  model: MlpModel,
  flat: tf.Tensor1D,
  inputs: tf.Tensor2D,
  rules: number,
): { output: tf.Tensor; moduleWeights: tf.Tensor | null } {
  const layout = model.layout;
  const pieces = tf.split(flat, layout.entries.map((_, index) => layout.lengthOf(index)));
  const p: Record<string, tf.Tensor2D> = {};
  layout.entries.forEach((entry, index) => {
    // Vectors become one-row matrices, so every parameter is 2-D here.
    const shape = entry.shape.length === 1 ? [1, entry.shape[0]] : entry.shape;
    const matrix: tf.Tensor = tf.reshape(pieces[index], shape);
    p[entry.name] = matrix as tf.Tensor2D;
  });
  const dense = (x: tf.Tensor2D, weight: tf.Tensor2D, bias: tf.Tensor2D) => tf.add<tf.Tensor2D>(tf.matMul(x, weight), bias);
  const encoder = (x: tf.Tensor2D, name: string) =>
    dense(tf.relu(dense(x, p[`${name}.layer1.weight`], p[`${name}.layer1.bias`])), p[`${name}.layer2.weight`], p[`${name}.layer2.bias`]);

  const rows = inputs.shape[0];
  const x1 = tf.slice(inputs, [0, 0], [rows, 1]);
  const x2 = tf.slice(inputs, [0, 1], [rows, 1]);
  const context = tf.slice(inputs, [0, 2], [rows, rules]);
  const contextEmbedding = encoder(context, 'contextEncoder');
  const embedding = tf.concat([encoder(x1, 'valueEncoder'), encoder(x2, 'valueEncoder'), contextEmbedding], 1);

  let features: tf.Tensor2D;
  let moduleWeights: tf.Tensor2D | null = null;
  if (kind === 'monolithic') {
    features = encoder(embedding, 'core');
  } else {
    const hiddenDim = model.settings.hiddenDim;
    const width = model.moduleWidth;
    const moduleOutputs: tf.Tensor2D[] = [];
    const scores: tf.Tensor2D[] = [];
    for (let m = 0; m < rules; m++) {
      const firstWeight = tf.slice(p['modules.layer1.weight'], [0, m * width], [-1, width]);
      const firstBias = tf.slice(p['modules.layer1.bias'], [0, m * width], [1, width]);
      const hidden = tf.relu(dense(embedding, firstWeight, firstBias));
      const secondWeight = tf.slice(p['modules.layer2.weight'], [m * width, 0], [width, hiddenDim]);
      const secondBias = tf.slice(p['modules.layer2.bias'], [m, 0], [1, hiddenDim]);
      moduleOutputs.push(dense(hidden, secondWeight, secondBias));
      if (kind === 'modular') {
        // The score unit is the module's extra output h + 1: its weight column and bias.
        const scoreWeight = tf.reshape(tf.slice(p['modules.score.weight'], [0, m * width], [1, width]), [width, 1]) as tf.Tensor2D;
        const scoreBias = tf.slice(p['modules.score.bias'], [0, m], [1, 1]);
        scores.push(dense(hidden, scoreWeight, scoreBias));
      }
    }
    if (kind === 'modular') moduleWeights = tf.softmax(tf.concat(scores, 1));
    else if (kind === 'modular-op') moduleWeights = tf.softmax(dense(contextEmbedding, p['scorer.weight'], p['scorer.bias']));
    else moduleWeights = context;

    const weighted = moduleOutputs.map((output, m) => tf.mul(output, tf.slice(moduleWeights!, [0, m], [rows, 1])));
    features = tf.addN(weighted) as tf.Tensor2D;
  }
  const output = dense(tf.relu(dense(features, p['decoder.layer1.weight'], p['decoder.layer1.bias'])), p['decoder.layer2.weight'], p['decoder.layer2.bias']);
  return { output, moduleWeights };
}
