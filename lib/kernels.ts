import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { blasProductsActive } from './blas';

/*
 * Ops with their own gradients, because the built-in ones are slow on tfjs-backend-wasm 4.22
 * (XNNPACK, one thread in Node). The numbers below are estimates from micro-benchmarks (one op
 * repeated, timed with performance.now and process.cpuUsage) on a shared 2-core AMD EPYC VM
 * with Node 20:
 * - `tf.matMul` with `transposeA` or `transposeB` took 10-18x longer than a plain product, and
 *   the built-in matMul gradient uses both. An explicit `tf.transpose` costs about 1.5 ns per
 *   value.
 * - A product whose right operand is a tensor it has not seen before costs about 3 ns per value
 *   of that operand on top of the arithmetic, because XNNPACK repacks the operand (and caches
 *   the packed form per tensor). Gradients below pick the orientation that packs less.
 * - Summing a [256, 256] gradient over its rows (a bias gradient) took about 250 us, 4-5x more
 *   than summing over columns, because the reduction first transposes.
 * - `tf.split` and `tf.slice` copy the whole input out of the wasm heap once per piece.
 * - Every op costs roughly 10 us of JavaScript besides its arithmetic, and every input an op
 *   saves for its gradient is copied once, so fewer ops make a faster step.
 * When the products run on OpenBLAS (blas.ts), transposed operands cost nothing and nothing is
 * packed, so the gradients below pass transpose flags instead of choosing an orientation.
 */

/** Estimated cost, in ns per value, of an explicit transpose on wasm (see above). */
const TRANSPOSE_COST = 1.5;
/** Estimated cost, in ns per value of the right operand, of packing it for a product on wasm. */
const PACK_COST = 3;

const SPLIT_KERNEL = 'ModarchSplitFlat';
const CONCAT_KERNEL = 'ModarchConcatFlat';
const SPLIT_COLUMNS_KERNEL = 'ModarchSplitColumns';

/** Reads the shapes packed by `packShapes`. */
function unpackShapes(attrs: tf.NamedAttrMap): number[][] {
  const ranks = attrs.ranks as number[];
  const dimensions = attrs.dimensions as number[];
  let offset = 0;
  return ranks.map((rank) => {
    const shape = dimensions.slice(offset, offset + rank);
    offset += rank;
    return shape;
  });
}

/** Encodes a list of shapes as kernel attributes, which cannot hold nested lists. */
function packShapes(shapes: number[][]): tf.NamedAttrMap {
  return { ranks: shapes.map((shape) => shape.length), dimensions: shapes.flat() };
}

function sizeOf(shape: number[]): number {
  return shape.reduce((product, dimension) => product * dimension, 1);
}

/** Wasm kernel of `splitFlat`: one copy of each value from the heap into its piece. */
function splitFlatWasm({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const wasm = backend as BackendWasm;
  const x = inputs.x as tf.TensorInfo;
  const pieces = unpackShapes(attrs!).map((shape) => wasm.makeOutput(shape, x.dtype));

  // Take heap views only after every allocation: an allocation can grow the wasm memory, which
  // detaches views taken before it.
  const source = wasm.typedArrayFromHeap(x);
  let offset = 0;
  for (const piece of pieces) {
    const target = wasm.typedArrayFromHeap(piece);
    target.set(source.subarray(offset, offset + target.length));
    offset += target.length;
  }
  return pieces;
}

/** Wasm kernel of the gradient of `splitFlat`: the inputs' values end to end, in `shape`. */
function concatFlatWasm({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const wasm = backend as BackendWasm;
  const pieces = Object.keys(inputs)
    .sort((a, b) => Number(a) - Number(b))
    .map((key) => inputs[key] as tf.TensorInfo);
  const output = wasm.makeOutput(attrs!.shape as number[], pieces[0].dtype);

  const target = wasm.typedArrayFromHeap(output);
  let offset = 0;
  for (const piece of pieces) {
    const source = wasm.typedArrayFromHeap(piece);
    target.set(source, offset);
    offset += source.length;
  }
  return output;
}

/** Wasm kernel of `splitColumns`: copies each row's segment of every piece. */
function splitColumnsWasm({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const wasm = backend as BackendWasm;
  const x = inputs.x as tf.TensorInfo;
  const [rows, columns] = x.shape;
  const widths = attrs!.widths as number[];
  const pieces = widths.map((width) => wasm.makeOutput([rows, width], x.dtype));

  const source = wasm.typedArrayFromHeap(x);
  let firstColumn = 0;
  pieces.forEach((piece, index) => {
    const width = widths[index];
    const target = wasm.typedArrayFromHeap(piece);
    for (let row = 0; row < rows; row++) {
      const start = row * columns + firstColumn;
      target.set(source.subarray(start, start + width), row * width);
    }
    firstColumn += width;
  });
  return pieces;
}

// A second copy of this module (for example the compiled one next to the TypeScript source)
// shares the tfjs registry, so register only once.
if (!tf.getKernel(SPLIT_KERNEL, 'wasm')) {
  tf.registerKernel({ kernelName: SPLIT_KERNEL, backendName: 'wasm', kernelFunc: splitFlatWasm });
  tf.registerKernel({ kernelName: CONCAT_KERNEL, backendName: 'wasm', kernelFunc: concatFlatWasm });
  tf.registerKernel({ kernelName: SPLIT_COLUMNS_KERNEL, backendName: 'wasm', kernelFunc: splitColumnsWasm });

  tf.registerGradient({
    kernelName: SPLIT_KERNEL,
    inputsToSave: [],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], _saved: tf.Tensor[], attrs: tf.NamedAttrMap) => ({
      x: () => {
        const pieces = Array.isArray(dy) ? dy : [dy];
        const inputs = Object.fromEntries(pieces.map((piece, index) => [String(index), piece]));
        return tf.engine().runKernel(CONCAT_KERNEL, inputs, { shape: attrs.inputShape as number[] }) as tf.Tensor;
      },
    }),
  });
  tf.registerGradient({
    kernelName: SPLIT_COLUMNS_KERNEL,
    inputsToSave: [],
    gradFunc: (dy: tf.Tensor | tf.Tensor[]) => ({ x: () => tf.concat(Array.isArray(dy) ? dy : [dy], 1) }),
  });
}

/**
 * Cuts `x` into consecutive pieces, reading its values in row-major order. Each entry of
 * `pieces` is a shape, or a size for a 1-D piece, and together they must hold `x.size` values.
 * The gradient puts the pieces' gradients back end to end. On wasm one kernel copies each
 * value once; other backends use `tf.split` and reshapes.
 * Example: `splitFlat(flat, [[3, 4], 4])` returns a [3, 4] weight and a [4] bias.
 */
export function splitFlat(x: tf.Tensor, pieces: Array<number | number[]>): tf.Tensor[] {
  const shapes = pieces.map((piece) => (typeof piece === 'number' ? [piece] : piece));
  const sizes = shapes.map(sizeOf);
  const total = sizes.reduce((sum, size) => sum + size, 0);
  if (total !== x.size) {
    throw new Error(`splitFlat: the shapes hold ${total} values, but the input has shape [${x.shape}] (${x.size} values)`);
  }
  if (tf.getBackend() === 'wasm' && x.dtype === 'float32') {
    const attrs = { ...packShapes(shapes), inputShape: x.shape };
    return tf.engine().runKernel(SPLIT_KERNEL, { x }, attrs) as unknown as tf.Tensor[];
  }
  const flat = tf.reshape(x, [-1]);
  const flatPieces = shapes.length === 1 ? [flat] : tf.split(flat, sizes);
  return flatPieces.map((piece, index) => tf.reshape(piece, shapes[index]));
}

/**
 * Cuts a 2-D tensor into consecutive column blocks of `widths` (which must add up to its column
 * count), like `tf.split(x, widths, 1)` but copying each value once on wasm.
 * Shapes: x [rows, sum of widths] -> [rows, widths[i]] each.
 */
export function splitColumns(x: tf.Tensor2D, widths: number[]): tf.Tensor2D[] {
  const total = widths.reduce((sum, width) => sum + width, 0);
  if (x.rank !== 2 || total !== x.shape[1]) {
    throw new Error(`splitColumns: the widths add up to ${total}, but the input has shape [${x.shape}]`);
  }
  if (tf.getBackend() === 'wasm' && x.dtype === 'float32') {
    return tf.engine().runKernel(SPLIT_COLUMNS_KERNEL, { x }, { widths }) as unknown as tf.Tensor2D[];
  }
  return tf.split(x, widths, 1) as tf.Tensor2D[];
}

type GradientFunction = (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[];
type ForwardFunction = (inputs: tf.Tensor[], save: tf.GradSaveFunc) => { value: tf.Tensor; gradFunc: GradientFunction };

/** Wraps `tf.customGrad` for a function of a fixed list of tensors. */
function customOp(forward: ForwardFunction): (...inputs: tf.Tensor[]) => tf.Tensor {
  const wrapped = (...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const { value, gradFunc } = forward(args.slice(0, -1) as tf.Tensor[], save);
    // Free each gradient's temporaries as soon as it is computed, so the allocator reuses their
    // memory while it is still in cache instead of at the end of the whole step.
    return { value, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => gradFunc(dy, saved)) };
  };
  return tf.customGrad(wrapped as unknown as Parameters<typeof tf.customGrad>[0]) as (...inputs: tf.Tensor[]) => tf.Tensor;
}

const constants = new Map<string, tf.Tensor>();

/**
 * Returns a kept constant tensor made by `make`, created once per backend and `key`. Reusing
 * one tensor lets XNNPACK reuse its packed form when the constant is a right operand.
 */
function cachedConstant(key: string, make: () => tf.Tensor): tf.Tensor {
  const fullKey = `${tf.getBackend()}/${key}`;
  const cached = constants.get(fullKey);
  if (cached && !cached.isDisposed) return cached;
  const created = tf.keep(tf.tidy(make));
  constants.set(fullKey, created);
  return created;
}

function transpose2d(x: tf.Tensor2D): tf.Tensor2D {
  return tf.transpose(x) as tf.Tensor2D;
}

/** Returns a b^T. Shapes: a [n, k], b [m, k] -> [n, m]. */
function timesTransposed(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return blasProductsActive() ? tf.matMul(a, b, false, true) : tf.matMul(a, transpose2d(b));
}

/**
 * Returns true when x^T dz is estimated to be cheaper as (dz^T x)^T, which transposes dz and
 * the result and packs x, than directly, which transposes x and packs dz. The flipped form wins
 * when `in` is much smaller than `out`, for example a one-hot context feeding a wide layer.
 * Shapes: x [n, in], dz [n, out].
 */
function flippedIsCheaper(x: tf.Tensor2D, dz: tf.Tensor2D): boolean {
  const [rows, inputs] = x.shape;
  const outputs = dz.shape[1];
  const directCost = TRANSPOSE_COST * rows * inputs + PACK_COST * rows * outputs;
  const flippedCost = TRANSPOSE_COST * (rows * outputs + inputs * outputs) + PACK_COST * rows * inputs;
  return flippedCost < directCost;
}

/** Returns x^T dz, the weight gradient of a product x W. Shapes: x [n, in], dz [n, out] -> [in, out]. */
function weightGradient(x: tf.Tensor2D, dz: tf.Tensor2D): tf.Tensor2D {
  if (blasProductsActive()) return tf.matMul(x, dz, true, false);
  if (flippedIsCheaper(x, dz)) return transpose2d(tf.matMul(transpose2d(dz), x));
  return tf.matMul(transpose2d(x), dz);
}

/**
 * Returns [x^T dz, column sums of dz], the weight and bias gradients of x W + b.
 * Shapes: x [n, in], dz [n, out] -> [in, out] and [out].
 *
 * The bias gradient never sums over rows, which is slow on wasm. In the direct orientation it
 * is ones [1, n] @ dz, a product that reuses the packed dz of the weight gradient before it.
 * In the flipped orientation the transposed dz is summed over its columns.
 */
function weightAndBiasGradients(x: tf.Tensor2D, dz: tf.Tensor2D): [tf.Tensor2D, tf.Tensor1D] {
  const rows = x.shape[0];
  const outputs = dz.shape[1];

  if (!blasProductsActive() && flippedIsCheaper(x, dz)) {
    const dzTransposed = transpose2d(dz);
    return [transpose2d(tf.matMul(dzTransposed, x)), tf.sum(dzTransposed, 1) as tf.Tensor1D];
  }

  const weightGrad = blasProductsActive() ? tf.matMul<tf.Tensor2D>(x, dz, true, false) : tf.matMul<tf.Tensor2D>(transpose2d(x), dz);
  const ones = cachedConstant(`ones/1x${rows}`, () => tf.ones([1, rows])) as tf.Tensor2D;
  return [weightGrad, tf.reshape(tf.matMul(ones, dz), [outputs]) as tf.Tensor1D];
}

/**
 * Returns `activation(x @ weight + bias)` from one fused kernel. While a gradient is being
 * recorded, `tf.fused.matMul` runs a ReLU as three separate ops that each save their inputs.
 * This calls the kernel directly instead, because only the forward value is needed here.
 */
function fusedProduct(x: tf.Tensor2D, weight: tf.Tensor2D, bias: tf.Tensor1D, activation: 'linear' | 'relu'): tf.Tensor2D {
  const [rows, inputs] = x.shape;
  const outputs = weight.shape[1];
  if (!tf.getKernel('_FusedMatMul', tf.getBackend())) {
    const affine = tf.add<tf.Tensor2D>(tf.matMul(x, weight), bias);
    return activation === 'relu' ? tf.relu(affine) : affine;
  }
  const value = tf.engine().runKernel(
    '_FusedMatMul',
    { a: tf.reshape(x, [1, rows, inputs]), b: tf.reshape(weight, [1, inputs, outputs]), bias },
    { transposeA: false, transposeB: false, activation, leakyreluAlpha: 0 },
  ) as tf.Tensor;
  return tf.reshape(value, [rows, outputs]);
}

/**
 * Matrix product `a @ b` for 2-D tensors whose gradient uses only untransposed products.
 * Shapes: a [n, k], b [k, m] -> [n, m].
 */
export const matMul = customOp(([a, b], save) => {
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    gradFunc: (dy, saved) => {
      const [savedA, savedB] = saved as tf.Tensor2D[];
      const dz = dy as tf.Tensor2D;
      return [timesTransposed(dz, savedB), weightGradient(savedA, dz)];
    },
  };
}) as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/**
 * Returns the op `activation(x @ weight + bias)` with the gradients of
 * `weightAndBiasGradients`. The ReLU gradient masks dy where the output is 0, which is exactly
 * where the pre-activation was <= 0.
 */
function fusedLinear(activation: 'linear' | 'relu') {
  return customOp(([x, weight, bias], save) => {
    const value = fusedProduct(x as tf.Tensor2D, weight as tf.Tensor2D, bias as tf.Tensor1D, activation);
    save(activation === 'relu' ? [x, weight, value] : [x, weight]);
    return {
      value,
      gradFunc: (dy, saved) => {
        const [savedX, savedWeight, output] = saved as tf.Tensor2D[];
        const dz = (activation === 'relu' ? tf.mul(dy, tf.step(output)) : dy) as tf.Tensor2D;
        const [weightGrad, biasGrad] = weightAndBiasGradients(savedX, dz);
        return [timesTransposed(dz, savedWeight), weightGrad, biasGrad];
      },
    };
  }) as (x: tf.Tensor2D, weight: tf.Tensor2D, bias: tf.Tensor1D) => tf.Tensor2D;
}

const affine = fusedLinear('linear');
const affineRelu = fusedLinear('relu');

/** Returns true when `bias` has one value per output column, the only bias the fused product accepts. */
function isRowBias(bias: tf.Tensor, weight: tf.Tensor): bias is tf.Tensor1D {
  return bias.rank === 1 && bias.size === weight.shape[1];
}

/**
 * Affine map `x @ weight + bias`. Shapes: x [n, in], weight [in, out], bias [out] -> [n, out].
 * A bias of another shape that broadcasts against [n, out] is added after the product.
 */
export function linear(x: tf.Tensor2D, weight: tf.Tensor, bias?: tf.Tensor): tf.Tensor2D {
  if (!bias) return matMul(x, weight as tf.Tensor2D);
  if (!isRowBias(bias, weight)) return tf.add<tf.Tensor2D>(matMul(x, weight as tf.Tensor2D), bias);
  return affine(x, weight as tf.Tensor2D, bias);
}

/** `relu(x @ weight + bias)` in one fused product. Shapes as in `linear`. */
export function linearRelu(x: tf.Tensor2D, weight: tf.Tensor, bias: tf.Tensor): tf.Tensor2D {
  if (!isRowBias(bias, weight)) return tf.relu(tf.add<tf.Tensor2D>(matMul(x, weight as tf.Tensor2D), bias));
  return affineRelu(x, weight as tf.Tensor2D, bias);
}

/** Two affine maps with a ReLU between them: `relu(x W1 + b1) W2 + b2`. */
export function linearReluLinear(
  x: tf.Tensor2D,
  weight1: tf.Tensor,
  bias1: tf.Tensor,
  weight2: tf.Tensor,
  bias2: tf.Tensor,
): tf.Tensor2D {
  return linear(linearRelu(x, weight1, bias1), weight2, bias2);
}

/**
 * Places 2-D tensors with equal row counts side by side, as `tf.concat(blocks, 1)` does, with
 * `splitColumns` as the gradient. The built-in gradient slices each block out of the whole
 * gradient, which wasm copies once per block. Shapes: [rows, w_i] each -> [rows, sum of w_i].
 */
export function concatColumns(blocks: tf.Tensor2D[]): tf.Tensor2D {
  const widths = blocks.map((block) => block.shape[1]);
  const concatenate = customOp((inputs) => ({
    value: tf.concat(inputs as tf.Tensor2D[], 1),
    gradFunc: (dy) => splitColumns(dy as tf.Tensor2D, widths),
  }));
  return concatenate(...blocks) as tf.Tensor2D;
}

/**
 * Returns the sum of products `xs[0] @ weights[0] + xs[1] @ weights[1] + ...` as one product of
 * the inputs side by side and the weights stacked, [x_0 x_1 ...] [W_0; W_1; ...]. One product
 * replaces several, and thin ones (a few input columns, such as module weights times a bias
 * row per module) run far below the speed of wide ones on wasm.
 * Shapes: xs[i] [n, in_i], weights[i] [in_i, out] -> [n, out].
 */
export function sumOfProducts(xs: tf.Tensor2D[], weights: tf.Tensor2D[]): tf.Tensor2D {
  if (xs.length === 0 || xs.length !== weights.length) {
    throw new Error(`sumOfProducts: expected as many inputs as weights (at least one), got ${xs.length} and ${weights.length}`);
  }
  const widths = xs.map((x) => x.shape[1]);
  const weightShapes = weights.map((weight) => weight.shape);
  const count = xs.length;
  const product = customOp((inputs, save) => {
    const stackedInputs = tf.concat(inputs.slice(0, count) as tf.Tensor2D[], 1);
    const stackedWeights = tf.concat(inputs.slice(count) as tf.Tensor2D[], 0);
    save([stackedInputs, stackedWeights]);
    return {
      value: tf.matMul(stackedInputs, stackedWeights),
      gradFunc: (dy, saved) => {
        const [savedInputs, savedWeights] = saved as tf.Tensor2D[];
        const dz = dy as tf.Tensor2D;
        const inputGrads = splitColumns(timesTransposed(dz, savedWeights), widths);
        const weightGrads = splitFlat(weightGradient(savedInputs, dz), weightShapes);
        return [...inputGrads, ...weightGrads];
      },
    };
  });
  return product(...xs, ...weights) as tf.Tensor2D;
}

/**
 * Returns each module's dot product of its slice of `values` with its slice of `weight`: the
 * score logits of modules that score themselves. It runs as one product with a block-diagonal
 * [modules * width, modules] matrix built from `weight`, because the per-value product and the
 * slice sums take more ops and their weight gradient sums over rows.
 * Shapes: values [n, modules * width], weight [modules * width] -> [n, modules].
 */
export function moduleSliceDots(values: tf.Tensor2D, weight: tf.Tensor, modules: number): tf.Tensor2D {
  const [, columns] = values.shape;
  if (weight.size !== columns || columns % modules !== 0) {
    throw new Error(`moduleSliceDots: expected ${columns} weights split evenly over ${modules} modules, got ${weight.size}`);
  }
  const width = columns / modules;
  const mask = cachedConstant(`block-mask/${columns}x${modules}`, () => blockMask(modules, width)) as tf.Tensor2D;

  const dots = customOp(([x, w], save) => {
    const blockDiagonal = tf.mul<tf.Tensor2D>(mask, tf.reshape(w, [columns, 1]));
    save([x, w]);
    return {
      value: tf.matMul(x as tf.Tensor2D, blockDiagonal),
      gradFunc: (dy, saved) => {
        const [savedValues, savedWeight] = saved as tf.Tensor2D[];
        const rows = dy.shape[0];
        const perValue = tf.mul(tf.reshape(dy, [rows, modules, 1]), tf.reshape(savedWeight, [1, modules, width]));
        const blockGrad = tf.mul(weightGradient(savedValues, dy as tf.Tensor2D), mask);
        return [tf.reshape(perValue, [rows, columns]), tf.reshape(tf.sum(blockGrad, 1), savedWeight.shape)];
      },
    };
  });
  return dots(values, weight) as tf.Tensor2D;
}

/** Builds the 0/1 matrix [modules * width, modules] whose column m is 1 on module m's rows. */
function blockMask(modules: number, width: number): tf.Tensor2D {
  const values = new Float32Array(modules * width * modules);
  for (let row = 0; row < modules * width; row++) values[row * modules + Math.floor(row / width)] = 1;
  return tf.tensor2d(values, [modules * width, modules]);
}

/**
 * Scales each module's slice of `hidden` by that module's weight.
 * Shapes: hidden [n, modules * width], moduleWeights [n, modules] -> [n, modules * width].
 */
export function scaleModuleSlices(hidden: tf.Tensor2D, moduleWeights: tf.Tensor2D): tf.Tensor2D {
  const [rows, columns] = hidden.shape;
  const modules = moduleWeights.shape[1];
  const sliced = tf.reshape(hidden, [rows, modules, columns / modules]);
  const scaled = tf.mul(sliced, tf.reshape(moduleWeights, [rows, modules, 1]));
  return tf.reshape(scaled, [rows, columns]);
}

/**
 * Sums each module's slice of `values` (the per-module dot products that give score logits).
 * Shapes: values [n, modules * width] -> [n, modules].
 */
export function sumModuleSlices(values: tf.Tensor2D, modules: number): tf.Tensor2D {
  const [rows, columns] = values.shape;
  return tf.sum(tf.reshape(values, [rows, modules, columns / modules]), 2);
}
