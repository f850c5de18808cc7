import { requireChoice, requireInteger } from '../errors';
import { Task } from '../tasks/types';
import { MhaModel } from './mha';
import { MlpModel } from './mlp';
import { Model, ModelSettings, MODEL_KINDS } from './types';

export * from './types';
export { MlpModel } from './mlp';

type ModelFactory = (settings: ModelSettings, task: Task) => Model;

const factories: Partial<Record<Task['architecture'], ModelFactory>> = {
  mlp: (settings, task) => new MlpModel(settings, task.ruleCount),
  mha: (settings, task) => new MhaModel(settings, task.ruleCount, task.inputSize),
};

/** Registers the model constructor of an architecture (used by the MHA and RNN modules). */
export function registerModelFactory(architecture: Task['architecture'], factory: ModelFactory): void {
  factories[architecture] = factory;
}

/** Creates the model of `settings.kind` for `task`, checking every size setting first. */
export function createModel(task: Task, settings: ModelSettings): Model {
  const checked: ModelSettings = {
    kind: requireChoice('model kind', settings.kind, MODEL_KINDS),
    encoderDim: requireInteger('encoderDim', settings.encoderDim, 1, 65536),
    hiddenDim: requireInteger('hiddenDim', settings.hiddenDim, 1, 65536),
  };
  const factory = factories[task.architecture];
  if (!factory) throw new Error(`No models are registered for the "${task.architecture}" architecture.`);
  return factory(checked, task);
}
