import { RunSpec, trainRunSpec } from '../run-spec';
import { RunStore } from './store';

/** Outcome of one run handed to `executeRun`. */
export type RunOutcome = 'trained' | 'already finished' | 'busy';

/** Callbacks of `executeRun`. */
export interface RunHooks {
  /** Called once training starts, with the step it resumes from (0 for a fresh run). */
  onStart?: (fromStep: number) => void;
  /** Called every 50 steps with the steps done so far. */
  onProgress?: (step: number) => void;
}

/**
 * Trains one run of a sweep into its folder of `store`, in this process. It takes the run's
 * lock (returns "busy" when another live process holds it), skips a run that finished
 * meanwhile, deletes temporary files of an interrupted write and resumes from the last
 * checkpoint when there is one. Start, evaluations, end and errors go to the run's `run.log`;
 * errors are raised again after logging.
 */
export async function executeRun(store: RunStore, spec: RunSpec, hooks: RunHooks = {}): Promise<RunOutcome> {
  store.writeSpec(spec);
  const lock = store.acquireLock(spec.id);
  if (!lock) {
    store.log(spec.id, 'info', 'another process holds the lock of this run; skipped it');
    return 'busy';
  }

  const release = () => lock.release();
  process.once('exit', release);
  try {
    if (store.readRecord(spec.id)) return 'already finished';

    const removed = store.removeTemporaryFiles(spec.id);
    if (removed.length > 0) store.log(spec.id, 'warn', `deleted files of an interrupted write: ${removed.join(', ')}`);
    const fromStep = store.checkpointStep(spec.id);
    store.log(spec.id, 'info', fromStep > 0 ? `resuming from the checkpoint at step ${fromStep}` : 'starting');
    hooks.onStart?.(fromStep);

    const started = Date.now();
    const { record } = await trainRunSpec(spec, {
      runDir: store.runDir(spec.id),
      progress: 'off',
      onProgress: (step) => {
        lock.refresh();
        hooks.onProgress?.(step);
      },
      onEvaluation: (curves) => {
        const last = curves.step.length - 1;
        store.log(
          spec.id,
          'info',
          `step ${curves.step[last]}: train loss ${curves.trainLoss[last].toFixed(5)}, ` +
            `ID loss ${curves.idLoss[last].toFixed(5)}, ID performance ${curves.idPerformance[last].toFixed(4)}`,
        );
      },
    });
    const seconds = (Date.now() - started) / 1000;
    store.log(spec.id, 'info', `finished in ${seconds.toFixed(1)} s: ID performance ${record.id.performance.toFixed(4)}, OoD ${record.ood.performance.toFixed(4)}`);
    return 'trained';
  } catch (error) {
    store.log(spec.id, 'error', `failed: ${(error as Error).stack ?? String(error)}`);
    throw error;
  } finally {
    process.removeListener('exit', release);
    release();
  }
}
