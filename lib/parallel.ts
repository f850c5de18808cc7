import { ChildProcess, fork } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { requireInteger, SettingError } from './errors';
import { MODEL_LABELS, ModelSettings } from './models/types';
import { Profile, ProfileName } from './profiles';
import { Progress, ProgressStyle } from './progress';
import { createTask } from './tasks';
import { Architecture } from './tasks/types';
import { RunRecord, trainRun } from './train';

/**
 * One independent training described by plain JSON values, so it can be sent to a worker
 * process. Custom rule functions cannot cross a process boundary, so `task.rules` must be a
 * number here.
 */
export interface TrainingJob {
  /** Name used in errors and progress; defaults to the model label, rule count and seed. */
  name?: string;
  /** Settings for `createTask`: architecture, mode, rules, dataSeed and any task options. */
  task: { architecture: Architecture } & Record<string, unknown>;
  model: ModelSettings;
  modelSeed?: number;
  /** Profile name or a full profile object; defaults to MODARCH_PROFILE, else "quick". */
  profile?: ProfileName | Profile;
  /** Overrides the profile's number of steps. */
  steps?: number;
  /** Overrides the profile's learning rate. */
  learningRate?: number;
  /** Folder for checkpoints and the run record, as in `trainRun`. */
  runDir?: string;
}

/** Options of a `TrainingPool`. */
export interface PoolOptions {
  /** Number of worker processes; defaults to `os.availableParallelism()`. */
  workers?: number;
  /** Extra environment variables for the workers (for example MODARCH_ENGINE). */
  env?: Record<string, string>;
}

/** Messages from the pool to a worker. */
export type PoolRequest = { type: 'run'; id: number; job: TrainingJob };

/** Messages from a worker to the pool. */
export type WorkerReply =
  | { type: 'ready'; engine: string }
  | { type: 'done'; id: number; record: RunRecord }
  | { type: 'failed'; id: number; message: string; stack?: string };

/** Returns the name of `job` used in messages. */
export function jobName(job: TrainingJob): string {
  if (job.name) return job.name;
  const label = MODEL_LABELS[job.model?.kind] ?? String(job.model?.kind);
  return `${label} ${job.task?.architecture} R=${String(job.task?.rules)} model seed ${job.modelSeed ?? 0}`;
}

/**
 * Trains `job` in this process and returns its run record. Workers run jobs with this
 * function, so a job gives the same record in a worker as here.
 */
export async function runTrainingJob(job: TrainingJob): Promise<RunRecord> {
  const { record } = await trainRun({
    task: createTask(job.task),
    model: job.model,
    modelSeed: job.modelSeed,
    profile: job.profile,
    steps: job.steps,
    learningRate: job.learningRate,
    runDir: job.runDir,
    progress: 'off',
    label: jobName(job),
  });
  return record;
}

/**
 * Checks that `value` holds only JSON values (numbers, strings, booleans, null, arrays and
 * plain objects) and throws a SettingError naming the first path that does not.
 */
export function requirePlainData(value: unknown, where: string): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new SettingError(where, value, 'a finite number');
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, index) => requirePlainData(item, `${where}[${index}]`));
    return;
  }
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      if (item !== undefined) requirePlainData(item, `${where}.${key}`);
    }
    return;
  }
  throw new SettingError(where, value, 'a JSON value (number, string, boolean, null, array or plain object)');
}

interface PendingJob {
  id: number;
  job: TrainingJob;
  resolve: (record: RunRecord) => void;
  reject: (error: Error) => void;
}

interface Worker {
  child: ChildProcess;
  /** Set when the worker has started its engine and listens for jobs. */
  ready: boolean;
  current: PendingJob | null;
}

/**
 * A pool of worker processes that run independent trainings, one job per worker at a time.
 * Each worker is a `child_process.fork` of `parallel-worker` (the `.ts` file under tsx, the
 * compiled `.js` file otherwise) and starts its own tfjs engine. Workers start on first use
 * and do not keep the parent process alive while idle; `close` ends them.
 *
 * Example:
 *   const pool = new TrainingPool({ workers: 2 });
 *   const records = await pool.runAll(jobs);
 *   await pool.close();
 */
export class TrainingPool {
  readonly size: number;
  private readonly env: Record<string, string>;
  private readonly workers: Worker[] = [];
  private readonly queue: PendingJob[] = [];
  private nextId = 0;
  private closed = false;

  constructor(options: PoolOptions = {}) {
    this.size = requireInteger('workers', options.workers ?? os.availableParallelism(), 1, 1024);
    this.env = options.env ?? {};
  }

  /** Queues `job` and returns its run record; rejects with an error naming the job if it fails. */
  run(job: TrainingJob): Promise<RunRecord> {
    if (this.closed) return Promise.reject(new Error(`Training job "${jobName(job)}" was not run: the pool is closed.`));
    try {
      requirePlainData(job, 'job');
    } catch (error) {
      return Promise.reject(new Error(`Training job "${jobName(job)}" is invalid: ${(error as Error).message}`));
    }
    return new Promise<RunRecord>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, job, resolve, reject });
      this.dispatch();
    });
  }

  /**
   * Runs every job and returns the records in the order of `jobs`. Rejects with the first
   * failure, after the other jobs have finished.
   */
  async runAll(jobs: TrainingJob[], options: { progress?: ProgressStyle } = {}): Promise<RunRecord[]> {
    const progress = new Progress(`${jobs.length} trainings on ${this.size} workers`, jobs.length, 'runs', options.progress ?? 'off');
    let finished = 0;
    const settled = await Promise.allSettled(
      jobs.map(async (job) => {
        const record = await this.run(job);
        finished += 1;
        progress.update(finished, `finished ${jobName(job)}`);
        return record;
      }),
    );
    progress.finish();
    const failure = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failure) throw failure.reason;
    return settled.map((result) => (result as PromiseFulfilledResult<RunRecord>).value);
  }

  /** Ends every worker after its current job; queued jobs that have not started are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    for (const pending of this.queue.splice(0)) {
      pending.reject(new Error(`Training job "${jobName(pending.job)}" was not run: the pool was closed first.`));
    }
    await Promise.all(
      this.workers.map(
        (worker) =>
          new Promise<void>((resolve) => {
            if (worker.child.exitCode !== null || worker.child.signalCode !== null) return resolve();
            worker.child.once('exit', () => resolve());
            worker.child.ref();
            if (!worker.current && worker.child.connected) worker.child.disconnect();
          }),
      ),
    );
  }

  /** Hands queued jobs to idle ready workers and starts workers for the jobs left waiting. */
  private dispatch(): void {
    while (this.queue.length > 0) {
      const worker = this.workers.find((candidate) => candidate.ready && !candidate.current);
      if (!worker) break;
      const pending = this.queue.shift()!;
      worker.current = pending;
      setReferenced(worker.child, true);
      const request: PoolRequest = { type: 'run', id: pending.id, job: pending.job };
      worker.child.send(request);
    }

    const starting = this.workers.filter((worker) => !worker.ready).length;
    const missing = Math.min(this.queue.length - starting, this.size - this.workers.length);
    for (let i = 0; i < missing; i++) this.startWorker();
  }

  private startWorker(): void {
    const child = fork(workerEntry(), [], {
      execArgv: [...workerExecArgv(), ...workerThreadFlags(this.size)],
      env: { ...process.env, MODARCH_QUIET: '1', MODARCH_PROGRESS: 'off', ...this.env },
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const worker: Worker = { child, ready: false, current: null };
    this.workers.push(worker);

    child.on('message', (reply: WorkerReply) => this.handleReply(worker, reply));
    child.on('error', (error) => this.handleExit(worker, `could not run (${error.message})`));
    child.on('exit', (code, signal) => this.handleExit(worker, `exited with code ${code}${signal ? ` (signal ${signal})` : ''}`));
  }

  private handleReply(worker: Worker, reply: WorkerReply): void {
    if (reply.type === 'ready') {
      worker.ready = true;
      this.afterJob(worker);
      return;
    }
    const pending = worker.current;
    if (!pending || pending.id !== reply.id) return;
    worker.current = null;
    if (reply.type === 'done') {
      pending.resolve(reply.record);
    } else {
      const error = new Error(`Training job "${jobName(pending.job)}" failed in worker process ${worker.child.pid}: ${reply.message}`);
      if (reply.stack) error.stack = `${error.message}\nWorker stack:\n${reply.stack}`;
      pending.reject(error);
    }
    this.afterJob(worker);
  }

  /** Gives an idle worker the next job, or ends it when the pool is closed, or lets it idle. */
  private afterJob(worker: Worker): void {
    if (this.closed) {
      if (worker.child.connected) worker.child.disconnect();
      return;
    }
    this.dispatch();
    if (!worker.current) setReferenced(worker.child, false);
  }

  private handleExit(worker: Worker, reason: string): void {
    const index = this.workers.indexOf(worker);
    if (index < 0) return;
    this.workers.splice(index, 1);
    const pending = worker.current;
    worker.current = null;
    if (pending) {
      pending.reject(new Error(`Training job "${jobName(pending.job)}" failed: worker process ${worker.child.pid} ${reason}.`));
    }

    // A worker that dies before it is ready would die again on restart (a missing loader, an
    // engine that cannot start), so the waiting jobs fail instead of restarting it forever.
    if (!worker.ready) {
      for (const waiting of this.queue.splice(0)) {
        waiting.reject(new Error(`Training job "${jobName(waiting.job)}" was not run: worker process ${worker.child.pid} ${reason} before it was ready.`));
      }
      return;
    }
    if (!this.closed) this.dispatch();
  }
}

/**
 * Trains `jobs` on a new pool of `options.workers` processes and closes it.
 * Returns the run records in the order of `jobs`.
 */
export async function trainInParallel(
  jobs: TrainingJob[],
  options: PoolOptions & { progress?: ProgressStyle } = {},
): Promise<RunRecord[]> {
  const pool = new TrainingPool(options);
  try {
    return await pool.runAll(jobs, { progress: options.progress });
  } finally {
    await pool.close();
  }
}

/** Path of the worker script: next to this file, with this file's extension (.ts or .js). */
function workerEntry(): string {
  return path.join(__dirname, `parallel-worker${path.extname(__filename)}`);
}

/**
 * Node options for workers: this process's own, so a TypeScript loader such as tsx carries
 * over, without test-runner and inspector flags, which would make each worker run tests or
 * claim the debugger port.
 */
function workerExecArgv(): string[] {
  const inherited = process.execArgv.filter((flag) => !flag.startsWith('--test') && !flag.startsWith('--inspect'));
  // NOTE: a .ts worker needs a TypeScript loader. When this file runs as TypeScript without
  // tsx in execArgv (for example tsx registered from code), `--import tsx` is added and must
  // resolve from the working directory.
  if (path.extname(__filename) === '.ts' && !inherited.some((flag) => flag.includes('tsx'))) {
    inherited.push('--import', 'tsx');
  }
  return inherited;
}

/**
 * V8 flags for one of `workers` training processes. In an MLP training process, V8's background
 * threads used about 10% as much CPU time as the main thread (measured with ps). On a spare core
 * that costs nothing, but when the workers fill every core those threads slow the other
 * trainings, so `--single-threaded` moves that work onto each worker's main thread. Measured
 * figures are in docs/benchmarks.md.
 */
export function workerThreadFlags(workers: number): string[] {
  return workers >= os.availableParallelism() ? ['--single-threaded'] : [];
}

/** Lets an idle worker stop holding the parent's event loop open, and a busy one hold it. */
function setReferenced(child: ChildProcess, referenced: boolean): void {
  const channel = child.channel as (NodeJS.RefCounted & object) | null | undefined;
  if (referenced) {
    child.ref();
    channel?.ref();
  } else {
    child.unref();
    channel?.unref();
  }
}
