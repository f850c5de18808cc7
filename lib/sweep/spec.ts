import { SettingError } from '../errors';
import { createModel } from '../models';
import { MODEL_KINDS, ModelKind } from '../models/types';
import { PROFILE_NAMES, ProfileName, resolveProfile } from '../profiles';
import { makeRunSpec, RunSpec } from '../run-spec';
import { createTask } from '../tasks';
import { ARCHITECTURES, Architecture, Task, TASK_MODES, TaskMode } from '../tasks/types';

/** A model size: `encoderDim` is e (MLP, RNN) or D (MHA); `hiddenDim` is h, A or n. */
export interface ModelSize {
  encoderDim: number;
  hiddenDim: number;
}

/** The benchmark's hidden size as a multiple of the encoder size (h = 4e, A = 4D, n = 4e). */
export const HIDDEN_RATIO = 4;

/**
 * A sweep: the grid of runs over every combination of its axes. Every field except `rules` and
 * `sizes` has a default (see `resolveSweep`). The spec is plain JSON, so it can be stored next
 * to a cluster job and read back by each of its tasks.
 */
export interface SweepSettings {
  /** Default ['mlp']. */
  architectures?: Architecture[];
  /** Default ['classification', 'regression']. */
  modes?: TaskMode[];
  /** Rule counts R. */
  rules: number[];
  /** Model sizes; a number is an encoder size e with hiddenDim = 4e. */
  sizes: Array<number | ModelSize>;
  /** Default [0]. */
  dataSeeds?: number[];
  /** Default [0]. */
  modelSeeds?: number[];
  /** Default: all four model kinds. */
  kinds?: ModelKind[];
  /** Training budget; default MODARCH_PROFILE, else "quick". */
  profile?: ProfileName;
  /** Overrides the profile's number of steps. */
  steps?: number | null;
  /** Extra task settings per architecture, such as `{ mha: { searchVersion: 2 }, rnn: { stateDim: 16 } }`. */
  taskOptions?: Partial<Record<Architecture, Record<string, unknown>>>;
}

/** A sweep with every default filled in and every size written out. */
export interface SweepSpec {
  architectures: Architecture[];
  modes: TaskMode[];
  rules: number[];
  sizes: ModelSize[];
  dataSeeds: number[];
  modelSeeds: number[];
  kinds: ModelKind[];
  profile: ProfileName;
  steps: number | null;
  taskOptions: Partial<Record<Architecture, Record<string, unknown>>>;
}

/** One invalid value of a sweep spec: where it is, what it is and what is accepted. */
export interface SweepProblem {
  setting: string;
  value: unknown;
  accepted: string;
}

/** Error listing every problem of a sweep spec at once. */
export class SweepSpecError extends Error {
  constructor(readonly problems: SweepProblem[]) {
    super(
      `Invalid sweep spec (${problems.length} ${problems.length === 1 ? 'problem' : 'problems'}):\n` +
        problems.map((problem) => `- ${new SettingError(problem.setting, problem.value, problem.accepted).message}`).join('\n'),
    );
    this.name = 'SweepSpecError';
  }
}

/**
 * Fills in the defaults of `settings` and checks the whole spec before any run starts: empty
 * axes, unknown names, non-integer or out-of-range values and duplicate values. It also builds
 * every (task, model) pair of the grid once, which finds hidden sizes that a model cannot split
 * into modules. Raises a `SweepSpecError` that lists every problem.
 */
export function resolveSweep(settings: SweepSettings): SweepSpec {
  const problems: SweepProblem[] = [];
  const source = (typeof settings === 'object' && settings !== null ? settings : {}) as Partial<Record<keyof SweepSettings, unknown>>;
  if (source !== settings) problems.push({ setting: 'sweep spec', value: settings, accepted: 'an object with the grid axes' });

  const known = new Set<string>(['architectures', 'modes', 'rules', 'sizes', 'dataSeeds', 'modelSeeds', 'kinds', 'profile', 'steps', 'taskOptions']);
  for (const key of Object.keys(source)) {
    if (!known.has(key)) problems.push({ setting: 'sweep spec field', value: key, accepted: `one of ${[...known].join(', ')}` });
  }

  const architectures = checkChoices(problems, 'architectures', source.architectures ?? ['mlp'], ARCHITECTURES);
  const modes = checkChoices(problems, 'modes', source.modes ?? [...TASK_MODES], TASK_MODES);
  const kinds = checkChoices(problems, 'kinds', source.kinds ?? [...MODEL_KINDS], MODEL_KINDS);
  const rules = checkIntegers(problems, 'rules', source.rules, 2, 1024);
  const dataSeeds = checkIntegers(problems, 'dataSeeds', source.dataSeeds ?? [0], 0);
  const modelSeeds = checkIntegers(problems, 'modelSeeds', source.modelSeeds ?? [0], 0);
  const checkedSizes = checkSizes(problems, source.sizes);
  const sizes = checkedSizes.map((entry) => entry.size);

  let profile: ProfileName = 'quick';
  if (source.profile !== undefined && !(PROFILE_NAMES as readonly unknown[]).includes(source.profile)) {
    problems.push({ setting: 'profile', value: source.profile, accepted: `one of ${PROFILE_NAMES.map((name) => JSON.stringify(name)).join(', ')}` });
  } else {
    profile = resolveProfile(source.profile as ProfileName | undefined).name;
  }

  const steps = source.steps ?? null;
  if (steps !== null && !(typeof steps === 'number' && Number.isInteger(steps) && steps >= 1)) {
    problems.push({ setting: 'steps', value: steps, accepted: 'an integer >= 1, or null for the profile steps' });
  }

  const taskOptions = checkTaskOptions(problems, source.taskOptions);

  const spec: SweepSpec = {
    architectures,
    modes,
    rules,
    sizes,
    dataSeeds,
    modelSeeds,
    kinds,
    profile,
    steps: steps as number | null,
    taskOptions,
  };
  // Tasks and models are built from the valid values, so their problems are listed too.
  checkBuilds(problems, spec, checkedSizes.map((entry) => entry.index));
  if (problems.length > 0) throw new SweepSpecError(problems);
  return spec;
}

/**
 * Expands a sweep into run specs in grid order (architecture, mode, rules, size, data seed,
 * model kind, model seed). Each run's id is derived from its content, so it does not depend
 * on the position of the run in the grid or on the other axes.
 */
export function expandSweep(settings: SweepSettings | SweepSpec): RunSpec[] {
  const spec = resolveSweep(settings);
  const runs: RunSpec[] = [];
  for (const architecture of spec.architectures) {
    for (const mode of spec.modes) {
      for (const rules of spec.rules) {
        for (const size of spec.sizes) {
          for (const dataSeed of spec.dataSeeds) {
            const taskSettings = { ...spec.taskOptions[architecture], architecture, mode, rules, dataSeed };
            for (const kind of spec.kinds) {
              for (const modelSeed of spec.modelSeeds) {
                runs.push(
                  makeRunSpec({
                    architecture,
                    taskSettings,
                    kind,
                    encoderDim: size.encoderDim,
                    hiddenDim: size.hiddenDim,
                    dataSeed,
                    modelSeed,
                    profile: spec.profile,
                    steps: spec.steps,
                  }),
                );
              }
            }
          }
        }
      }
    }
  }
  return runs;
}

function checkList(problems: SweepProblem[], setting: string, value: unknown, accepted: string): unknown[] {
  if (!Array.isArray(value) || value.length === 0) {
    problems.push({ setting, value, accepted: `a non-empty list of ${accepted}` });
    return [];
  }
  const seen = new Set<string>();
  value.forEach((entry, index) => {
    const key = JSON.stringify(entry);
    if (seen.has(key)) problems.push({ setting: `${setting}[${index}]`, value: entry, accepted: `a value not already listed in ${setting}` });
    seen.add(key);
  });
  return value;
}

function checkChoices<T extends string>(problems: SweepProblem[], setting: string, value: unknown, choices: readonly T[]): T[] {
  const accepted = `one of ${choices.map((choice) => JSON.stringify(choice)).join(', ')}`;
  const entries = checkList(problems, setting, value, `names, each ${accepted}`);
  entries.forEach((entry, index) => {
    if (!(choices as readonly unknown[]).includes(entry)) problems.push({ setting: `${setting}[${index}]`, value: entry, accepted });
  });
  return entries.filter((entry): entry is T => (choices as readonly unknown[]).includes(entry));
}

function checkIntegers(problems: SweepProblem[], setting: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number[] {
  const accepted = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
  const entries = checkList(problems, setting, value, `integers, each ${accepted}`);
  const valid = (entry: unknown): entry is number => typeof entry === 'number' && Number.isInteger(entry) && entry >= min && entry <= max;
  entries.forEach((entry, index) => {
    if (!valid(entry)) problems.push({ setting: `${setting}[${index}]`, value: entry, accepted });
  });
  return entries.filter(valid);
}

/** Returns the valid sizes, each with its position in the list it came from. */
function checkSizes(problems: SweepProblem[], value: unknown): Array<{ index: number; size: ModelSize }> {
  const entries = checkList(problems, 'sizes', value, 'encoder sizes (hiddenDim = 4 x encoderDim) or { encoderDim, hiddenDim } objects');
  const sizes: Array<{ index: number; size: ModelSize }> = [];
  const isSize = (entry: unknown) => typeof entry === 'number' && Number.isInteger(entry) && entry >= 1 && entry <= 65536;
  entries.forEach((entry, index) => {
    const size = typeof entry === 'number' ? { encoderDim: entry, hiddenDim: HIDDEN_RATIO * entry } : (entry as Partial<ModelSize> | null);
    if (typeof size !== 'object' || size === null) {
      problems.push({ setting: `sizes[${index}]`, value: entry, accepted: 'an encoder size or an object { encoderDim, hiddenDim }' });
      return;
    }
    let valid = true;
    for (const field of ['encoderDim', 'hiddenDim'] as const) {
      if (!isSize(size[field])) {
        const setting = typeof entry === 'number' ? `sizes[${index}]` : `sizes[${index}].${field}`;
        problems.push({ setting, value: typeof entry === 'number' ? entry : size[field], accepted: 'an integer from 1 to 65536' });
        valid = false;
        break;
      }
    }
    if (valid) sizes.push({ index, size: size as ModelSize });
  });
  return sizes;
}

function checkTaskOptions(problems: SweepProblem[], value: unknown): SweepSpec['taskOptions'] {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problems.push({ setting: 'taskOptions', value, accepted: 'an object keyed by architecture, such as { "rnn": { "stateDim": 16 } }' });
    return {};
  }
  const options: SweepSpec['taskOptions'] = {};
  for (const [key, entry] of Object.entries(value)) {
    if (!(ARCHITECTURES as readonly string[]).includes(key)) {
      problems.push({ setting: 'taskOptions key', value: key, accepted: `one of ${ARCHITECTURES.map((name) => JSON.stringify(name)).join(', ')}` });
      continue;
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      problems.push({ setting: `taskOptions.${key}`, value: entry, accepted: 'an object of task settings' });
      continue;
    }
    const reserved = Object.keys(entry).filter((name) => ['architecture', 'mode', 'rules', 'dataSeed'].includes(name));
    if (reserved.length > 0) {
      problems.push({ setting: `taskOptions.${key}`, value: reserved, accepted: 'task settings other than architecture, mode, rules and dataSeed, which are grid axes' });
      continue;
    }
    options[key as Architecture] = entry as Record<string, unknown>;
  }
  return options;
}

/**
 * Returns the number that the hidden size must be a multiple of. MLP modules take h / R units
 * each. MHA uses 2R heads in every model (two per module in the modular ones), each of A / (2R)
 * units. RNN module sizes are rounded down from a formula, so any size works there.
 */
function hiddenDivisor(architecture: Architecture, kind: ModelKind, rules: number): number {
  if (architecture === 'mlp') return kind === 'monolithic' ? 1 : rules;
  if (architecture === 'mha') return 2 * rules;
  return 1;
}

/**
 * Builds every distinct task and model of the grid once and records what fails, without
 * duplicates. `sizeIndices` gives each size's position in the list the user wrote.
 */
function checkBuilds(problems: SweepProblem[], spec: SweepSpec, sizeIndices: number[]): void {
  const seen = new Set<string>();
  const report = (problem: SweepProblem, key = JSON.stringify(problem)) => {
    if (!seen.has(key)) problems.push(problem);
    seen.add(key);
  };

  for (const architecture of spec.architectures) {
    for (const mode of spec.modes) {
      for (const rules of spec.rules) {
        let task: Task;
        try {
          task = createTask({ ...spec.taskOptions[architecture], architecture, mode, rules, dataSeed: spec.dataSeeds[0] ?? 0 });
        } catch (error) {
          // One message per architecture and cause, so an architecture without a task generator is listed once.
          const message = (error as Error).message;
          report(
            { setting: `${architecture} task`, value: { mode, rules, ...spec.taskOptions[architecture] }, accepted: `taskOptions.${architecture} settings that build the task (${message})` },
            `${architecture}: ${message}`,
          );
          continue;
        }

        for (const [position, size] of spec.sizes.entries()) {
          const index = sizeIndices[position];
          for (const kind of spec.kinds) {
            const divisor = hiddenDivisor(architecture, kind, rules);
            if (size.hiddenDim % divisor !== 0) {
              const lower = Math.max(divisor, size.hiddenDim - (size.hiddenDim % divisor));
              report({
                setting: `sizes[${index}].hiddenDim`,
                value: size.hiddenDim,
                accepted: `a multiple of ${divisor} for ${kind} ${architecture} models with ${rules} rules, such as ${lower} or ${lower + divisor}`,
              });
              continue;
            }
            try {
              createModel(task, { kind, encoderDim: size.encoderDim, hiddenDim: size.hiddenDim });
            } catch (error) {
              report({ setting: `sizes[${index}]`, value: size, accepted: `a size that builds a ${kind} ${architecture} model with ${rules} rules (${(error as Error).message})` });
            }
          }
        }
      }
    }
  }
}
