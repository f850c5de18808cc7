import * as tf from '@tensorflow/tfjs';
import { SettingError } from '../errors';
import { concatColumns, linear, linearRelu, linearReluLinear, moduleSliceDots, scaleModuleSlices, sumOfProducts } from '../kernels';
import { ParameterLayout } from '../parameters';
import { BatchTensors, ForwardResult, Model, ModelSettings } from './types';

/**
 * The MLP models. Shared encoders: Linear(1, e)-ReLU-Linear(e, e) embeds x1 and x2 with the same
 * weights, Linear(R, e)-ReLU-Linear(e, e) embeds the one-hot rule context; the three embeddings
 * are concatenated (3e). The decoder is Linear(h, e)-ReLU-Linear(e, 1).
 *
 * The modular models keep R modules Linear(3e, h/R)-ReLU-Linear(h/R, h [+1]) but store them
 * packed: the first layers side by side as one [3e, h] matrix (every module reads the same
 * input), the second layers stacked as one [h, h] matrix. Because a p-weighted sum of linear
 * maps of disjoint slices equals one linear map of the p-scaled slices,
 *   sum_m p_m (relu_m W2_m + b2_m) = (p-scaled relu) W2 + p B2,
 * every module runs in one product. Module m's score logit (its extra output unit in the
 * Modular family) is the dot product of its hidden slice with its own score vector.
 */
export class MlpModel implements Model {
  readonly architecture = 'mlp' as const;
  readonly layout = new ParameterLayout();
  readonly moduleWidth: number;

  constructor(readonly settings: ModelSettings, readonly ruleCount: number) {
    const { kind, encoderDim: e, hiddenDim: h } = settings;
    const rules = ruleCount;
    this.moduleWidth = kind === 'monolithic' ? h : h / rules;
    if (kind !== 'monolithic' && !Number.isInteger(this.moduleWidth)) {
      throw new SettingError('hiddenDim', h, `a multiple of the number of rules (${rules}) for ${kind} models`);
    }

    this.layout.addLinear('valueEncoder.layer1', 1, e).addLinear('valueEncoder.layer2', e, e);
    this.layout.addLinear('contextEncoder.layer1', rules, e).addLinear('contextEncoder.layer2', e, e);

    if (kind === 'monolithic') {
      this.layout.addLinear('core.layer1', 3 * e, h).addLinear('core.layer2', h, h);
    } else {
      this.layout.addLinear('modules.layer1', 3 * e, h);
      this.layout.add('modules.layer2.weight', [h, h], this.moduleWidth);
      this.layout.add('modules.layer2.bias', [rules, h], this.moduleWidth);
      if (kind === 'modular') {
        this.layout.add('modules.score.weight', [h], this.moduleWidth);
        this.layout.add('modules.score.bias', [rules], this.moduleWidth);
      }
      if (kind === 'modular-op') this.layout.addLinear('scorer', e, rules);
    }

    this.layout.addLinear('decoder.layer1', h, e).addLinear('decoder.layer2', e, 1);
  }

  /** Shapes: inputs [batch, 2 + R] -> output [batch, 1], moduleWeights [batch, R]. */
  forward(p: Record<string, tf.Tensor>, batch: BatchTensors): ForwardResult {
    const inputs = batch.inputs as tf.Tensor2D;
    const rows = inputs.shape[0];
    const rules = this.ruleCount;
    const e = this.settings.encoderDim;

    // x1 and x2 go through the value encoder as separate rows, then sit side by side again.
    const values = tf.reshape(tf.slice(inputs, [0, 0], [rows, 2]), [rows * 2, 1]) as tf.Tensor2D;
    const valueEmbedding = linearReluLinear(
      values,
      p['valueEncoder.layer1.weight'],
      p['valueEncoder.layer1.bias'],
      p['valueEncoder.layer2.weight'],
      p['valueEncoder.layer2.bias'],
    );
    const context = tf.slice(inputs, [0, 2], [rows, rules]) as tf.Tensor2D;
    const contextEmbedding = linearReluLinear(
      context,
      p['contextEncoder.layer1.weight'],
      p['contextEncoder.layer1.bias'],
      p['contextEncoder.layer2.weight'],
      p['contextEncoder.layer2.bias'],
    );
    const embedding = concatColumns([tf.reshape(valueEmbedding, [rows, 2 * e]) as tf.Tensor2D, contextEmbedding]);

    let features: tf.Tensor2D;
    let moduleWeights: tf.Tensor2D | null = null;
    const kind = this.settings.kind;

    if (kind === 'monolithic') {
      features = linearReluLinear(
        embedding,
        p['core.layer1.weight'],
        p['core.layer1.bias'],
        p['core.layer2.weight'],
        p['core.layer2.bias'],
      );
    } else {
      const hidden = linearRelu(embedding, p['modules.layer1.weight'], p['modules.layer1.bias']);
      if (kind === 'modular') {
        const logits = tf.add(moduleSliceDots(hidden, p['modules.score.weight'], rules), p['modules.score.bias']);
        moduleWeights = tf.softmax(logits) as tf.Tensor2D;
      } else if (kind === 'modular-op') {
        moduleWeights = tf.softmax(linear(contextEmbedding, p['scorer.weight'], p['scorer.bias'])) as tf.Tensor2D;
      } else {
        moduleWeights = context;
      }
      features = sumOfProducts(
        [scaleModuleSlices(hidden, moduleWeights), moduleWeights],
        [p['modules.layer2.weight'] as tf.Tensor2D, p['modules.layer2.bias'] as tf.Tensor2D],
      );
    }

    const output = linearReluLinear(
      features,
      p['decoder.layer1.weight'],
      p['decoder.layer1.bias'],
      p['decoder.layer2.weight'],
      p['decoder.layer2.bias'],
    );
    return { output, moduleWeights };
  }

  describe(): Record<string, unknown> {
    return { moduleWidth: this.moduleWidth };
  }
}
