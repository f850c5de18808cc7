import * as tf from '@tensorflow/tfjs';
import { splitFlat } from './kernels';
import { RandomStream } from './random';

// Re-exported because model code imports it together with the parameter helpers.
export { splitFlat } from './kernels';

/**
 * One named parameter tensor. `fanIn` sets the PyTorch-style default initialization
 * U(-1/sqrt(fanIn), 1/sqrt(fanIn)) used by torch.nn.Linear for both weights and biases.
 */
export interface ParameterEntry {
  name: string;
  shape: number[];
  fanIn: number;
}

/**
 * The list of parameters of a model, in a fixed order. All parameters live in one flat
 * Float32 buffer in that order, which checkpoints store and the optimizer updates in one pass.
 */
export class ParameterLayout {
  readonly entries: ParameterEntry[] = [];
  readonly offsets: number[] = [];
  size = 0;

  /** Appends a parameter; names must be unique. */
  add(name: string, shape: number[], fanIn: number): this {
    if (this.entries.some((entry) => entry.name === name)) throw new Error(`Duplicate parameter name "${name}"`);
    this.entries.push({ name, shape, fanIn });
    this.offsets.push(this.size);
    this.size += shape.reduce((product, dimension) => product * dimension, 1);
    return this;
  }

  /** Appends the weight [inputs, outputs] and bias [outputs] of a linear layer. */
  addLinear(name: string, inputs: number, outputs: number, bias = true): this {
    this.add(`${name}.weight`, [inputs, outputs], inputs);
    if (bias) this.add(`${name}.bias`, [outputs], inputs);
    return this;
  }

  /** Draws initial values from `stream`: each parameter uniform in +-1/sqrt(fanIn). */
  initialize(stream: RandomStream): Float32Array {
    const values = new Float32Array(this.size);
    this.entries.forEach((entry, index) => {
      const length = this.lengthOf(index);
      const bound = 1 / Math.sqrt(entry.fanIn);
      stream.fillUniform(values.subarray(this.offsets[index], this.offsets[index] + length), -bound, bound);
    });
    return values;
  }

  /** Splits a flat tensor [size] into named tensors of their shapes. */
  split(flat: tf.Tensor1D): Record<string, tf.Tensor> {
    return tf.tidy(() => {
      const pieces = splitFlat(flat, this.entries.map((entry) => entry.shape));
      const named: Record<string, tf.Tensor> = {};
      this.entries.forEach((entry, index) => {
        named[entry.name] = pieces[index];
      });
      return named;
    });
  }

  /** Number of values of parameter `index`. */
  lengthOf(index: number): number {
    return this.entries[index].shape.reduce((product, dimension) => product * dimension, 1);
  }
}
