import { requireChoice, SettingError } from '../errors';
import { createMhaTask, MHA_TASK_SETTINGS, MhaTaskSettings } from './mha';
import { createMlpTask, MLP_TASK_SETTINGS, MlpTaskSettings } from './mlp';
import { ARCHITECTURES, Architecture, Task } from './types';

/** Settings of any task: the architecture plus that architecture's own settings. */
export type TaskSettings = { architecture: 'mlp' } & MlpTaskSettings;

type TaskFactory = (settings: Record<string, unknown>) => Task;

/** A task constructor and the names of the settings it reads. */
interface TaskKind {
  factory: TaskFactory;
  settingNames: string[];
}

const taskKinds: Partial<Record<Architecture, TaskKind>> = {
  mlp: { factory: (settings) => createMlpTask(settings as unknown as MlpTaskSettings), settingNames: Object.keys(MLP_TASK_SETTINGS) },
  mha: { factory: (settings) => createMhaTask(settings as unknown as MhaTaskSettings), settingNames: Object.keys(MHA_TASK_SETTINGS) },
};

/** Registers the task constructor of an architecture and the names of its settings (used by the RNN module). */
export function registerTaskFactory(architecture: Architecture, factory: TaskFactory, settingNames: string[]): void {
  taskKinds[architecture] = { factory, settingNames };
}

/**
 * Creates the task of `settings.architecture`. A setting name the architecture does not know
 * raises a SettingError, so that a misspelled option (say `serchVersion`) cannot be ignored.
 */
export function createTask(settings: { architecture: Architecture } & Record<string, unknown>): Task {
  const architecture = requireChoice('architecture', settings.architecture, ARCHITECTURES);
  const kind = taskKinds[architecture];
  if (!kind) throw new Error(`The "${architecture}" architecture has no task generator yet.`);

  const unknown = Object.keys(settings).filter((name) => name !== 'architecture' && !kind.settingNames.includes(name));
  if (unknown.length > 0) {
    throw new SettingError(`${architecture} task setting name`, unknown.length === 1 ? unknown[0] : unknown, `one of ${kind.settingNames.join(', ')}`);
  }
  return kind.factory(settings);
}
