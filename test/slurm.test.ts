import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  collectRuns,
  expandSweep,
  parseSbatchDirectives,
  readSlurmPlan,
  SettingError,
  slurmScript,
  slurmTaskRuns,
  SweepSettings,
  writeSlurmJob,
} from '../lib/index';

const REPO_ROOT = path.resolve(__dirname, '..');
const SLURM_LOCAL = path.join(REPO_ROOT, 'scripts', 'slurm-local.sh');
const COMPILED_CLI = path.join(REPO_ROOT, 'lib', 'dist', 'sweep', 'cli.js');

const SWEEP: SweepSettings = { modes: ['regression'], rules: [2], sizes: [8], profile: 'quick', steps: 300 };
const SWEEP_ARGUMENTS = ['--modes', 'regression', '--rules', '2', '--sizes', '8', '--profile', 'quick', '--steps', '300'];

/** Returns why the cluster tests cannot run here, from `slurm-local.sh check`, or undefined when they can. */
function clusterSkipReason(): string | undefined {
  const check = spawnSync('bash', [SLURM_LOCAL, 'check'], { encoding: 'utf8' });
  if (check.status === 0) return undefined;
  return `no local Slurm: ${check.stderr.trim() || `slurm-local.sh check exited with ${check.status}`}`;
}

function temporaryDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `modarch-${name}-`));
}

test('sbatch script directives', () => {
  const store = temporaryDir('slurm-script');
  const job = writeSlurmJob(SWEEP, store, {
    partition: 'debug',
    time: '0:30:00',
    memory: '2G',
    cpusPerTask: 2,
    runsPerTask: 3,
    maxConcurrent: 1,
    extraDirectives: ['--qos=normal'],
    jobName: 'tiny',
  });
  assert.ok(job, 'expected a job for a sweep with pending runs');
  assert.equal(job.runCount, 4);
  assert.equal(job.arrayTasks, 2);

  const script = fs.readFileSync(job.scriptPath, 'utf8');
  assert.ok(script.startsWith('#!/bin/bash\n'));
  assert.deepEqual(parseSbatchDirectives(script), [
    ['job-name', 'tiny'],
    ['array', '0-1%1'],
    ['cpus-per-task', '2'],
    ['ntasks', '1'],
    ['partition', 'debug'],
    ['time', '0:30:00'],
    ['mem', '2G'],
    ['qos', 'normal'],
    ['output', path.join(job.logDir, 'tiny-%A_%a.out')],
  ]);
  assert.match(script, new RegExp(`sweep slurm-task --plan '${job.planPath}' --workers "\\$\\{SLURM_CPUS_PER_TASK:-1\\}"`));

  // The array tasks split the plan's runs: every run once, in grid order.
  const plan = readSlurmPlan(job.planPath);
  const taskRuns = [0, 1].map((index) => slurmTaskRuns(plan, index).map((spec) => spec.id));
  assert.deepEqual(taskRuns.map((ids) => ids.length), [3, 1]);
  assert.deepEqual(taskRuns.flat(), expandSweep(SWEEP).map((spec) => spec.id));
  assert.throws(() => slurmTaskRuns(plan, 2), /Invalid array task index: 2\. Accepted: an integer from 0 to 1/);

  // Values that would break the script are rejected before it is written.
  const files = { planPath: '/p.json', logDir: '/logs', arrayTasks: 1, runCount: 1, store: '/store' };
  assert.throws(() => slurmScript({ time: '2 hours' }, files), SettingError);
  assert.throws(() => slurmScript({ memory: '4 GB' }, files), SettingError);
  assert.throws(() => slurmScript({ partition: 'debug\n#SBATCH --x' }, files), SettingError);
  assert.throws(() => slurmScript({ extraDirectives: ['qos=short'] }, files), SettingError);
});

describe('local slurm cluster', { skip: clusterSkipReason() }, () => {
  const stateDir = temporaryDir('slurm-state');
  const env = { ...process.env, SLURM_CONF: path.join(stateDir, 'slurm.conf'), MODARCH_QUIET: '1' };

  before(() => {
    assert.ok(fs.existsSync(COMPILED_CLI), `${COMPILED_CLI} is missing: run \`npm run build\` first (array tasks run the compiled CLI).`);
    const started = spawnSync('bash', [SLURM_LOCAL, 'start', stateDir], { encoding: 'utf8' });
    assert.equal(started.status, 0, `slurm-local.sh start failed:\n${started.stdout}${started.stderr}`);
  });

  after(() => {
    spawnSync('bash', [SLURM_LOCAL, 'stop', stateDir], { encoding: 'utf8' });
  });

  /** Runs a command with the cluster's SLURM_CONF and returns its output; fails the test on a non-zero exit. */
  function run(command: string, args: string[]): string {
    const result = spawnSync(command, args, { encoding: 'utf8', env, cwd: REPO_ROOT });
    assert.equal(result.status, 0, `${command} ${args.join(' ')} failed:\n${result.stdout}${result.stderr}`);
    return `${result.stdout}${result.stderr}`;
  }

  async function waitForJob(jobId: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (run('squeue', ['-h', '-j', jobId, '-o', '%i %T']).trim() !== '') {
      if (Date.now() > deadline) throw new Error(`Slurm job ${jobId} did not finish within ${timeoutMs} ms:\n${run('squeue', ['-j', jobId])}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  test('sbatch accepts the script', () => {
    const job = writeSlurmJob(SWEEP, temporaryDir('slurm-test-only'), { partition: 'debug', time: '10', memory: '500M', cpusPerTask: 1, runsPerTask: 2 })!;
    const output = run('sbatch', ['--test-only', job.scriptPath]);
    assert.match(output, /to start at .* on nodes \S+ in partition debug/);
  });

  test('array job records every run once', async () => {
    const store = temporaryDir('slurm-store');
    const submitted = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, [COMPILED_CLI, 'sweep', ...SWEEP_ARGUMENTS, '--store', store, '--slurm', '--submit', '--runs-per-task', '2', '--time', '10', '--mem', '1G'], { env, cwd: REPO_ROOT });
      let output = '';
      child.stdout.on('data', (chunk) => (output += chunk));
      child.stderr.on('data', (chunk) => (output += chunk));
      child.on('exit', (code) => (code === 0 ? resolve(output) : reject(new Error(`modarch sweep --slurm --submit exited with ${code}:\n${output}`))));
    });
    const jobId = /Submitted array job (\d+)/.exec(submitted)?.[1];
    assert.ok(jobId, `no job id in:\n${submitted}`);
    await waitForJob(jobId, 300_000);

    const specs = expandSweep(SWEEP);
    const { runs, missing } = collectRuns(store, specs);
    const slurmLogs = fs.readdirSync(path.join(store, 'slurm', 'logs')).map((file) => fs.readFileSync(path.join(store, 'slurm', 'logs', file), 'utf8'));
    assert.deepEqual(missing, [], `runs without a record; Slurm output:\n${slurmLogs.join('\n')}`);
    assert.equal(runs.length, specs.length);
    assert.equal(slurmLogs.length, 2, 'one Slurm output file per array task');
    const finishedCount = (id: string) => fs.readFileSync(path.join(store, id, 'run.log'), 'utf8').match(/finished in/g)?.length ?? 0;
    for (const spec of specs) assert.equal(finishedCount(spec.id), 1, `run ${spec.id} finished ${finishedCount(spec.id)} times`);
    const recordTimes = specs.map((spec) => fs.statSync(path.join(store, spec.id, 'record.json')).mtimeMs);

    // Submitting the same script again is safe: every task finds its runs finished.
    const script = fs.readdirSync(path.join(store, 'slurm')).find((file) => file.endsWith('.sbatch'))!;
    const again = run('sbatch', ['--parsable', path.join(store, 'slurm', script)]).trim().split(';')[0];
    await waitForJob(again, 300_000);
    for (const spec of specs) assert.equal(finishedCount(spec.id), 1, `run ${spec.id} trained again`);
    assert.deepEqual(specs.map((spec) => fs.statSync(path.join(store, spec.id, 'record.json')).mtimeMs), recordTimes);

    // Collecting a cluster sweep works as for a local one.
    const collected = run(process.execPath, [COMPILED_CLI, 'sweep', 'collect', '--store', store]);
    assert.match(collected, /Collected 4 finished runs/);
    assert.equal(fs.readFileSync(path.join(store, 'results.csv'), 'utf8').trim().split('\n').length, 1 + specs.length);
  });
});
