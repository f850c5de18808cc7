import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { hasCheckpoint, loadCheckpoint, saveCheckpoint, writeJsonAtomic } from './checkpoint';
import { currentEngine, initEngine } from './engine';
import { requireInteger, requireNumber, SettingError } from './errors';
import { activationMatrix, adaptation, specializationMetrics } from './metrics';
import { createModel } from './models';
import { BatchTensors, Model, ModelSettings, MODEL_LABELS } from './models/types';
import { clipGradientNorm, FlatAdam } from './optimizer';
import { Profile, ProfileName, resolveProfile } from './profiles';
import { Progress, ProgressStyle } from './progress';
import { RandomStream, streamKey } from './random';
import { DataBatch, SampleOptions, Task, TaskDescription } from './tasks/types';

/** Largest accepted number of steps: 20 times the paper's longest budget of 500k MHA and RNN steps. */
export const MAX_STEPS = 10_000_000;

/** Settings of one training run. */
export interface TrainOptions {
  task: Task;
  model: ModelSettings;
  modelSeed?: number;
  /** Training budget; defaults to MODARCH_PROFILE, else "quick". */
  profile?: ProfileName | Profile;
  /** Overrides the profile's number of steps. */
  steps?: number;
  /** Overrides the profile's learning rate. */
  learningRate?: number;
  /** Folder for checkpoints and the run record; nothing is written when absent. */
  runDir?: string;
  /** Progress display; defaults to the style that suits the process. */
  progress?: ProgressStyle;
  /** Name shown in progress output. */
  label?: string;
  /** Called every 50 steps and at each evaluation with the steps done so far. */
  onProgress?: (step: number, steps: number) => void;
  /** Called after every evaluation, with the curves so far. */
  onEvaluation?: (curves: Curves) => void;
}

/** Loss and performance of one evaluation: error in % (classification) or L1 (regression). */
export interface Evaluation {
  loss: number;
  performance: number;
}

/** Training curves, one entry per evaluation. */
export interface Curves {
  step: number[];
  /** Mean training loss over the steps since the previous evaluation. */
  trainLoss: number[];
  idLoss: number[];
  idPerformance: number[];
  oodLoss: number[];
  oodPerformance: number[];
}

/** Performance at one sequence length (length 1 for the MLP task). */
export interface LengthEvaluation {
  length: number;
  id: Evaluation;
  ood: Evaluation;
}

/** Specialization metrics of a trained modular model; all lower is better. */
export interface ModuleMetrics {
  collapseAverage: number;
  collapseWorst: number;
  inverseMutualInformation: number;
  alignment: number;
  adaptation: number;
  /** Activation matrix P [rule][module] on in-distribution data. */
  activationMatrix: number[][];
}

/** Everything a run produced, as stored in `record.json`. */
export interface RunRecord {
  finished: true;
  task: TaskDescription;
  model: ModelSettings & { label: string; parameterCount: number; [detail: string]: unknown };
  modelSeed: number;
  profile: { name: string; steps: number; learningRate: number; batchSize: number; evalEvery: number; clipNorm: number | null };
  engine: string;
  curves: Curves;
  best: { step: number; idLoss: number };
  /** Final evaluation of the best checkpoint: ID at the training length and OoD at the longest length. */
  id: Evaluation;
  ood: Evaluation;
  perLength: LengthEvaluation[];
  /** Null for Monolithic models, which have no modules. */
  metrics: ModuleMetrics | null;
  seconds: number;
  stepsPerSecond: number;
}

/** A finished run: its record, its model and the weights of its best checkpoint. */
export interface TrainedRun {
  record: RunRecord;
  model: Model;
  parameters: Float32Array;
}

/**
 * The optimization state of one model: flat parameters and Adam. `step` runs one update on a
 * batch; `trainRun` and the speed benchmark both use it, so they time the same code.
 */
export class Trainer {
  private flat: tf.Tensor1D;
  private readonly optimizer: FlatAdam;
  private lossTotal: tf.Scalar = tf.keep(tf.scalar(0));
  private lossCount = 0;

  constructor(
    readonly task: Task,
    readonly model: Model,
    initial: Float32Array,
    readonly settings: { learningRate: number; clipNorm: number | null },
  ) {
    this.flat = tf.keep(tf.tensor1d(initial));
    this.optimizer = new FlatAdam(model.layout.size, { learningRate: settings.learningRate });
  }

  /** Runs one Adam step on `data`; the loss is accumulated on the device until `takeMeanLoss`. */
  step(data: DataBatch): void {
    const { model, task } = this;
    const clipNorm = this.settings.clipNorm;
    const next = tf.tidy(() => {
      const batch = toTensors(data);
      const lossOfWeights = (weights: tf.Tensor) =>
        lossFunction(task, model.forward(model.layout.split(weights as tf.Tensor1D), batch).output, batch.targets);
      const { value, grad } = tf.valueAndGrad(lossOfWeights)(this.flat);
      const gradient = clipNorm === null ? (grad as tf.Tensor1D) : clipGradientNorm(grad as tf.Tensor1D, clipNorm);
      const updated = this.optimizer.apply(this.flat, gradient);
      return { updated, total: tf.add(this.lossTotal, value) as tf.Scalar };
    });
    this.flat.dispose();
    this.lossTotal.dispose();
    this.flat = tf.keep(next.updated);
    this.lossTotal = tf.keep(next.total);
    this.lossCount += 1;
  }

  /** Returns the mean training loss since the last call (reads the device once) and resets it. */
  async takeMeanLoss(): Promise<number> {
    const total = (await this.lossTotal.data())[0];
    const mean = total / Math.max(this.lossCount, 1);
    this.lossTotal.dispose();
    this.lossTotal = tf.keep(tf.scalar(0));
    this.lossCount = 0;
    return mean;
  }

  /** The current parameters as a tensor owned by the trainer (do not dispose). */
  get parameters(): tf.Tensor1D {
    return this.flat;
  }

  /** Copies the current parameters out. */
  parameterValues(): Float32Array {
    return this.flat.dataSync().slice() as Float32Array;
  }

  optimizerState() {
    return this.optimizer.state();
  }

  /** Restores parameters and Adam state, for resuming. */
  restore(parameters: Float32Array, optimizerState: Parameters<FlatAdam['restore']>[0]): void {
    this.flat.dispose();
    this.flat = tf.keep(tf.tensor1d(parameters));
    this.optimizer.restore(optimizerState);
  }

  dispose(): void {
    this.flat.dispose();
    this.lossTotal.dispose();
    this.optimizer.dispose();
  }
}

/**
 * Trains one model on one task with Adam on fresh samples every step, evaluates ID and OoD
 * held-out data every `evalEvery` steps, keeps the best (lowest ID validation loss) and last
 * weights, and finally scores the best weights: performance per length and module metrics.
 * With `runDir`, checkpoints and `record.json` are written there, and a run that stopped
 * midway resumes from its last checkpoint.
 */
export async function trainRun(options: TrainOptions): Promise<TrainedRun> {
  await initEngine();
  const started = Date.now();
  const { task } = options;
  const profile = typeof options.profile === 'object' ? options.profile : resolveProfile(options.profile);
  const architecture = task.architecture;
  const modelSeed = requireInteger('modelSeed', options.modelSeed ?? 0, 0);
  const steps = requireInteger('steps', options.steps ?? profile.steps[architecture], 1, MAX_STEPS);
  const learningRate = requireNumber('learningRate', options.learningRate ?? profile.learningRate, 1e-8, 1);
  const evalEvery = Math.min(profile.evalEvery[architecture], steps);
  const clipNorm = profile.clipNorm[architecture];
  const batchSize = profile.batchSize;
  const dataSeed = task.describe().dataSeed;

  const model = createModel(task, options.model);
  const layout = model.layout;
  const label = options.label ?? `${MODEL_LABELS[model.settings.kind]} R=${task.ruleCount}`;
  const validation = buildEvaluationSets(task, dataSeed, profile.evalBatches, batchSize);

  const trainer = new Trainer(task, model, initialParameters(model, modelSeed), { learningRate, clipNorm });
  const curves: Curves = { step: [], trainLoss: [], idLoss: [], idPerformance: [], oodLoss: [], oodPerformance: [] };
  let best = { step: 0, idLoss: Infinity };
  let bestParameters = trainer.parameterValues();
  let step = 0;

  if (options.runDir) {
    claimRunDir(options.runDir, {
      task: task.describe(),
      model: model.settings,
      parameterCount: layout.size,
      modelSeed,
      steps,
      learningRate,
      batchSize,
      evalEvery,
      clipNorm,
    });
  }

  // Resume a run that stopped midway: its last checkpoint contains weights, Adam state and curves.
  if (options.runDir && hasCheckpoint(options.runDir, 'last')) {
    const last = loadCheckpoint(options.runDir, 'last');
    if (last.meta.parameterCount === layout.size && last.optimizer) {
      trainer.restore(last.parameters, last.optimizer);
      step = last.meta.step;
      Object.assign(curves, last.meta.curves as Curves);
      best = last.meta.best as typeof best;
      bestParameters = hasCheckpoint(options.runDir, 'best')
        ? loadCheckpoint(options.runDir, 'best').parameters
        : last.parameters.slice();
    }
  }

  const progress = new Progress(label, steps, 'steps', options.progress);
  progress.update(step);
  const stepStarted = Date.now();
  const firstStep = step;

  while (step < steps) {
    // Each evaluation interval draws from its own stream, so a resumed run trains on the same data.
    const interval = Math.floor(step / evalEvery);
    const stream = new RandomStream(streamKey('train-samples', dataSeed, modelSeed, interval));
    const intervalEnd = Math.min((interval + 1) * evalEvery, steps);

    while (step < intervalEnd) {
      const data = task.sample(stream, batchSize, { length: task.trainLength });
      trainer.step(data);
      step += 1;
      if (step % 50 === 0 || step === intervalEnd) {
        progress.update(step);
        options.onProgress?.(step, steps);
      }
    }

    const trainLoss = await trainer.takeMeanLoss();
    const weights = layout.split(trainer.parameters);
    const idResult = evaluateSet(task, model, weights, validation.id);
    const oodResult = evaluateSet(task, model, weights, validation.ood);
    tf.dispose(Object.values(weights));
    curves.step.push(step);
    curves.trainLoss.push(trainLoss);
    curves.idLoss.push(idResult.loss);
    curves.idPerformance.push(idResult.performance);
    curves.oodLoss.push(oodResult.loss);
    curves.oodPerformance.push(oodResult.performance);
    progress.update(step, `loss ${trainLoss.toFixed(4)} | ID ${formatPerformance(task, idResult.performance)}`);

    const current = trainer.parameterValues();
    if (idResult.loss < best.idLoss) {
      best = { step, idLoss: idResult.loss };
      bestParameters = current;
      if (options.runDir) {
        saveCheckpoint(options.runDir, 'best', {
          meta: { step, parameterCount: layout.size, parameterNames: layout.entries.map((entry) => entry.name), idLoss: idResult.loss },
          parameters: current,
        });
      }
    }
    if (options.runDir) {
      saveCheckpoint(options.runDir, 'last', {
        meta: { step, parameterCount: layout.size, parameterNames: layout.entries.map((entry) => entry.name), curves, best },
        parameters: current,
        optimizer: trainer.optimizerState(),
      });
    }
    options.onEvaluation?.(curves);
  }
  progress.finish();
  const trainingSeconds = (Date.now() - stepStarted) / 1000;

  trainer.dispose();

  const final = await scoreModel(task, model, bestParameters, { dataSeed, evalBatches: profile.evalBatches, batchSize });
  const record: RunRecord = {
    finished: true,
    task: task.describe(),
    model: { ...model.settings, label: MODEL_LABELS[model.settings.kind], parameterCount: layout.size, ...model.describe() },
    modelSeed,
    profile: { name: profile.name, steps, learningRate, batchSize, evalEvery, clipNorm },
    engine: currentEngine(),
    curves,
    best,
    ...final,
    seconds: (Date.now() - started) / 1000,
    stepsPerSecond: trainingSeconds > 0 ? (steps - firstStep) / trainingSeconds : 0,
  };
  if (options.runDir) writeJsonAtomic(path.join(options.runDir, 'record.json'), record);
  return { record, model, parameters: bestParameters };
}

/** Draws the initial weights of `model` from the stream of `modelSeed` (PyTorch's Linear init). */
export function initialParameters(model: Model, modelSeed: number): Float32Array {
  return model.layout.initialize(new RandomStream(streamKey('init', modelSeed, model.layout.size)));
}

/**
 * Records which run owns `runDir` in its `identity.json`, or checks that the run already there
 * is this one. Resuming or overwriting another run's checkpoints would give a record whose
 * settings and results disagree, so a mismatch raises instead.
 */
function claimRunDir(runDir: string, identity: Record<string, unknown>): void {
  const file = path.join(runDir, 'identity.json');
  const expected = JSON.stringify(identity);
  if (fs.existsSync(file)) {
    const stored = JSON.stringify(JSON.parse(fs.readFileSync(file, 'utf8')));
    if (stored !== expected) {
      throw new SettingError('runDir', runDir, 'an empty folder or one that contains this same run. It contains a run with other settings (see its identity.json), so pick another folder');
    }
    return;
  }
  if (hasCheckpoint(runDir, 'last') || fs.existsSync(path.join(runDir, 'record.json'))) {
    throw new SettingError('runDir', runDir, 'an empty folder or one that contains this same run. It contains checkpoints with no identity.json, so pick another folder');
  }
  writeJsonAtomic(file, identity);
}

/** Reads the record of a finished run from `runDir`, or returns null when there is none. */
export function readRunRecord(runDir: string): RunRecord | null {
  const file = path.join(runDir, 'record.json');
  if (!fs.existsSync(file)) return null;
  const record = JSON.parse(fs.readFileSync(file, 'utf8')) as RunRecord;
  return record.finished ? record : null;
}

/** Converts a data batch to tensors. */
export function toTensors(data: DataBatch): BatchTensors {
  return {
    inputs: tf.tensor(data.inputs, data.inputShape),
    rules: tf.tensor(data.rules, data.inputShape.slice(0, -1), 'int32'),
    targets: tf.tensor(data.targets, data.targetShape),
  };
}

/**
 * Training loss: binary cross-entropy on logits (classification) or mean absolute error
 * (regression), averaged over every target value.
 */
export function lossFunction(task: Task, output: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    if (task.mode === 'regression') return tf.mean(tf.abs(tf.sub(output, targets))) as tf.Scalar;
    // max(x, 0) - x z + log(1 + exp(-|x|)) is BCE on logits without overflow.
    const positive = tf.relu(output);
    const softplus = tf.log1p(tf.exp(tf.neg(tf.abs(output))));
    return tf.mean(tf.add(tf.sub(positive, tf.mul(output, targets)), softplus)) as tf.Scalar;
  });
}

/** Performance: error in % for classification (logit >= 0 predicts 1), mean L1 for regression. */
export function performanceOf(task: Task, output: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    if (task.mode === 'regression') return tf.mean(tf.abs(tf.sub(output, targets))) as tf.Scalar;
    const predicted = tf.cast(tf.greaterEqual(output, 0), 'float32');
    return tf.mul(tf.mean(tf.cast(tf.notEqual(predicted, targets), 'float32')), 100) as tf.Scalar;
  });
}

function formatPerformance(task: Task, value: number): string {
  return task.mode === 'classification' ? `${value.toFixed(2)}% error` : `L1 ${value.toFixed(4)}`;
}

interface EvaluationSets {
  id: DataBatch[];
  ood: DataBatch[];
}

/**
 * Held-out data: a fixed stream per (data seed, ID or OoD, length), so every model of a task
 * is scored on the same samples. ID is at the training length, OoD at the longest length.
 */
function buildEvaluationSets(task: Task, dataSeed: number, batches: number, batchSize: number, length?: number): EvaluationSets {
  const idLength = length ?? task.trainLength;
  const oodLength = length ?? task.evalLengths[task.evalLengths.length - 1];
  const draw = (ood: boolean, drawLength: number) => {
    const stream = new RandomStream(streamKey('eval-samples', dataSeed, ood ? 'ood' : 'id', drawLength));
    return Array.from({ length: batches }, () => task.sample(stream, batchSize, { ood, length: drawLength }));
  };
  return { id: draw(false, idLength), ood: draw(true, oodLength) };
}

function evaluateSet(task: Task, model: Model, weights: Record<string, tf.Tensor>, set: DataBatch[]): Evaluation {
  let loss = 0;
  let performance = 0;
  for (const data of set) {
    const [batchLoss, batchPerformance] = tf.tidy(() => {
      const batch = toTensors(data);
      const { output } = model.forward(weights, batch);
      return [lossFunction(task, output, batch.targets).dataSync()[0], performanceOf(task, output, batch.targets).dataSync()[0]];
    });
    loss += batchLoss;
    performance += batchPerformance;
  }
  return { loss: loss / set.length, performance: performance / set.length };
}

/** Collects module weights [samples, modules] and true rules of `data` under `weights`. */
export function moduleUsage(
  model: Model,
  weights: Record<string, tf.Tensor>,
  data: DataBatch[],
): { moduleWeights: Float32Array; rules: Int32Array } | null {
  const chunks: Float32Array[] = [];
  const ruleChunks: Int32Array[] = [];
  for (const batch of data) {
    const usage = tf.tidy(() => model.forward(weights, toTensors(batch)).moduleWeights?.dataSync() as Float32Array | undefined);
    if (!usage) return null;
    chunks.push(usage);
    ruleChunks.push(batch.rules);
  }
  return { moduleWeights: concatFloat(chunks), rules: concatInt(ruleChunks) };
}

/**
 * Scores weights `parameters` of `model`: ID and OoD performance at every evaluation length
 * of the task, and for modular models the activation matrix and specialization metrics.
 */
export async function scoreModel(
  task: Task,
  model: Model,
  parameters: Float32Array,
  options: { dataSeed: number; evalBatches: number; batchSize: number },
): Promise<Pick<RunRecord, 'id' | 'ood' | 'perLength' | 'metrics'>> {
  const flat = tf.tensor1d(parameters);
  const weights = model.layout.split(flat);
  try {
    const perLength = task.evalLengths.map((length) => {
      const sets = buildEvaluationSets(task, options.dataSeed, options.evalBatches, options.batchSize, length);
      return { length, id: evaluateSet(task, model, weights, sets.id), ood: evaluateSet(task, model, weights, sets.ood) };
    });
    const id = (perLength.find((entry) => entry.length === task.trainLength) ?? perLength[0]).id;
    const ood = perLength[perLength.length - 1].ood;

    const idSet = buildEvaluationSets(task, options.dataSeed, options.evalBatches, options.batchSize, task.trainLength).id;
    const usage = moduleUsage(model, weights, idSet);
    let metrics: ModuleMetrics | null = null;
    if (usage) {
      const matrix = activationMatrix(usage.moduleWeights, usage.rules, task.ruleCount);
      const adaptationScore = await adaptation(
        (probabilities: number[]) => meanModuleWeights(task, model, weights, probabilities, options.batchSize),
        task.ruleCount,
      );
      metrics = { ...specializationMetrics(matrix), adaptation: adaptationScore.mean, activationMatrix: matrix };
    }
    return { id, ood, perLength, metrics };
  } finally {
    flat.dispose();
    tf.dispose(Object.values(weights));
  }
}

/** Mean module weights q_hat over one batch whose rules are drawn from `probabilities`. */
function meanModuleWeights(task: Task, model: Model, weights: Record<string, tf.Tensor>, probabilities: number[], batchSize: number): number[] {
  const key = streamKey('adaptation-samples', task.describe().dataSeed, probabilities.map((p) => p.toFixed(6)).join(','));
  const data = task.sample(new RandomStream(key), batchSize, { ruleProbabilities: probabilities, length: task.trainLength });
  return tf.tidy(() => {
    const usage = model.forward(weights, toTensors(data)).moduleWeights!;
    return Array.from(tf.mean(tf.reshape(usage, [-1, task.ruleCount]), 0).dataSync());
  });
}

function concatFloat(chunks: Float32Array[]): Float32Array {
  const out = new Float32Array(chunks.reduce((total, chunk) => total + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function concatInt(chunks: Int32Array[]): Int32Array {
  const out = new Int32Array(chunks.reduce((total, chunk) => total + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

export type { SampleOptions };
