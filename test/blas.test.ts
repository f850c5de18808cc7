import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { blasProductsActive, blasStatus, BLAS_VARIABLE, nativeAdamStep } from '../lib/blas';
import { describeEngine, initEngine } from '../lib/engine';
import { FlatAdam } from '../lib/optimizer';
import { RandomStream, streamKey } from '../lib/random';

/**
 * The wasm engine's products through OpenBLAS (lib/blas.ts, lib/native/blas.c), compared with
 * the same products on tfjs's pure-JavaScript cpu backend: values and gradients, relative error
 * in the L2 norm under 1e-5. The README's install steps build the addon, so a missing addon
 * fails here unless MODARCH_BLAS=0 turns it off on purpose.
 */
const RELATIVE_TOLERANCE = 1e-5;

const stream = new RandomStream(streamKey('blas-tests', 0));

function randomValues(shape: number[]): Float32Array {
  return stream.fillNormal(new Float32Array(shape.reduce((product, dimension) => product * dimension, 1)));
}

/** Runs `fn` on the given backend with fresh tensors of `values`, returning plain arrays. */
async function runOn(backend: string, fn: (...inputs: tf.Tensor[]) => tf.Tensor | tf.Tensor[], inputs: Array<[Float32Array, number[]]>) {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const tensors = inputs.map(([values, shape]) => tf.tensor(values, shape));
    const outputs = [fn(...tensors)].flat();
    return outputs.map((output) => ({ shape: output.shape, values: output.dataSync() as Float32Array }));
  });
}

function relativeError(actual: Float32Array, expected: Float32Array): number {
  let difference = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    difference += (actual[i] - expected[i]) ** 2;
    scale += expected[i] ** 2;
  }
  return Math.sqrt(difference) / (Math.sqrt(scale) || 1);
}

/** Asserts that `fn` gives the same outputs on wasm (OpenBLAS) and on cpu. */
async function assertSameOnBothBackends(
  label: string,
  fn: (...inputs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  shapes: number[][],
): Promise<void> {
  const inputs = shapes.map((shape) => [randomValues(shape), shape] as [Float32Array, number[]]);
  const expected = await runOn('cpu', fn, inputs);
  const actual = await runOn('wasm', fn, inputs);
  assert.equal(actual.length, expected.length, `${label}: number of outputs`);
  expected.forEach((output, index) => {
    assert.deepEqual(actual[index].shape, output.shape, `${label}: shape of output ${index}`);
    const error = relativeError(actual[index].values, output.values);
    assert.ok(error < RELATIVE_TOLERANCE, `${label}: output ${index} relative error ${error.toExponential(2)}`);
  });
}

/** Wraps `fn` to return its value and the gradients of sum(fn(inputs) * weights) for fixed random weights. */
function withGradients(fn: (...inputs: tf.Tensor[]) => tf.Tensor, outputShape: number[]) {
  const weights = randomValues(outputShape);
  return (...inputs: tf.Tensor[]) => {
    const loss = (...xs: tf.Tensor[]) => tf.sum(tf.mul(fn(...xs), tf.tensor(weights, outputShape))) as tf.Scalar;
    return [fn(...inputs), ...tf.grads(loss)(inputs)];
  };
}

const blasExpected = process.env[BLAS_VARIABLE] !== '0';

describe('OpenBLAS products on the wasm engine', () => {
  before(async () => {
    await initEngine('wasm');
  });

  it('are active after the wasm engine starts, unless turned off', async () => {
    await tf.setBackend('wasm');
    const status = blasStatus();
    assert.equal(status.active, blasExpected, `OpenBLAS products: ${JSON.stringify(status)}`);
    assert.equal(blasProductsActive(), blasExpected);
    assert.match(describeEngine(), blasExpected ? /with OpenBLAS products/ : /OpenBLAS off/);
  });

  it('match the cpu backend for every transpose combination, with gradients', async () => {
    for (const [transposeA, transposeB] of [[false, false], [true, false], [false, true], [true, true]]) {
      const aShape = transposeA ? [37, 19] : [19, 37];
      const bShape = transposeB ? [23, 37] : [37, 23];
      await assertSameOnBothBackends(
        `matMul transposeA=${transposeA} transposeB=${transposeB}`,
        withGradients((a, b) => tf.matMul(a, b, transposeA, transposeB), [19, 23]),
        [aShape, bShape],
      );
    }
  });

  it('match the cpu backend for batched and broadcast products', async () => {
    // tfjs 4.22's BatchMatMul gradient does not sum over broadcast batch axes (on any backend),
    // so operands shared across the batch are compared by value only.
    const cases: Array<[string, number[], number[], boolean, boolean, number[], boolean]> = [
      ['equal batches', [5, 8, 6], [5, 6, 7], false, false, [5, 8, 7], true],
      ['equal batches, both transposed', [5, 6, 8], [5, 7, 6], true, true, [5, 8, 7], true],
      ['two batch axes', [2, 3, 4, 5], [2, 3, 5, 4], false, false, [2, 3, 4, 4], true],
      ['left operand shared', [1, 8, 6], [5, 6, 7], false, false, [5, 8, 7], false],
      ['right operand shared, transposed', [5, 6, 8], [7, 6], true, true, [5, 8, 7], false],
      ['axes that broadcast both ways (tfjs fallback)', [2, 1, 4, 5], [1, 3, 5, 4], false, false, [2, 3, 4, 4], false],
    ];
    for (const [label, aShape, bShape, transposeA, transposeB, outShape, gradients] of cases) {
      const product = (a: tf.Tensor, b: tf.Tensor) => tf.matMul(a, b, transposeA, transposeB);
      await assertSameOnBothBackends(label, gradients ? withGradients(product, outShape) : product, [aShape, bShape]);
    }
  });

  it('match the cpu backend for fused products with a bias and an activation', async () => {
    const fused = (activation: 'linear' | 'relu' | 'elu', transposeB = false) => (a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) =>
      tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias, activation, transposeB });
    await assertSameOnBothBackends('linear, bias per column', fused('linear'), [[16, 9], [9, 12], [12]]);
    await assertSameOnBothBackends('ReLU, bias per column', fused('relu'), [[16, 9], [9, 12], [12]]);
    await assertSameOnBothBackends('ReLU, one bias value, transposed weight', fused('relu', true), [[16, 9], [12, 9], [1]]);
    await assertSameOnBothBackends('ELU (tfjs fallback)', fused('elu'), [[16, 9], [9, 12], [12]]);
  });

  it('handle empty batches and an empty inner dimension', async () => {
    await tf.setBackend('wasm');
    const emptyBatch = tf.matMul(tf.zeros([0, 2, 3]), tf.zeros([0, 3, 4]));
    assert.deepEqual(emptyBatch.shape, [0, 2, 4]);
    const fusedEmptyBatch = tf.fused.matMul({ a: tf.zeros([0, 2, 3]) as never, b: tf.zeros([0, 3, 4]) as never, bias: tf.ones([4]), activation: 'relu' });
    assert.deepEqual(fusedEmptyBatch.shape, [0, 2, 4]);

    if (!blasExpected) return; // tfjs-backend-wasm 4.22 returns uninitialized memory for k = 0.
    const noInner = tf.matMul(tf.zeros([2, 0]), tf.zeros([0, 3]));
    assert.deepEqual(Array.from(noInner.dataSync()), [0, 0, 0, 0, 0, 0]);
    const biasOnly = tf.fused.matMul({ a: tf.zeros([2, 0]) as tf.Tensor2D, b: tf.zeros([0, 3]) as tf.Tensor2D, bias: tf.tensor1d([1, -2, 3]), activation: 'relu' });
    assert.deepEqual(Array.from(biasOnly.dataSync()), [1, 0, 3, 1, 0, 3]);
  });

  it('reject outputs larger than the wasm heap', { skip: !blasExpected && 'MODARCH_BLAS=0' }, async () => {
    await tf.setBackend('wasm');
    assert.throws(() => tf.matMul(tf.ones([40000, 1]), tf.ones([1, 40000])), /output \[40000,40000\] needs 6\.0 GiB, more than the 4 GiB/);
  });

  it('still report mismatched shapes the way tfjs does', async () => {
    await tf.setBackend('wasm');
    assert.throws(() => tf.matMul(tf.zeros([3, 4]), tf.zeros([5, 6])), /inner shapes \(4\) and \(5\)/);
  });

  it('run Adam as the tfjs ops on cpu do', async () => {
    const size = 1000;
    const start = randomValues([size]);
    const gradients = Array.from({ length: 5 }, () => randomValues([size]));
    const settings = { learningRate: 3e-3, beta1: 0.8, beta2: 0.99, epsilon: 1e-6 };

    const trajectory = async (backend: string) => {
      await tf.setBackend(backend);
      const optimizer = new FlatAdam(size, settings);
      let parameters = tf.tensor1d(start);
      for (const gradient of gradients) {
        const gradientTensor = tf.tensor1d(gradient);
        const updated = optimizer.apply(parameters, gradientTensor);
        parameters.dispose();
        gradientTensor.dispose();
        parameters = updated;
      }
      const state = optimizer.state();
      const result = { parameters: parameters.dataSync() as Float32Array, ...state };
      parameters.dispose();
      optimizer.dispose();
      return result;
    };

    const expected = await trajectory('cpu');
    const actual = await trajectory('wasm');
    for (const key of ['parameters', 'firstMoment', 'secondMoment'] as const) {
      const error = relativeError(actual[key], expected[key]);
      assert.ok(error < RELATIVE_TOLERANCE, `Adam ${key}: relative error ${error.toExponential(2)}`);
    }
    assert.equal(actual.step, 5);

    await tf.setBackend('wasm');
    const fourOnes = tf.ones([4]) as tf.Tensor1D;
    assert.equal(nativeAdamStep(fourOnes, fourOnes, fourOnes, fourOnes, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, secondCorrection: 1, stepSize: 1 }) !== undefined, blasExpected);
    assert.equal(nativeAdamStep(fourOnes, tf.ones([5]) as tf.Tensor1D, fourOnes, fourOnes, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, secondCorrection: 1, stepSize: 1 }), undefined);
  });

  it('clone without copying and keep clones valid', async () => {
    await tf.setBackend('wasm');
    const buffers = () => tf.backend().numDataIds();
    const original = tf.tensor1d([1, 2, 3]);
    const before = buffers();
    const copy = tf.clone(original);
    assert.equal(buffers() - before, blasExpected ? 0 : 1, 'new data buffers for one clone');
    original.dispose();
    assert.deepEqual(Array.from(copy.dataSync()), [1, 2, 3]);
    copy.dispose();
    assert.equal(buffers(), before - 1, 'data buffers after disposing both');
  });

  it('reject operands outside the heap', { skip: !blasExpected && 'MODARCH_BLAS=0' }, () => {
    const addon = require(path.join(__dirname, '..', 'lib', 'native', 'build', 'Release', 'modarch_blas.node'));
    const heap = new ArrayBuffer(64 * 4);
    // 4 x 4 times 4 x 4 into offset 60: the result would need 16 floats from 60 in a heap of 64.
    assert.throws(() => addon.gemm(heap, 1, 4, 4, 4, 0, 0, 0, 0, 16, 0, 60, -1, 0, 0), /outside the heap/);
    assert.throws(() => addon.gemm(heap, 1, 4, 4, 4, 0, 0, 0, 0, 16, 0, 32, 0, 3, 0), /bias must hold n values or 1/);
    assert.throws(() => addon.gemm(new Float32Array(64), 1, 4, 4, 4, 0, 0, 0, 0, 16, 0, 32, -1, 0, 0), /ArrayBuffer/);
    assert.throws(() => addon.gemm(heap, 1, 4), /15 arguments/);

    // The same call in range computes a product: an identity A gives back B.
    const values = new Float32Array(heap);
    for (let i = 0; i < 4; i++) values[i * 4 + i] = 1;
    for (let i = 0; i < 16; i++) values[16 + i] = i + 1;
    addon.gemm(heap, 1, 4, 4, 4, 0, 0, 0, 0, 16, 0, 32, -1, 0, 0);
    assert.deepEqual(Array.from(values.subarray(32, 48)), Array.from({ length: 16 }, (_, i) => i + 1));
  });
});
