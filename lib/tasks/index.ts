import { requireChoice } from '../errors';
import { createMhaTask, MhaTaskSettings } from './mha';
import { createMlpTask, MlpTaskSettings } from './mlp';
import { ARCHITECTURES, Architecture, Task } from './types';

/** Settings of any task: the architecture plus that architecture's own settings. */
export type TaskSettings = { architecture: 'mlp' } & MlpTaskSettings;

type TaskFactory = (settings: Record<string, unknown>) => Task;
const factories: Partial<Record<Architecture, TaskFactory>> = {
  mlp: (settings) => createMlpTask(settings as unknown as MlpTaskSettings),
  mha: (settings) => createMhaTask(settings as unknown as MhaTaskSettings),
};

/** Registers the task constructor of an architecture (used by the MHA and RNN modules). */
export function registerTaskFactory(architecture: Architecture, factory: TaskFactory): void {
  factories[architecture] = factory;
}

/** Creates the task of `settings.architecture`. */
export function createTask(settings: { architecture: Architecture } & Record<string, unknown>): Task {
  const architecture = requireChoice('architecture', settings.architecture, ARCHITECTURES);
  const factory = factories[architecture];
  if (!factory) throw new Error(`The "${architecture}" architecture has no task generator yet.`);
  return factory(settings);
}
