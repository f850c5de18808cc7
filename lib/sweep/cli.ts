#!/usr/bin/env node
/**
 * The `modarch` command line: `modarch sweep [run]` trains a grid of runs locally or writes a
 * Slurm array job for it, `modarch sweep collect` writes the results tables, and
 * `modarch sweep slurm-task` is what each array task runs. Exit status: 0 on success, 1 when
 * runs failed, 2 for invalid options or an invalid sweep spec.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import '../index';
import { SettingError } from '../errors';
import { MODEL_LABELS } from '../models/types';
import { PROFILE_NAMES } from '../profiles';
import { runSpecSteps } from '../run-spec';
import { collectRuns, writeResults } from './results';
import { runSweep } from './runner';
import { runSlurmTask, submitSlurmJob, writeSlurmJob } from './slurm';
import { expandSweep, resolveSweep, SweepSettings, SweepSpecError } from './spec';
import { RunStore } from './store';

/** Store folder when `--store` is not given. */
const DEFAULT_STORE = 'runs/sweep';

interface GridOptions {
  spec?: string;
  architectures?: unknown[];
  modes?: unknown[];
  rules?: unknown[];
  sizes?: unknown[];
  dataSeeds?: unknown[];
  modelSeeds?: unknown[];
  kinds?: unknown[];
  profile?: string;
  steps?: number;
  taskOptions?: Record<string, unknown>;
}

interface RunOptions extends GridOptions {
  store: string;
  workers?: number;
  dryRun?: boolean;
  slurm?: boolean;
  submit?: boolean;
  slurmDir?: string;
  jobName?: string;
  partition?: string;
  account?: string;
  time?: string;
  mem?: string;
  cpusPerTask?: number;
  runsPerTask?: number;
  maxConcurrent?: number;
  sbatch?: string[];
}

/** Parses a comma-separated list. Entries that are numbers become numbers, so validation can name the rest. */
function parseList(value: string): unknown[] {
  return value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
    .map((entry) => (entry !== '' && Number.isFinite(Number(entry)) ? Number(entry) : entry));
}

/** Parses sizes: encoder sizes (hidden size 4x) or `encoder:hidden` pairs. */
function parseSizes(value: string): unknown[] {
  return parseList(value).map((entry) => {
    if (typeof entry === 'number' || !/^\d+:\d+$/.test(entry as string)) return entry;
    const [encoderDim, hiddenDim] = (entry as string).split(':').map(Number);
    return { encoderDim, hiddenDim };
  });
}

function parsePositiveInteger(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new InvalidArgumentError(`Expected an integer >= 1, got "${value}".`);
  return number;
}

function parseIndex(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0) throw new InvalidArgumentError(`Expected an integer >= 0, got "${value}".`);
  return number;
}

function parseJsonObject(value: string): Record<string, unknown> {
  try {
    const parsed = JSON.parse(value) as unknown;
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // Reported below with the expected form.
  }
  throw new InvalidArgumentError(`Expected a JSON object such as '{"rnn":{"stateDim":16}}', got ${value}.`);
}

function collectRepeated(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Adds the options that describe a grid, which override the fields of `--spec`. */
function addGridOptions(command: Command): Command {
  return command
    .option('--spec <file>', 'JSON file with a sweep spec; the grid options below override its fields')
    .option('--architectures <list>', 'architectures, comma-separated: mlp, mha, rnn (default mlp)', parseList)
    .option('--modes <list>', 'task modes: classification, regression (default both)', parseList)
    .option('--rules <list>', 'rule counts, such as 2,4,8', parseList)
    .option('--sizes <list>', 'model sizes: encoder sizes e with hidden size 4e, or e:h pairs, such as 32,64 or 32:128', parseSizes)
    .option('--data-seeds <list>', 'data seeds (default 0)', parseList)
    .option('--model-seeds <list>', 'model seeds (default 0)', parseList)
    .option('--kinds <list>', `model kinds (default all): ${Object.keys(MODEL_LABELS).join(', ')}`, parseList)
    .addOption(new Option('--profile <name>', 'training budget (default MODARCH_PROFILE, else quick)').choices([...PROFILE_NAMES]))
    .option('--steps <n>', 'Adam steps per run, overriding the profile', parsePositiveInteger)
    .option('--task-options <json>', 'extra task settings per architecture, such as \'{"mha":{"searchVersion":1}}\'', parseJsonObject);
}

/** Merges `--spec` and the grid options into sweep settings. */
function gridSettings(options: GridOptions): SweepSettings {
  let base: Record<string, unknown> = {};
  if (options.spec) {
    if (!fs.existsSync(options.spec)) throw new SettingError('--spec', options.spec, 'an existing JSON file');
    try {
      base = JSON.parse(fs.readFileSync(options.spec, 'utf8')) as Record<string, unknown>;
    } catch (error) {
      throw new SettingError('--spec', options.spec, `a file of valid JSON (${(error as Error).message})`);
    }
  }
  const overrides: Record<string, unknown> = {
    architectures: options.architectures,
    modes: options.modes,
    rules: options.rules,
    sizes: options.sizes,
    dataSeeds: options.dataSeeds,
    modelSeeds: options.modelSeeds,
    kinds: options.kinds,
    profile: options.profile,
    steps: options.steps,
    taskOptions: options.taskOptions,
  };
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined) base[key] = value;
  return base as unknown as SweepSettings;
}

function printDryRun(settings: SweepSettings, storeDir: string): void {
  const runs = expandSweep(settings);
  const store = fs.existsSync(storeDir) ? new RunStore(storeDir) : null;
  const counts = { finished: 0, partial: 0, pending: 0 };
  console.log(['id', 'status', 'architecture', 'mode', 'rules', 'model', 'encoderDim', 'hiddenDim', 'dataSeed', 'modelSeed', 'steps'].join('\t'));
  for (const spec of runs) {
    const status = store ? store.status(spec.id) : 'pending';
    counts[status] += 1;
    const mode = spec.taskSettings.mode as string;
    const rules = spec.taskSettings.rules as number;
    console.log([spec.id, status, spec.architecture, mode, rules, MODEL_LABELS[spec.kind], spec.encoderDim, spec.hiddenDim, spec.dataSeed, spec.modelSeed, runSpecSteps(spec)].join('\t'));
  }
  console.log(`${runs.length} runs: ${counts.finished} finished, ${counts.partial} partial, ${counts.pending} pending (store ${path.resolve(storeDir)})`);
}

async function runCommand(options: RunOptions): Promise<number> {
  const settings = resolveSweep(gridSettings(options));
  if (options.dryRun) {
    printDryRun(settings, options.store);
    return 0;
  }

  if (options.slurm) {
    const job = writeSlurmJob(settings, options.store, {
      dir: options.slurmDir,
      jobName: options.jobName,
      partition: options.partition,
      account: options.account,
      time: options.time,
      memory: options.mem,
      cpusPerTask: options.cpusPerTask,
      runsPerTask: options.runsPerTask,
      maxConcurrent: options.maxConcurrent,
      extraDirectives: options.sbatch,
    });
    if (!job) {
      console.log(`Every run of the sweep is finished in ${path.resolve(options.store)}, so there is nothing to submit.`);
      return 0;
    }
    console.log(`Wrote ${job.scriptPath}: ${job.runCount} runs in ${job.arrayTasks} array tasks (plan ${job.planPath}).`);
    if (!options.submit) {
      console.log(`Submit it with:\n  ${job.submitCommand.join(' ')}`);
      return 0;
    }
    const jobId = submitSlurmJob(job);
    console.log(`Submitted array job ${jobId}. Watch it with \`squeue -j ${jobId}\`. Slurm output goes to ${job.logDir}.`);
    console.log(`When it is done: modarch sweep collect --store ${path.resolve(options.store)}`);
    return 0;
  }

  const report = await runSweep(settings, { store: options.store, workers: options.workers });
  return report.failed.length > 0 ? 1 : 0;
}

function collectCommand(options: GridOptions & { store: string; out?: string }): number {
  if (!fs.existsSync(options.store)) throw new SettingError('store', options.store, 'an existing run store folder');
  const hasGrid = options.spec !== undefined || options.rules !== undefined || options.sizes !== undefined;
  const specs = hasGrid ? expandSweep(gridSettings(options)) : undefined;
  const { runs, missing } = collectRuns(options.store, specs);
  const files = writeResults(runs, options.out ?? options.store);
  console.log(`Collected ${runs.length} finished runs from ${path.resolve(options.store)}.`);
  if (missing.length > 0) console.log(`${missing.length} runs of the sweep have no record yet, such as ${missing.slice(0, 3).join(', ')}.`);
  for (const file of Object.values(files)) console.log(`  ${file}`);
  return 0;
}

async function slurmTaskCommand(options: { plan: string; taskIndex?: number; workers?: number }): Promise<number> {
  const taskIndex = options.taskIndex ?? Number(process.env.SLURM_ARRAY_TASK_ID);
  if (!Number.isInteger(taskIndex)) {
    throw new SettingError('array task index', process.env.SLURM_ARRAY_TASK_ID, 'an integer from --task-index or SLURM_ARRAY_TASK_ID');
  }
  const report = await runSlurmTask(options.plan, taskIndex, options.workers ?? 1);
  return report.failed.length > 0 ? 1 : 0;
}

/** Builds the command-line program. */
export function buildProgram(): Command {
  const program = new Command('modarch').description('Sweeps of the modarch benchmark: train grids of runs, locally or on Slurm, and collect their results.');
  const sweep = program.command('sweep').description('train a grid of runs, or collect its results');

  addGridOptions(sweep.command('run', { isDefault: true }).description('train every run of the grid that has no record in the store (the default command)'))
    .option('--store <dir>', 'run store folder: one folder per run with record, checkpoints and log', DEFAULT_STORE)
    .option('--workers <n>', `worker processes (default ${os.availableParallelism()}, the CPUs available)`, parsePositiveInteger)
    .option('--dry-run', 'list the runs and their status in the store; train nothing')
    .option('--slurm', 'write an sbatch script for a Slurm array job over the pending runs instead of training here')
    .option('--submit', 'with --slurm: submit the script with sbatch')
    .option('--slurm-dir <dir>', 'with --slurm: folder of the script, plan and Slurm output (default <store>/slurm)')
    .option('--job-name <name>', 'with --slurm: job name (default modarch-sweep)')
    .option('--partition <name>', 'with --slurm: partition')
    .option('--account <name>', 'with --slurm: account to charge')
    .option('--time <limit>', 'with --slurm: wall time per array task, such as 2:00:00 or 1-00:00:00')
    .option('--mem <size>', 'with --slurm: memory per array task, such as 4G')
    .option('--cpus-per-task <n>', 'with --slurm: CPUs per array task, which is also its number of worker processes (default 1)', parsePositiveInteger)
    .option('--runs-per-task <n>', 'with --slurm: runs per array task (default 4)', parsePositiveInteger)
    .option('--max-concurrent <n>', 'with --slurm: array tasks running at once (default no limit)', parsePositiveInteger)
    .option('--sbatch <option>', 'with --slurm: extra #SBATCH option such as --qos=short; repeatable', collectRepeated)
    .action(async (options: RunOptions) => {
      process.exitCode = await runCommand(options);
    });

  addGridOptions(sweep.command('collect').description('write records.json, results.csv and summary.csv from the finished runs of a store'))
    .option('--store <dir>', 'run store folder', DEFAULT_STORE)
    .option('--out <dir>', 'output folder (default the store folder)')
    .action((options: GridOptions & { store: string; out?: string }) => {
      process.exitCode = collectCommand(options);
    });

  sweep
    .command('slurm-task')
    .description('train the runs of one array task of a job written by --slurm (run by the sbatch script)')
    .requiredOption('--plan <file>', 'plan file written next to the sbatch script')
    .option('--task-index <n>', 'array task index (default SLURM_ARRAY_TASK_ID)', parseIndex)
    .option('--workers <n>', 'worker processes (default 1)', parsePositiveInteger)
    .action(async (options: { plan: string; taskIndex?: number; workers?: number }) => {
      process.exitCode = await slurmTaskCommand(options);
    });

  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (error) {
    if (error instanceof SweepSpecError || error instanceof SettingError) {
      console.error(`modarch: ${error.message}`);
      process.exitCode = 2;
      return;
    }
    throw error;
  }
}

if (require.main === module) void main();
