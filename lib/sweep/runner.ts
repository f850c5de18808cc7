import { ChildProcess, fork } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { requireInteger } from '../errors';
import { workerThreadFlags } from '../parallel';
import { Progress, ProgressStyle } from '../progress';
import { RunSpec, runSpecSteps } from '../run-spec';
import { ParentMessage, WorkerMessage } from './messages';
import { expandSweep, SweepSettings, SweepSpec } from './spec';
import { RunStore } from './store';

/** Options of a local sweep. */
export interface SweepRunOptions {
  /** Folder of the run store. */
  store: string;
  /** Worker processes, never more than the runs left. Default `os.availableParallelism()`. */
  workers?: number;
  /** Progress display of the whole sweep. Default: the style that suits the process. */
  progress?: ProgressStyle;
  /** Receives status lines (start, failures, end), which also go to the store's `sweep.log`. Default: stderr. */
  log?: (line: string) => void;
}

/** Summary of one call of `runSweep` or `runRunSpecs`. */
export interface SweepReport {
  /** Runs in the sweep. */
  total: number;
  /** Runs whose record was already in the store. */
  alreadyFinished: number;
  /** Runs trained (or finished from a checkpoint) by this call. */
  trained: number;
  /** Runs skipped because another live process held their lock. */
  busy: string[];
  failed: Array<{ id: string; message: string }>;
  workers: number;
  seconds: number;
}

/** Expands `settings` and trains every run that has no record in the store yet, as `runRunSpecs` does. */
export function runSweep(settings: SweepSettings | SweepSpec, options: SweepRunOptions): Promise<SweepReport> {
  return runRunSpecs(expandSweep(settings), options);
}

/**
 * Trains the runs that have no record in the store, spread over worker processes, with one
 * progress display for all of them (steps done, rate, time left, runs done). Each worker takes
 * the next run when it finishes one, so results do not depend on the number of workers. A run
 * that fails, or whose worker dies, is logged and reported while the other runs go on. Running
 * the sweep again resumes such a run from its last checkpoint.
 */
export async function runRunSpecs(runs: RunSpec[], options: SweepRunOptions): Promise<SweepReport> {
  const started = Date.now();
  const store = new RunStore(options.store);
  const say = (level: 'info' | 'warn' | 'error', line: string) => {
    store.sweepLog(level, line);
    (options.log ?? ((text: string) => console.error(`modarch sweep: ${text}`)))(line);
  };

  for (const spec of runs) store.writeSpec(spec);
  const pending = runs.filter((spec) => store.status(spec.id) !== 'finished');
  const workerCount = Math.min(requireInteger('workers', options.workers ?? os.availableParallelism(), 1, 1024), pending.length);
  const report: SweepReport = {
    total: runs.length,
    alreadyFinished: runs.length - pending.length,
    trained: 0,
    busy: [],
    failed: [],
    workers: workerCount,
    seconds: 0,
  };
  if (pending.length === 0) {
    say('info', `${runs.length} runs in ${store.root}: every run is finished already`);
    report.seconds = (Date.now() - started) / 1000;
    return report;
  }
  const workerWord = workerCount === 1 ? 'worker process' : 'worker processes';
  say('info', `${runs.length} runs in ${store.root}: ${report.alreadyFinished} already finished, ${pending.length} to train with ${workerCount} ${workerWord}`);

  // A partial run resumes from its last checkpoint, so only its remaining steps count.
  const stepsLeft = new Map(pending.map((spec) => [spec.id, runSpecSteps(spec) - store.checkpointStep(spec.id)]));
  const stepsDone = new Map<string, number>();
  const fromSteps = new Map<string, number>();
  const totalSteps = [...stepsLeft.values()].reduce((sum, steps) => sum + steps, 0);
  const progress = new Progress(`sweep (${runs.length} runs)`, totalSteps, 'steps', options.progress);
  const active = new Set<string>();
  const showProgress = () => {
    const done = [...stepsDone.values()].reduce((sum, steps) => sum + steps, 0);
    const finished = report.alreadyFinished + report.trained;
    const failed = report.failed.length > 0 ? `, ${report.failed.length} failed` : '';
    progress.update(Math.min(done, totalSteps), `${finished}/${runs.length} runs done${failed}, ${active.size} running`);
  };

  const queue = [...pending];
  await new Promise<void>((resolve) => {
    let alive = 0;

    const startWorker = (index: number) => {
      const child = forkWorker(workerCount);
      let current: RunSpec | null = null;
      let exited = false;
      alive += 1;
      forwardOutput(child, (line) => store.sweepLog('info', `worker ${index} (pid ${child.pid}): ${line}`));

      const next = () => {
        current = queue.shift() ?? null;
        const message: ParentMessage = current ? { type: 'run', spec: current, store: store.root } : { type: 'exit' };
        child.send(message);
      };
      const finishRun = (id: string) => {
        stepsDone.set(id, stepsLeft.get(id) ?? 0);
        active.delete(id);
      };

      child.on('message', (message: WorkerMessage) => {
        if (message.type === 'ready') next();
        if (message.type === 'started') {
          active.add(message.id);
          fromSteps.set(message.id, message.fromStep);
          showProgress();
        }
        if (message.type === 'progress') {
          stepsDone.set(message.id, Math.max(0, message.step - (fromSteps.get(message.id) ?? 0)));
          showProgress();
        }
        if (message.type === 'done') {
          if (message.outcome === 'busy') {
            report.busy.push(message.id);
            say('warn', `run ${message.id}: another live process holds its lock; skipped it`);
          } else {
            finishRun(message.id);
            if (message.outcome === 'trained') report.trained += 1;
            else report.alreadyFinished += 1;
          }
          showProgress();
          next();
        }
        if (message.type === 'failed') {
          finishRun(message.id);
          report.failed.push({ id: message.id, message: message.message });
          say('error', `run ${message.id} failed: ${message.message} (see ${path.join(store.runDir(message.id), 'run.log')})`);
          showProgress();
          next();
        }
      });

      const onExit = (description: string) => {
        if (exited) return;
        exited = true;
        alive -= 1;
        if (current) {
          const failed = current;
          current = null;
          active.delete(failed.id);
          report.failed.push({ id: failed.id, message: `its worker ${description}` });
          say('error', `run ${failed.id} failed: its worker ${description}`);
          store.log(failed.id, 'error', `the worker process training this run ${description}`);
          if (queue.length > 0) startWorker(index);
        }
        if (alive === 0) resolve();
      };
      child.on('exit', (code, signal) => onExit(signal ? `was killed by ${signal}` : `exited with code ${code}`));
      child.on('error', (error) => onExit(`could not run: ${error.message}`));
    };

    for (let index = 0; index < workerCount; index++) startWorker(index);
  });
  progress.finish();

  for (const spec of queue) report.failed.push({ id: spec.id, message: 'not started: every worker process exited (see sweep.log)' });
  report.seconds = (Date.now() - started) / 1000;
  const summary = `${report.trained} runs trained, ${report.failed.length} failed, ${report.busy.length} busy, in ${report.seconds.toFixed(1)} s`;
  say(report.failed.length > 0 ? 'error' : 'info', summary);
  return report;
}

/**
 * Starts a worker process. The worker is the file next to this one with the same extension,
 * so under tsx (tests) the TypeScript source runs and otherwise the compiled JavaScript.
 * Node options of this process are passed on, such as `--import tsx`, except those of the
 * test runner, which would make the worker run as a test. `workers` is the size of the pool,
 * which decides the V8 thread flags (see `workerThreadFlags`).
 */
function forkWorker(workers: number): ChildProcess {
  const entry = path.join(__dirname, `worker${path.extname(__filename)}`);
  const execArgv = [...process.execArgv.filter((argument) => !argument.startsWith('--test')), ...workerThreadFlags(workers)];
  return fork(entry, [], {
    execArgv,
    env: { ...process.env, MODARCH_QUIET: '1', MODARCH_PROGRESS: 'off' },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
}

function forwardOutput(child: ChildProcess, write: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream }).on('line', (line) => line.trim() && write(line));
  }
}
