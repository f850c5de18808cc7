import * as tf from '@tensorflow/tfjs';

/**
 * Matrix product `a @ b` for 2-D tensors whose gradient uses only untransposed products.
 *
 * The built-in gradient of `tf.matMul` calls matMul with `transposeA`/`transposeB`, which the
 * wasm backend of tfjs 4.22 runs 10-18x slower than a plain product. Transposing explicitly
 * first and then multiplying is numerically the same and much faster there.
 * Shapes: a [n, k], b [k, m] -> [n, m].
 */
export const matMul = tf.customGrad(((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [a, b, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [savedA, savedB] = saved as tf.Tensor2D[];
      const dyMatrix = dy as tf.Tensor2D;
      return [tf.matMul(dyMatrix, tf.transpose(savedB)), tf.matMul(tf.transpose(savedA), dyMatrix)];
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/** Affine map `x @ weight + bias`. Shapes: x [n, in], weight [in, out], bias [out] -> [n, out]. */
export function linear(x: tf.Tensor2D, weight: tf.Tensor, bias?: tf.Tensor): tf.Tensor2D {
  const product = matMul(x, weight as tf.Tensor2D);
  return bias ? tf.add(product, bias) : product;
}

/** Two affine maps with a ReLU between them: `relu(x W1 + b1) W2 + b2`. */
export function linearReluLinear(
  x: tf.Tensor2D,
  weight1: tf.Tensor,
  bias1: tf.Tensor,
  weight2: tf.Tensor,
  bias2: tf.Tensor,
): tf.Tensor2D {
  return linear(tf.relu(linear(x, weight1, bias1)), weight2, bias2);
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
