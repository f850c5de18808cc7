import { createHash } from 'node:crypto';
import { ModelKind } from './models/types';
import { PROFILES, ProfileName } from './profiles';
import { ProgressStyle } from './progress';
import { createTask } from './tasks';
import { Architecture } from './tasks/types';
import { Curves, trainRun, TrainedRun } from './train';

/**
 * One training run described as data: task settings, model, seeds and budget. Studies and
 * sweeps expand their grids into run specs, and `trainRunSpec` trains one. Sweep specs contain
 * only JSON values, but a study's `taskSettings.rules` may contain custom rule functions.
 */
export interface RunSpec {
  /** Content id from `makeRunSpec`, which names the run's folder in a run store. */
  id: string;
  architecture: Architecture;
  /** Settings for `createTask`: architecture, mode, rules, dataSeed and any task options. */
  taskSettings: { architecture: Architecture } & Record<string, unknown>;
  kind: ModelKind;
  encoderDim: number;
  hiddenDim: number;
  dataSeed: number;
  modelSeed: number;
  profile: ProfileName;
  /** Number of steps that overrides the profile's, or null to keep the profile's. */
  steps: number | null;
}

/**
 * Returns a run spec with its id. The id hashes the task settings (custom rules by name and
 * source), the model, the model seed, the profile name and the step override. Equal runs
 * therefore get equal ids in any process, and any change of setting gives another id.
 */
export function makeRunSpec(fields: Omit<RunSpec, 'id'>): RunSpec {
  const identity = {
    task: describeRules(fields.taskSettings),
    model: { kind: fields.kind, encoderDim: fields.encoderDim, hiddenDim: fields.hiddenDim },
    modelSeed: fields.modelSeed,
    profile: fields.profile,
    steps: fields.steps ?? null,
  };
  return { id: runId(identity), ...fields };
}

/** Returns the number of Adam steps `spec` trains for. */
export function runSpecSteps(spec: RunSpec): number {
  return spec.steps ?? PROFILES[spec.profile].steps[spec.architecture];
}

/** Options of `trainRunSpec`, passed on to `trainRun`. */
export interface TrainRunSpecOptions {
  runDir?: string;
  progress?: ProgressStyle;
  label?: string;
  onProgress?: (step: number, steps: number) => void;
  onEvaluation?: (curves: Curves) => void;
}

/** Builds the task of `spec` and trains its model with `trainRun`. */
export function trainRunSpec(spec: RunSpec, options: TrainRunSpecOptions = {}): Promise<TrainedRun> {
  return trainRun({
    task: createTask(spec.taskSettings),
    model: { kind: spec.kind, encoderDim: spec.encoderDim, hiddenDim: spec.hiddenDim },
    modelSeed: spec.modelSeed,
    profile: spec.profile,
    steps: spec.steps ?? undefined,
    ...options,
  });
}

/** Inputs at which custom rules are evaluated, so rules with equal source but other captured values differ. */
const RULE_PROBES: Array<[number, number]> = [
  [0.5, -1.25],
  [-2, 0.75],
  [1.5, 1.5],
  [-0.3, -0.7],
  [3, -2.5],
];

/**
 * Replaces custom rule functions by their name, source and outputs at fixed probe inputs, so
 * they can be hashed. Rules given as data (such as linear dynamics matrices) stay as they are.
 */
function describeRules(taskSettings: Record<string, unknown>): Record<string, unknown> {
  const rules = taskSettings.rules;
  if (!Array.isArray(rules)) return taskSettings;
  return { ...taskSettings, rules: rules.map(describeRule) };
}

function describeRule(rule: unknown): unknown {
  const apply = typeof rule === 'function' ? rule : (rule as { apply?: unknown } | null)?.apply;
  if (typeof apply !== 'function') return rule;
  const name = typeof rule === 'function' ? rule.name : (rule as { name?: string }).name;
  const probes = RULE_PROBES.map(([first, second]) => {
    try {
      const value: unknown = apply(first, second);
      return typeof value === 'number' && Number.isFinite(value) ? value : String(value);
    } catch (error) {
      return `error: ${(error as Error).message}`;
    }
  });
  return { name, source: apply.toString(), probes };
}

/** Returns a 16-character hex id from the SHA-256 of the canonical JSON of `value`. */
export function runId(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, 16);
}

/** JSON with object keys sorted, so equal content always gives equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, entry]) => entry !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, entry]) => `${JSON.stringify(key)}:${canonicalJson(entry)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
