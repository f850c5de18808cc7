import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../checkpoint';
import { requireInteger, SettingError } from '../errors';
import { RunSpec, runId } from '../run-spec';
import { runRunSpecs, SweepReport } from './runner';
import { expandSweep, resolveSweep, SweepSettings, SweepSpec } from './spec';
import { RunStore } from './store';

/** Resources and placement of a Slurm array job. Unset directives are left to the cluster's defaults. */
export interface SlurmJobOptions {
  /** Folder of the script, its plan and the Slurm output files. Default `<store>/slurm`. */
  dir?: string;
  /** Default "modarch-sweep". */
  jobName?: string;
  partition?: string;
  account?: string;
  /** Wall time per array task in a Slurm format: "minutes", "H:MM:SS", "D-HH" or "D-HH:MM:SS". */
  time?: string;
  /** Memory per node, such as "4G" or "4000" (megabytes). */
  memory?: string;
  /** CPUs per array task, which trains that many runs at once in worker processes. Default 1. */
  cpusPerTask?: number;
  /** Runs per array task, trained in grid order. Default 4. */
  runsPerTask?: number;
  /** Array tasks running at once (the `%N` of `--array`). Default: no limit. */
  maxConcurrent?: number;
  /** Further `#SBATCH` lines, each an option such as "--qos=short". */
  extraDirectives?: string[];
  /** Node.js binary that array tasks run. Default: the one running now. */
  node?: string;
  /** Compiled CLI file that array tasks run. Default: `lib/dist/sweep/cli.js` of this package. */
  cliEntry?: string;
}

/** Contents of an array job: the sweep, the store, and the runs that were pending when it was written. */
export interface SlurmPlan {
  sweep: SweepSpec;
  store: string;
  /** Ids of the runs to train, in grid order. Task i trains entries [i k, (i + 1) k). */
  runIds: string[];
  runsPerTask: number;
  created: string;
}

/** The files of a written array job and the command that submits it. */
export interface SlurmJob {
  scriptPath: string;
  planPath: string;
  logDir: string;
  arrayTasks: number;
  runCount: number;
  submitCommand: string[];
}

const NAME_PATTERN = /^[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*$/;
const TIME_PATTERN = /^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2})$/;
const MEMORY_PATTERN = /^\d+[KMGT]?$/i;

/**
 * Writes an sbatch script for a Slurm array job over the sweep's runs that have no record in
 * the store yet, and next to it the plan (JSON) that each array task reads. Returns null when
 * every run is finished. The store must be on a file system that every node can reach.
 */
export function writeSlurmJob(settings: SweepSettings | SweepSpec, storeDir: string, options: SlurmJobOptions = {}): SlurmJob | null {
  const sweep = resolveSweep(settings);
  const store = new RunStore(storeDir);
  const runs = expandSweep(sweep);
  for (const spec of runs) store.writeSpec(spec);
  const pending = runs.filter((spec) => store.status(spec.id) !== 'finished');
  if (pending.length === 0) return null;

  const runsPerTask = requireInteger('runsPerTask', options.runsPerTask ?? 4, 1);
  const plan: SlurmPlan = {
    sweep,
    store: store.root,
    runIds: pending.map((spec) => spec.id),
    runsPerTask,
    created: new Date().toISOString(),
  };
  const jobName = options.jobName ?? 'modarch-sweep';
  const dir = path.resolve(options.dir ?? path.join(store.root, 'slurm'));
  const planId = runId({ sweep, runIds: plan.runIds, runsPerTask });
  const planPath = path.join(dir, `${jobName}-${planId}.json`);
  const scriptPath = path.join(dir, `${jobName}-${planId}.sbatch`);
  const logDir = path.join(dir, 'logs');
  fs.mkdirSync(logDir, { recursive: true });

  const arrayTasks = Math.ceil(pending.length / runsPerTask);
  writeJsonAtomic(planPath, plan);
  writeFileAtomic(scriptPath, slurmScript({ ...options, jobName }, { planPath, logDir, arrayTasks, runCount: pending.length, store: store.root }));
  fs.chmodSync(scriptPath, 0o755);
  store.sweepLog('info', `wrote Slurm array job ${scriptPath}: ${pending.length} runs in ${arrayTasks} tasks`);
  return { scriptPath, planPath, logDir, arrayTasks, runCount: pending.length, submitCommand: ['sbatch', scriptPath] };
}

/** Builds the text of the sbatch script that `writeSlurmJob` writes. */
export function slurmScript(
  options: SlurmJobOptions,
  job: { planPath: string; logDir: string; arrayTasks: number; runCount: number; store: string },
): string {
  const jobName = checkName('jobName', options.jobName ?? 'modarch-sweep');
  const cpus = requireInteger('cpusPerTask', options.cpusPerTask ?? 1, 1, 1024);
  const node = options.node ?? process.execPath;
  const cliEntry = options.cliEntry ?? compiledCli();
  const array = `0-${job.arrayTasks - 1}${options.maxConcurrent === undefined ? '' : `%${requireInteger('maxConcurrent', options.maxConcurrent, 1)}`}`;

  const directives = [`--job-name=${jobName}`, `--array=${array}`, `--cpus-per-task=${cpus}`, '--ntasks=1'];
  if (options.partition !== undefined) directives.push(`--partition=${checkName('partition', options.partition)}`);
  if (options.account !== undefined) directives.push(`--account=${checkName('account', options.account)}`);
  if (options.time !== undefined) {
    if (!TIME_PATTERN.test(options.time)) throw new SettingError('time', options.time, 'a Slurm time such as "90", "2:00:00", "1-00" or "1-12:00:00"');
    directives.push(`--time=${options.time}`);
  }
  if (options.memory !== undefined) {
    if (!MEMORY_PATTERN.test(options.memory)) throw new SettingError('memory', options.memory, 'a size such as "4G", "500M" or "4000" (megabytes)');
    directives.push(`--mem=${options.memory}`);
  }
  for (const [index, directive] of (options.extraDirectives ?? []).entries()) {
    if (!/^--?[A-Za-z]/.test(directive) || /[\r\n]/.test(directive)) {
      throw new SettingError(`extraDirectives[${index}]`, directive, 'one sbatch option on one line, such as "--qos=short"');
    }
    directives.push(directive);
  }
  directives.push(`--output=${path.join(job.logDir, `${jobName}-%A_%a.out`)}`);

  return [
    '#!/bin/bash',
    ...directives.map((directive) => `#SBATCH ${directive}`),
    '',
    `# Written by \`modarch sweep --slurm\`: ${job.runCount} runs in ${job.arrayTasks} array tasks.`,
    `# Each task trains its share of the runs listed in the plan into the run store ${job.store}.`,
    '# Submitting again, or rerunning a task, skips finished runs and resumes the others from their checkpoints.',
    'set -euo pipefail',
    'export MODARCH_PROGRESS=log',
    `exec ${shellQuote(node)} ${shellQuote(cliEntry)} sweep slurm-task --plan ${shellQuote(job.planPath)} --workers "\${SLURM_CPUS_PER_TASK:-1}"`,
    '',
  ].join('\n');
}

/** Reads the `#SBATCH` directives of a script, in order, as option names and values ("--mem=4G" gives ["mem", "4G"]). */
export function parseSbatchDirectives(script: string): Array<[string, string]> {
  const directives: Array<[string, string]> = [];
  for (const line of script.split('\n')) {
    const match = /^#SBATCH\s+--?([A-Za-z-]+)(?:[= ](.*))?$/.exec(line.trim());
    if (match) directives.push([match[1], (match[2] ?? '').trim()]);
  }
  return directives;
}

/** Reads a plan written by `writeSlurmJob`. */
export function readSlurmPlan(planPath: string): SlurmPlan {
  if (!fs.existsSync(planPath)) throw new SettingError('plan', planPath, 'the path of a plan written by `modarch sweep --slurm`');
  return JSON.parse(fs.readFileSync(planPath, 'utf8')) as SlurmPlan;
}

/**
 * Returns the runs of array task `taskIndex`: its slice of the plan's run ids, resolved against
 * the plan's sweep. Raises when the index is out of range, or when an id is not in the sweep
 * (the library now derives other ids than when the plan was written).
 */
export function slurmTaskRuns(plan: SlurmPlan, taskIndex: number): RunSpec[] {
  const tasks = Math.ceil(plan.runIds.length / plan.runsPerTask);
  requireInteger('array task index', taskIndex, 0, tasks - 1);
  const byId = new Map(expandSweep(plan.sweep).map((spec) => [spec.id, spec]));
  return plan.runIds.slice(taskIndex * plan.runsPerTask, (taskIndex + 1) * plan.runsPerTask).map((id) => {
    const spec = byId.get(id);
    if (!spec) throw new SettingError('run id', id, 'an id of the plan\'s sweep, so write the job again with this version of modarch');
    return spec;
  });
}

/**
 * Trains the runs of one array task into the plan's store, with `workers` processes. A run
 * that is finished already is skipped, so a task can be run again safely.
 */
export function runSlurmTask(planPath: string, taskIndex: number, workers = 1): Promise<SweepReport> {
  const plan = readSlurmPlan(planPath);
  const runs = slurmTaskRuns(plan, taskIndex);
  return runRunSpecs(runs, { store: plan.store, workers, progress: 'log' });
}

/** Submits a written job with `sbatch --parsable` and returns the job id. Raises with sbatch's message on failure. */
export function submitSlurmJob(job: SlurmJob, sbatch = 'sbatch'): string {
  const result = spawnSync(sbatch, ['--parsable', job.scriptPath], { encoding: 'utf8' });
  if (result.error) throw new Error(`Could not run ${sbatch}: ${result.error.message}. Is Slurm installed on this host?`);
  if (result.status !== 0) throw new Error(`${sbatch} failed with exit code ${result.status}: ${result.stderr.trim() || result.stdout.trim()}`);
  return result.stdout.trim().split(';')[0];
}

/** Path of the compiled CLI, which array tasks run with plain Node.js (no TypeScript loader). */
export function compiledCli(): string {
  const packageRoot = path.basename(path.dirname(__dirname)) === 'dist' ? path.resolve(__dirname, '..', '..') : path.resolve(__dirname, '..');
  const entry = path.join(packageRoot, 'dist', 'sweep', 'cli.js');
  if (!fs.existsSync(entry)) throw new Error(`The compiled CLI ${entry} is missing: run \`npm run build\` first.`);
  return entry;
}

function checkName(setting: string, value: string): string {
  if (!NAME_PATTERN.test(value)) throw new SettingError(setting, value, 'letters, digits and _ . + - (a comma-separated list for partitions)');
  return value;
}

/** Quotes a word for bash with single quotes. */
function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
