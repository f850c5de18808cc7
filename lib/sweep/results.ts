import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from '../checkpoint';
import { MODEL_LABELS } from '../models/types';
import { RunSpec } from '../run-spec';
import { proportionInterval, ProportionInterval } from '../statistics';
import { recordRows, summaryRows, SUMMARY_GROUPS, SummaryGroupColumn } from '../study';
import { RunRecord } from '../train';
import { SweepSpec } from './spec';
import { RunStore, StoredRun } from './store';

/** A table row that maps column names to values, where null is an empty cell. */
export type ResultRow = Record<string, string | number | null>;

/** Grouping of sweep summaries: one group per setting and model over seeds, with the budget keeping sweeps of several profiles apart. */
export const SWEEP_SUMMARY_GROUPS: readonly SummaryGroupColumn[] = [...SUMMARY_GROUPS, 'profile', 'steps'];

/** File names that `writeResults` writes into its output folder. */
export const RESULT_FILES = { records: 'records.json', results: 'results.csv', summary: 'summary.csv', info: 'sweep.json' } as const;

/** Provenance of a set of stored results, kept next to them as `sweep.json`. */
export interface SweepInfo {
  sweep: SweepSpec;
  runs: number;
  workers: number;
  /** Wall time of the whole sweep, in seconds. */
  wallSeconds: number;
  /** Hardware and software, from `describeMachine`. */
  machine: string;
  finishedAt: string;
  /** Anything a reader of the numbers should know, such as other load on the machine. */
  note?: string;
}

/** Finished runs of a store and the ids of the requested runs that have no record yet. */
export interface CollectedRuns {
  runs: StoredRun[];
  missing: string[];
}

/**
 * Reads the finished runs of a store: those of `specs` when given (a sweep's runs, in grid
 * order), else every finished run in the store. Local and cluster sweeps write the same
 * store layout, so both are collected the same way.
 */
export function collectRuns(storeDir: string, specs?: readonly RunSpec[]): CollectedRuns {
  const store = new RunStore(storeDir);
  const runs = store.finishedRuns(specs?.map((spec) => spec.id));
  const found = new Set(runs.map((run) => run.spec.id));
  const missing = specs ? specs.map((spec) => spec.id).filter((id) => !found.has(id)) : [];
  return { runs, missing };
}

/** Builds one row per run: the run id, then the columns of `recordRows` (module metrics empty for Monolithic). */
export function sweepRows(runs: readonly StoredRun[]): ResultRow[] {
  const rows = recordRows(runs.map((run) => run.record));
  return rows.map((row, index) => ({ id: runs[index].spec.id, ...row }));
}

/** Computes seed averages with 95% intervals per setting and model, with `summaryRows`. */
export function sweepSummaryRows(runs: readonly StoredRun[]): ResultRow[] {
  return summaryRows(
    runs.map((run) => run.record),
    SWEEP_SUMMARY_GROUPS,
  );
}

/**
 * Formats rows as CSV (RFC 4180): a header with every column in order of first appearance,
 * empty cells for null, undefined and NaN, and quotes around text with commas, quotes or
 * line breaks.
 */
export function toCsv(rows: readonly ResultRow[]): string {
  const columns: string[] = [];
  for (const row of rows) for (const column of Object.keys(row)) if (!columns.includes(column)) columns.push(column);
  const cell = (value: unknown): string => {
    if (value === null || value === undefined || (typeof value === 'number' && Number.isNaN(value))) return '';
    const text = String(value);
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  const lines = [columns.map(cell).join(','), ...rows.map((row) => columns.map((column) => cell(row[column])).join(','))];
  return `${lines.join('\n')}\n`;
}

/**
 * Writes the results of `runs` into `outDir`: `records.json` (spec and record of every run,
 * without checkpoints), `results.csv` (one row per run) and `summary.csv` (seed averages with
 * 95% intervals). Returns the paths written.
 */
export function writeResults(runs: readonly StoredRun[], outDir: string): Record<'records' | 'results' | 'summary', string> {
  const files = {
    records: path.join(outDir, RESULT_FILES.records),
    results: path.join(outDir, RESULT_FILES.results),
    summary: path.join(outDir, RESULT_FILES.summary),
  };
  // One run per line keeps the file valid JSON and its diffs readable.
  writeFileAtomic(files.records, `[\n${runs.map((run) => JSON.stringify(run)).join(',\n')}\n]\n`);
  writeFileAtomic(files.results, toCsv(sweepRows(runs)));
  writeFileAtomic(files.summary, toCsv(sweepSummaryRows(runs)));
  return files;
}

/** Reads the runs that `writeResults` stored in `dir`. */
export function readResults(dir: string): StoredRun[] {
  const file = path.join(dir, RESULT_FILES.records);
  if (!fs.existsSync(file)) throw new Error(`No results in ${dir}: ${RESULT_FILES.records} not found. Run \`modarch sweep collect\` first.`);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as StoredRun[];
}

/** Writes `sweep.json` into `dir`. */
export function writeSweepInfo(dir: string, info: SweepInfo): string {
  const file = path.join(dir, RESULT_FILES.info);
  writeFileAtomic(file, `${JSON.stringify(info, null, 1)}\n`);
  return file;
}

/** Reads the `sweep.json` of a results folder. */
export function readSweepInfo(dir: string): SweepInfo {
  const file = path.join(dir, RESULT_FILES.info);
  if (!fs.existsSync(file)) throw new Error(`No sweep description in ${dir}: ${RESULT_FILES.info} not found.`);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as SweepInfo;
}

/** Describes this machine for `SweepInfo`: CPUs, memory, Node.js version and platform. */
export function describeMachine(): string {
  const cpus = os.cpus();
  return `${cpus.length} CPUs (${cpus[0]?.model.trim() ?? 'unknown model'}), ${Math.round(os.totalmem() / 2 ** 30)} GB, Node ${process.version}, ${os.platform()}`;
}

/** Which split's performance decides a win. */
export type PerformanceSplit = 'id' | 'ood';

/** The outcome of one setting: (architecture, mode, rules, size, data seed). */
export interface SettingOutcome {
  setting: { architecture: string; mode: string; rules: number; encoderDim: number; hiddenDim: number; dataSeed: number };
  /** Mean performance of each model over its model seeds (lower is better). */
  performance: Record<string, number>;
  /** Models with the lowest mean; more than one on an exact tie. */
  winners: string[];
}

/** Win counts and shares of each model, with 95% intervals of the shares. */
export interface WinTally {
  /** Settings compared. */
  settings: number;
  /** Settings won per model; a tie gives each tied model an equal part of one win. */
  wins: Record<string, number>;
  shares: Record<string, ProportionInterval>;
}

/** Win shares of a sweep: among all models, and between Modular and Monolithic alone. */
export interface WinShares {
  split: PerformanceSplit;
  outcomes: SettingOutcome[];
  all: WinTally;
  modularVsMonolithic: WinTally;
}

/**
 * Counts wins as the benchmark's summary figures do: for each (architecture, mode, rules, size,
 * data seed), the model with the best (lowest) performance averaged over model seeds wins.
 * `all` compares every model present in a setting; `modularVsMonolithic` compares those two
 * alone, over the settings that have both.
 */
export function winShares(records: readonly RunRecord[], split: PerformanceSplit = 'id'): WinShares {
  const column = split === 'id' ? 'idPerformance' : 'oodPerformance';
  const rows = summaryRows([...records], [...SWEEP_SUMMARY_GROUPS, 'dataSeed']);
  const settings = new Map<string, ResultRow[]>();
  for (const row of rows) {
    const key = JSON.stringify([row.architecture, row.mode, row.rules, row.encoderDim, row.hiddenDim, row.profile, row.steps, row.dataSeed]);
    if (!settings.has(key)) settings.set(key, []);
    settings.get(key)!.push(row);
  }

  const outcomes: SettingOutcome[] = [];
  for (const group of settings.values()) {
    const first = group[0];
    const performance = Object.fromEntries(group.map((row) => [row.model as string, row[column] as number]));
    outcomes.push({
      setting: {
        architecture: first.architecture as string,
        mode: first.mode as string,
        rules: first.rules as number,
        encoderDim: first.encoderDim as number,
        hiddenDim: first.hiddenDim as number,
        dataSeed: first.dataSeed as number,
      },
      performance,
      winners: lowest(performance, Object.keys(performance)),
    });
  }

  const pair = [MODEL_LABELS.modular, MODEL_LABELS.monolithic];
  return {
    split,
    outcomes,
    all: tally(outcomes, (outcome) => (Object.keys(outcome.performance).length >= 2 ? outcome.winners : null), Object.values(MODEL_LABELS)),
    modularVsMonolithic: tally(outcomes, (outcome) => (pair.every((label) => label in outcome.performance) ? lowest(outcome.performance, pair) : null), pair),
  };
}

/** Returns the labels among `labels` with the lowest finite value in `values`. */
function lowest(values: Record<string, number>, labels: readonly string[]): string[] {
  const finite = labels.filter((label) => Number.isFinite(values[label]));
  const best = Math.min(...finite.map((label) => values[label]));
  return finite.filter((label) => values[label] === best);
}

function tally(outcomes: readonly SettingOutcome[], winnersOf: (outcome: SettingOutcome) => string[] | null, labels: readonly string[]): WinTally {
  const wins: Record<string, number> = Object.fromEntries(labels.map((label) => [label, 0]));
  let settings = 0;
  for (const outcome of outcomes) {
    const winners = winnersOf(outcome);
    if (!winners || winners.length === 0) continue;
    settings += 1;
    for (const winner of winners) wins[winner] = (wins[winner] ?? 0) + 1 / winners.length;
  }
  const shares = Object.fromEntries(Object.entries(wins).map(([label, count]) => [label, proportionInterval(count, settings)]));
  return { settings, wins, shares };
}
