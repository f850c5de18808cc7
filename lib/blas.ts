import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/*
 * Matrix products of the wasm engine through the system's OpenBLAS.
 *
 * On tfjs-backend-wasm 4.22 in Node, a product runs on one core at about 30 GFLOP/s, and 10-18x
 * slower with a transposed operand or a batch (see kernels.ts). OpenBLAS runs the same products
 * at about 90-100 GFLOP/s on the same core, transposed or not (measured on a 2-core AMD EPYC VM,
 * OpenBLAS 0.3.21). The addon in lib/native calls it on the wasm heap directly, so no value is
 * copied. This module replaces the wasm kernels `BatchMatMul` and `_FusedMatMul` with ones that
 * call the addon, so every product in the library and in tfjs's own gradients runs on OpenBLAS.
 * Shapes the addon does not handle fall back to the original kernels.
 */

/** Environment variable: `MODARCH_BLAS=0` keeps tfjs's own wasm products. */
export const BLAS_VARIABLE = 'MODARCH_BLAS';

interface NativeBlas {
  gemm(
    heap: ArrayBuffer,
    batch: number,
    m: number,
    n: number,
    k: number,
    transposeA: number,
    transposeB: number,
    aOffset: number,
    aStride: number,
    bOffset: number,
    bStride: number,
    cOffset: number,
    biasOffset: number,
    biasLength: number,
    relu: number,
  ): void;
  adam(
    heap: ArrayBuffer,
    size: number,
    parameterOffset: number,
    gradientOffset: number,
    firstOffset: number,
    secondOffset: number,
    parameterOut: number,
    firstOut: number,
    secondOut: number,
    beta1: number,
    oneMinusBeta1: number,
    beta2: number,
    oneMinusBeta2: number,
    secondCorrection: number,
    epsilon: number,
    stepSize: number,
  ): void;
  setThreads(threads: number): boolean;
}

/** Paths of the addon built by `npm run build`, seen from lib/ (TypeScript sources) and from lib/dist/ (compiled). */
const ADDON_CANDIDATES = [
  path.join(__dirname, 'native', 'build', 'Release', 'modarch_blas.node'),
  path.join(__dirname, '..', 'native', 'build', 'Release', 'modarch_blas.node'),
];

/** Marks the replacement kernels, so that a second copy of this module does not wrap them again. */
const BLAS_MARK = Symbol.for('modarch.blasKernel');

let addon: NativeBlas | undefined;
let unavailableReason: string | undefined;

/**
 * Loads the addon once. Returns it, or undefined with the reason in `blasStatus()`. OpenBLAS runs
 * one thread per process: independent trainings use one worker process per core instead.
 */
function loadAddon(): NativeBlas | undefined {
  if (addon || unavailableReason) return addon;
  if (process.env[BLAS_VARIABLE] === '0') {
    unavailableReason = `${BLAS_VARIABLE}=0`;
    return undefined;
  }
  const file = ADDON_CANDIDATES.find((candidate) => fs.existsSync(candidate));
  if (!file) {
    unavailableReason = 'the addon is not built (install libopenblas-dev, then run `npm run build`)';
    return undefined;
  }
  // OpenBLAS reads this when it loads; setThreads below covers a library loaded earlier.
  process.env.OPENBLAS_NUM_THREADS ??= '1';
  try {
    const loaded = require(file) as NativeBlas;
    loaded.setThreads(1);
    addon = loaded;
  } catch (error) {
    unavailableReason = `the addon did not load: ${(error as Error).message}`;
  }
  return addon;
}

/** One product batch in the addon's terms. */
interface ProductPlan {
  outShape: number[];
  batch: number;
  m: number;
  n: number;
  k: number;
  aStride: number;
  bStride: number;
}

function sizeOf(shape: number[]): number {
  return shape.reduce((product, dimension) => product * dimension, 1);
}

/**
 * Plans op(a) @ op(b) over broadcast batch dimensions. Returns undefined for what the addon does
 * not handle (empty outputs, batches that broadcast along different axes), so that tfjs's own
 * kernel runs and reports any shape error itself.
 */
function planProduct(aShape: number[], bShape: number[], transposeA: boolean, transposeB: boolean): ProductPlan | undefined {
  if (aShape.length < 2 || bShape.length < 2) return undefined;
  const [aRows, aColumns] = aShape.slice(-2);
  const [bRows, bColumns] = bShape.slice(-2);
  const m = transposeA ? aColumns : aRows;
  const k = transposeA ? aRows : aColumns;
  const n = transposeB ? bRows : bColumns;
  if (k !== (transposeB ? bColumns : bRows) || m === 0 || n === 0) return undefined;

  const aBatchShape = aShape.slice(0, -2);
  const bBatchShape = bShape.slice(0, -2);
  let batchShape: number[];
  try {
    batchShape = tf.broadcast_util.assertAndGetBroadcastShape(aBatchShape, bBatchShape);
  } catch {
    return undefined;
  }
  const batch = sizeOf(batchShape);
  const aBatch = sizeOf(aBatchShape);
  const bBatch = sizeOf(bBatchShape);
  // Each operand is either one matrix for the whole batch or one matrix per product.
  if (batch === 0 || (aBatch !== 1 && aBatch !== batch) || (bBatch !== 1 && bBatch !== batch)) return undefined;
  return {
    outShape: [...batchShape, m, n],
    batch,
    m,
    n,
    k,
    aStride: aBatch === 1 ? 0 : m * k,
    bStride: bBatch === 1 ? 0 : k * n,
  };
}

/** Offset of a tensor's first value in the wasm heap, in floats. */
function heapOffset(wasm: BackendWasm, tensor: tf.TensorInfo): number {
  const data = wasm.dataIdMap.get(tensor.dataId) as unknown as { memoryOffset: number };
  return data.memoryOffset / Float32Array.BYTES_PER_ELEMENT;
}

type KernelArguments = Parameters<tf.KernelFunc>[0];

/** Runs the planned product on the heap, with an optional bias and ReLU, into a new output. */
function runProduct(
  native: NativeBlas,
  wasm: BackendWasm,
  plan: ProductPlan,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  bias: tf.TensorInfo | undefined,
  relu: boolean,
): tf.TensorInfo {
  const bytes = plan.batch * plan.m * plan.n * Float32Array.BYTES_PER_ELEMENT;
  if (bytes > MAX_HEAP_BYTES) {
    throw new Error(
      `matMul: the output [${plan.outShape}] needs ${(bytes / 2 ** 30).toFixed(1)} GiB, more than the 4 GiB that the wasm engine can address`,
    );
  }
  const output = wasm.makeOutput(plan.outShape, 'float32');
  if (plan.k === 0) {
    // An empty inner dimension gives zeros (plus bias). tfjs-backend-wasm 4.22 returns
    // uninitialized memory here, and gemm requires k >= 1.
    fillEmptyProduct(wasm, output, plan.n, bias, relu);
    return output;
  }
  // Read the heap only after the allocation above, which may grow (and so replace) it.
  native.gemm(
    (wasm.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer as ArrayBuffer,
    plan.batch,
    plan.m,
    plan.n,
    plan.k,
    transposeA ? 1 : 0,
    transposeB ? 1 : 0,
    heapOffset(wasm, a),
    plan.aStride,
    heapOffset(wasm, b),
    plan.bStride,
    heapOffset(wasm, output),
    bias ? heapOffset(wasm, bias) : -1,
    bias ? sizeOf(bias.shape) : 0,
    relu ? 1 : 0,
  );
  return output;
}

/** Largest wasm heap tfjs-backend-wasm 4.22 can grow to (its emscripten build's limit). */
const MAX_HEAP_BYTES = 4294901760;

/** Writes the result of a product with k = 0: the bias in every row (zeros without one), then ReLU. */
function fillEmptyProduct(wasm: BackendWasm, output: tf.TensorInfo, n: number, bias: tf.TensorInfo | undefined, relu: boolean): void {
  const values = wasm.typedArrayFromHeap(output) as Float32Array;
  if (!bias) {
    values.fill(0);
    return;
  }
  const biasValues = wasm.typedArrayFromHeap(bias) as Float32Array;
  for (let i = 0; i < values.length; i++) {
    const value = biasValues.length === 1 ? biasValues[0] : biasValues[i % n];
    values[i] = relu ? Math.max(value, 0) : value;
  }
}

/** Replacement of the wasm `BatchMatMul` kernel. */
function blasBatchMatMul(native: NativeBlas, original: tf.KernelFunc): tf.KernelFunc {
  return (args: KernelArguments) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const plan = a.dtype === 'float32' && b.dtype === 'float32' ? planProduct(a.shape, b.shape, transposeA, transposeB) : undefined;
    if (!plan) return original(args);
    return runProduct(native, args.backend as BackendWasm, plan, a, b, transposeA, transposeB, undefined, false);
  };
}

/**
 * Replacement of the wasm `_FusedMatMul` kernel (product, bias, activation) for a linear or
 * ReLU activation and a bias with one value per output column or a single value.
 */
function blasFusedMatMul(native: NativeBlas, original: tf.KernelFunc): tf.KernelFunc {
  return (args: KernelArguments) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const { transposeA, transposeB, activation } = args.attrs as { transposeA: boolean; transposeB: boolean; activation: string };
    const plan = a && b && a.dtype === 'float32' && b.dtype === 'float32' ? planProduct(a.shape, b.shape, transposeA, transposeB) : undefined;
    const biasFits = !bias || (bias.dtype === 'float32' && (sizeOf(bias.shape) === 1 || (plan !== undefined && sizeOf(bias.shape) === plan.n && bias.shape[bias.shape.length - 1] === plan.n)));
    const supported = plan && biasFits && !preluActivationWeights && (activation === 'linear' || activation === 'relu');
    if (!supported) return original(args);
    return runProduct(native, args.backend as BackendWasm, plan, a!, b!, transposeA, transposeB, bias, activation === 'relu');
  };
}

const ADAM_KERNEL = 'ModarchAdam';

/** Settings of one Adam step, as kernel attributes. */
export interface AdamStepSettings {
  beta1: number;
  beta2: number;
  epsilon: number;
  /** 1 - beta2^t, the second moment's bias correction at step t. */
  secondCorrection: number;
  /** learningRate / (1 - beta1^t). */
  stepSize: number;
}

/** Wasm kernel of one Adam step over flat float32 tensors: new parameters and moments. */
function adamKernel(native: NativeBlas): tf.KernelFunc {
  return ({ inputs, backend, attrs }: KernelArguments) => {
    const wasm = backend as BackendWasm;
    const { parameters, gradient, firstMoment, secondMoment } = inputs as Record<string, tf.TensorInfo>;
    const settings = attrs as unknown as AdamStepSettings;
    const outputs = [parameters, firstMoment, secondMoment].map((input) => wasm.makeOutput(input.shape, 'float32'));
    native.adam(
      (wasm.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer as ArrayBuffer,
      sizeOf(parameters.shape),
      heapOffset(wasm, parameters),
      heapOffset(wasm, gradient),
      heapOffset(wasm, firstMoment),
      heapOffset(wasm, secondMoment),
      ...(outputs.map((output) => heapOffset(wasm, output)) as [number, number, number]),
      settings.beta1,
      1 - settings.beta1,
      settings.beta2,
      1 - settings.beta2,
      settings.secondCorrection,
      settings.epsilon,
      settings.stepSize,
    );
    return outputs;
  };
}

/**
 * Runs one Adam step in a single pass of the addon and returns the new parameters, first and
 * second moments, or undefined when the addon is not in use (the caller then runs tfjs ops).
 * All four inputs are float32 vectors of one size.
 */
export function nativeAdamStep(
  parameters: tf.Tensor1D,
  gradient: tf.Tensor1D,
  firstMoment: tf.Tensor1D,
  secondMoment: tf.Tensor1D,
  settings: AdamStepSettings,
): [tf.Tensor1D, tf.Tensor1D, tf.Tensor1D] | undefined {
  if (!blasProductsActive() || !tf.getKernel(ADAM_KERNEL, 'wasm')) return undefined;
  const inputs = [parameters, gradient, firstMoment, secondMoment];
  if (inputs.some((input) => input.dtype !== 'float32' || input.size !== parameters.size)) return undefined;
  const attrs = { ...settings } as unknown as tf.NamedAttrMap;
  return tf.engine().runKernel(ADAM_KERNEL, { parameters, gradient, firstMoment, secondMoment }, attrs) as unknown as [
    tf.Tensor1D,
    tf.Tensor1D,
    tf.Tensor1D,
  ];
}

/**
 * Wasm `Identity` that shares the input's data, as the cpu backend's does, instead of copying
 * it. tfjs clones every input a gradient function saves, so a training step ran 35-45 copies.
 * Sharing is safe because tfjs kernels write only into outputs they allocate. In tfjs 4.22 the
 * cpu backend's `Identity` and the wasm `Reshape` share data the same way.
 */
function sharedIdentity(original: tf.KernelFunc): tf.KernelFunc {
  return (args: KernelArguments) => {
    const x = args.inputs.x as tf.TensorInfo;
    if (x.dtype === 'string') return original(args);
    (args.backend as BackendWasm).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}

/** Replaces one wasm kernel, keeping its setup function so the original stays usable as a fallback. */
function replaceKernel(kernelName: string, wrap: (original: tf.KernelFunc) => tf.KernelFunc): void {
  const original = tf.getKernel(kernelName, 'wasm');
  if (!original) throw new Error(`the wasm backend has no "${kernelName}" kernel to replace`);
  if ((original.kernelFunc as unknown as Record<symbol, boolean>)[BLAS_MARK]) return;
  const kernelFunc = wrap(original.kernelFunc);
  (kernelFunc as unknown as Record<symbol, boolean>)[BLAS_MARK] = true;
  tf.unregisterKernel(kernelName, 'wasm');
  tf.registerKernel({ ...original, kernelFunc });
}

/**
 * Routes the wasm engine's matrix products through OpenBLAS when the addon loads, and adds the
 * addon's Adam step and a copy-free `Identity`. Call after
 * `@tensorflow/tfjs-backend-wasm` is loaded and before the backend starts. Returns whether the
 * products now run on OpenBLAS.
 */
export function installBlasProducts(): boolean {
  const native = loadAddon();
  if (!native) return false;
  replaceKernel('BatchMatMul', (original) => blasBatchMatMul(native, original));
  replaceKernel('_FusedMatMul', (original) => blasFusedMatMul(native, original));
  replaceKernel('Identity', sharedIdentity);
  if (!tf.getKernel(ADAM_KERNEL, 'wasm')) tf.registerKernel({ kernelName: ADAM_KERNEL, backendName: 'wasm', kernelFunc: adamKernel(native) });
  return true;
}

/** True when the active backend is wasm and its products run on OpenBLAS. */
export function blasProductsActive(): boolean {
  if (tf.getBackend() !== 'wasm') return false;
  const kernel = tf.getKernel('BatchMatMul', 'wasm');
  return Boolean(kernel && (kernel.kernelFunc as unknown as Record<symbol, boolean>)[BLAS_MARK]);
}

/** Says whether the OpenBLAS products are in use and, when not, why. */
export function blasStatus(): { active: boolean; reason?: string } {
  if (blasProductsActive()) return { active: true };
  if (tf.getBackend() !== 'wasm') return { active: false, reason: `the engine is "${tf.getBackend()}", not wasm` };
  loadAddon();
  return { active: false, reason: unavailableReason ?? 'installBlasProducts() was not called' };
}
