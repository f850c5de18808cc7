import * as path from 'node:path';
import { requireInteger, SettingError } from './errors';
import { initEngine } from './engine';
import { randomRouterBaseline, RouterMetrics } from './metrics';
import { MODEL_KINDS, MODEL_LABELS, ModelKind } from './models/types';
import { PROFILES, ProfileName, resolveProfile } from './profiles';
import { Progress, ProgressStyle } from './progress';
import { makeRunSpec, RunSpec, trainRunSpec } from './run-spec';
import { meanInterval } from './statistics';
import { createModel } from './models';
import { createTask } from './tasks';
import { Architecture, TaskMode } from './tasks/types';
import { readRunRecord, RunRecord } from './train';

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
export type StudyRun = RunSpec;

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
          const spec = makeRunSpec({
            architecture,
            taskSettings,
            kind,
            encoderDim: settings.encoderDim,
            hiddenDim: settings.hiddenDim,
            dataSeed,
            modelSeed,
            profile: profileName,
            steps: settings.steps ?? null,
          });
          runs.push(spec);
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

  // Build every task and model first, so a setting that breaks one run fails before any trains.
  for (const run of runs) {
    createModel(createTask(run.taskSettings as { architecture: Architecture }), {
      kind: run.kind,
      encoderDim: run.encoderDim,
      hiddenDim: run.hiddenDim,
    });
  }

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
    const { record } = await trainRunSpec(run, {
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

/** Builds one row per run: settings, performance and module metrics (empty for Monolithic). */
export function recordRows(records: RunRecord[]): Array<Record<string, string | number | null>> {
  return records.map((record) => ({
    architecture: record.task.architecture,
    mode: record.task.mode,
    rules: record.task.ruleCount,
    model: record.model.label,
    encoderDim: record.model.encoderDim,
    hiddenDim: record.model.hiddenDim,
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
    profile: record.profile.name,
    steps: record.profile.steps,
    seconds: record.seconds,
  }));
}

/** Metrics that `summaryRows` averages. */
export const SUMMARY_COLUMNS = [
  'idPerformance',
  'oodPerformance',
  'collapseAverage',
  'collapseWorst',
  'inverseMutualInformation',
  'alignment',
  'adaptation',
] as const;

/** Columns of `recordRows` that `summaryRows` can group by. */
export type SummaryGroupColumn =
  | 'architecture'
  | 'mode'
  | 'rules'
  | 'model'
  | 'encoderDim'
  | 'hiddenDim'
  | 'dataSeed'
  | 'modelSeed'
  | 'profile'
  | 'steps';

/** Default grouping of `summaryRows`: one group per setting and model, over all seeds. */
export const SUMMARY_GROUPS: readonly SummaryGroupColumn[] = ['architecture', 'mode', 'rules', 'encoderDim', 'hiddenDim', 'model'];

/**
 * Averages runs per group of the columns `by` (by default per architecture, mode, rules, size
 * and model, which averages over data and model seeds): each metric's mean and the half-width
 * of its 95% interval (`<metric>Ci`), plus the number of runs. Missing module metrics are
 * skipped, so a Monolithic group gets empty cells and never NaN.
 */
export function summaryRows(
  records: RunRecord[],
  by: readonly SummaryGroupColumn[] = SUMMARY_GROUPS,
): Array<Record<string, string | number | null>> {
  const groups = new Map<string, Array<Record<string, string | number | null>>>();
  for (const row of recordRows(records)) {
    const key = JSON.stringify(by.map((column) => row[column]));
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(row);
  }

  const summaries = [...groups.values()].map((rows) => {
    const summary: Record<string, string | number | null> = {};
    for (const column of by) summary[column] = rows[0][column];
    summary.runs = rows.length;
    for (const column of SUMMARY_COLUMNS) {
      const { mean, halfWidth, count } = meanInterval(rows.map((row) => row[column] as number | null));
      summary[column] = count > 0 ? mean : null;
      summary[`${column}Ci`] = count > 0 ? halfWidth : null;
    }
    return summary;
  });
  return summaries.sort((a, b) => compareRows(a, b, [...by].sort((x, y) => SORT_ORDER.indexOf(x) - SORT_ORDER.indexOf(y))));
}

/** Order in which summary rows are sorted: rules first, as the figures read, and the model last. */
const SORT_ORDER: readonly SummaryGroupColumn[] = ['rules', 'architecture', 'mode', 'encoderDim', 'hiddenDim', 'profile', 'steps', 'dataSeed', 'modelSeed', 'model'];

function compareRows(a: Record<string, unknown>, b: Record<string, unknown>, columns: readonly SummaryGroupColumn[]): number {
  const modelOrder = (label: unknown) => Object.values(MODEL_LABELS).indexOf(label as string);
  for (const column of columns) {
    const [left, right] = column === 'model' ? [modelOrder(a.model), modelOrder(b.model)] : [a[column], b[column]];
    if (left === right) continue;
    if (typeof left === 'number' && typeof right === 'number') return left - right;
    return String(left) < String(right) ? -1 : 1;
  }
  return 0;
}

/** Builds a danfo.js DataFrame from rows (danfojs-node loads on first use). */
export function toDataFrame(rows: Array<Record<string, unknown>>): import('danfojs-node').DataFrame {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const danfo = require('danfojs-node') as typeof import('danfojs-node');
  return new danfo.DataFrame(rows.map((row) => Object.fromEntries(Object.entries(row).map(([key, value]) => [key, value ?? NaN]))));
}

export { PROFILES };
