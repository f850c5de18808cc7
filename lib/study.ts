import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { requireInteger, SettingError } from './errors';
import { initEngine } from './engine';
import { randomRouterBaseline, RouterMetrics } from './metrics';
import { MODEL_KINDS, MODEL_LABELS, ModelKind } from './models/types';
import { PROFILES, ProfileName, resolveProfile } from './profiles';
import { Progress, ProgressStyle } from './progress';
import { meanInterval } from './statistics';
import { createTask } from './tasks';
import { Architecture, TaskMode } from './tasks/types';
import { readRunRecord, RunRecord, trainRun } from './train';

/** A grid of runs on one architecture and task mode. */
export interface StudySettings {
  architecture?: Architecture;
  mode: TaskMode;
  /** Rule counts to study, or lists of custom rules (one entry per task). */
  rules: Array<number | unknown[]>;
  kinds?: ModelKind[];
  encoderDim: number;
  hiddenDim: number;
  dataSeeds?: number[];
  modelSeeds?: number[];
  profile?: ProfileName;
  /** Overrides the profile's number of steps. */
  steps?: number;
  /** Extra task settings, such as `searchVersion` (MHA) or `stateDim` (RNN). */
  taskOptions?: Record<string, unknown>;
  /** Folder where each run keeps its checkpoints and record; finished runs are read back, not retrained. */
  storeDir?: string;
  progress?: ProgressStyle;
}

/** The records of a study and the random-router baseline for each rule count in it. */
export interface StudyResult {
  records: RunRecord[];
  baselines: Record<number, RouterMetrics>;
}

/** One run of a study, before it runs. */
export interface StudyRun {
  id: string;
  architecture: Architecture;
  taskSettings: Record<string, unknown>;
  kind: ModelKind;
  dataSeed: number;
  modelSeed: number;
}

/**
 * Expands the study grid into runs, each with an id derived from its content (task settings,
 * custom rule sources, model, seeds and budget), so the same run always gets the same folder.
 */
export function planStudy(settings: StudySettings): StudyRun[] {
  const architecture = settings.architecture ?? 'mlp';
  const kinds = settings.kinds ?? [...MODEL_KINDS];
  const dataSeeds = settings.dataSeeds ?? [0];
  const modelSeeds = settings.modelSeeds ?? [0];
  if (!Array.isArray(settings.rules) || settings.rules.length === 0) {
    throw new SettingError('rules', settings.rules, 'a non-empty list of rule counts or rule lists');
  }
  if (kinds.length === 0) throw new SettingError('kinds', kinds, `a non-empty list of ${MODEL_KINDS.join(', ')}`);
  const profileName = resolveProfile(settings.profile).name;

  const runs: StudyRun[] = [];
  for (const rules of settings.rules) {
    for (const dataSeed of dataSeeds) {
      const taskSettings = { ...settings.taskOptions, architecture, mode: settings.mode, rules, dataSeed };
      for (const kind of kinds) {
        for (const modelSeed of modelSeeds) {
          const identity = {
            task: describeRules(taskSettings),
            model: { kind, encoderDim: settings.encoderDim, hiddenDim: settings.hiddenDim },
            modelSeed,
            profile: profileName,
            steps: settings.steps ?? null,
          };
          runs.push({ id: runId(identity), architecture, taskSettings, kind, dataSeed, modelSeed });
        }
      }
    }
  }
  return runs;
}

/**
 * Trains every run of the study one after another (or reads it back from `storeDir`) with one
 * progress display over all steps, and computes the random-router baseline per rule count.
 */
export async function runStudy(settings: StudySettings): Promise<StudyResult> {
  await initEngine();
  requireInteger('encoderDim', settings.encoderDim, 1);
  requireInteger('hiddenDim', settings.hiddenDim, 1);
  const runs = planStudy(settings);
  const profile = resolveProfile(settings.profile);
  const stepsPerRun = settings.steps ?? profile.steps[runs[0].architecture];
  const progress = new Progress(`study (${runs.length} runs)`, runs.length * stepsPerRun, 'steps', settings.progress);
  const records: RunRecord[] = [];

  for (const [index, run] of runs.entries()) {
    const runDir = settings.storeDir ? path.join(settings.storeDir, run.id) : undefined;
    const stored = runDir ? readRunRecord(runDir) : null;
    const task = createTask(run.taskSettings as { architecture: Architecture });
    const name = `${MODEL_LABELS[run.kind]} R=${task.ruleCount}`;
    if (stored) {
      records.push(stored);
      progress.update((index + 1) * stepsPerRun, `${name}: read from ${runDir}`);
      continue;
    }
    const { record } = await trainRun({
      task,
      model: { kind: run.kind, encoderDim: settings.encoderDim, hiddenDim: settings.hiddenDim },
      modelSeed: run.modelSeed,
      profile: profile.name,
      steps: settings.steps,
      runDir,
      progress: 'off',
      onProgress: (step) => progress.update(index * stepsPerRun + step, `run ${index + 1}/${runs.length}: ${name}`),
    });
    records.push(record);
  }
  progress.finish();

  const baselines: Record<number, RouterMetrics> = {};
  for (const record of records) baselines[record.task.ruleCount] ??= randomRouterBaseline(record.task.ruleCount);
  return { records, baselines };
}

function describeRules(taskSettings: Record<string, unknown>): Record<string, unknown> {
  const rules = taskSettings.rules;
  if (!Array.isArray(rules)) return taskSettings;
  const described = rules.map((rule) =>
    typeof rule === 'function' ? { name: rule.name, source: rule.toString() } : { name: (rule as { name?: string }).name, source: String((rule as { apply?: unknown }).apply) },
  );
  return { ...taskSettings, rules: described };
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

/** Builds one row per run: settings, performance and module metrics (empty for Monolithic). */
export function recordRows(records: RunRecord[]): Array<Record<string, string | number | null>> {
  return records.map((record) => ({
    architecture: record.task.architecture,
    mode: record.task.mode,
    rules: record.task.ruleCount,
    model: record.model.label,
    parameters: record.model.parameterCount,
    dataSeed: record.task.dataSeed,
    modelSeed: record.modelSeed,
    idPerformance: record.id.performance,
    oodPerformance: record.ood.performance,
    collapseAverage: record.metrics?.collapseAverage ?? null,
    collapseWorst: record.metrics?.collapseWorst ?? null,
    inverseMutualInformation: record.metrics?.inverseMutualInformation ?? null,
    alignment: record.metrics?.alignment ?? null,
    adaptation: record.metrics?.adaptation ?? null,
    steps: record.profile.steps,
    seconds: record.seconds,
  }));
}

const SUMMARY_COLUMNS = [
  'idPerformance',
  'oodPerformance',
  'collapseAverage',
  'collapseWorst',
  'inverseMutualInformation',
  'alignment',
  'adaptation',
] as const;

/**
 * Averages runs over seeds per (architecture, mode, rules, model): each metric's mean and the
 * half-width of its 95% interval (`<metric>Ci`). Missing module metrics stay empty cells.
 */
export function summaryRows(records: RunRecord[]): Array<Record<string, string | number | null>> {
  const groups = new Map<string, RunRecord[]>();
  for (const record of records) {
    const key = [record.task.architecture, record.task.mode, record.task.ruleCount, record.model.label].join('|');
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(record);
  }

  const rows = [...groups.values()].map((group) => {
    const rows = recordRows(group);
    const first = rows[0];
    const summary: Record<string, string | number | null> = {
      architecture: first.architecture,
      mode: first.mode,
      rules: first.rules,
      model: first.model,
      runs: group.length,
    };
    for (const column of SUMMARY_COLUMNS) {
      const { mean, halfWidth, count } = meanInterval(rows.map((row) => row[column] as number | null));
      summary[column] = count > 0 ? mean : null;
      summary[`${column}Ci`] = count > 0 ? halfWidth : null;
    }
    return summary;
  });
  const order = (label: unknown) => Object.values(MODEL_LABELS).indexOf(label as string);
  return rows.sort((a, b) => (a.rules as number) - (b.rules as number) || order(a.model) - order(b.model));
}

/** Builds a danfo.js DataFrame from rows (danfojs-node loads on first use). */
export function toDataFrame(rows: Array<Record<string, unknown>>): import('danfojs-node').DataFrame {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const danfo = require('danfojs-node') as typeof import('danfojs-node');
  return new danfo.DataFrame(rows.map((row) => Object.fromEntries(Object.entries(row).map(([key, value]) => [key, value ?? NaN]))));
}

export { PROFILES };
