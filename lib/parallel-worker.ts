/**
 * Entry point of a `TrainingPool` worker process: starts a tfjs engine, then trains the jobs
 * the pool sends, one at a time, and replies with each run record or error.
 */
// The whole library, so every architecture registers its task and model factories.
import './index';
import { initEngine } from './engine';
import { PoolRequest, runTrainingJob, WorkerReply } from './parallel';

function reply(message: WorkerReply): void {
  process.send!(message);
}

async function main(): Promise<void> {
  if (!process.send) throw new Error('parallel-worker must be started by TrainingPool (child_process.fork with an IPC channel).');

  // Listen before announcing readiness: the pool sends jobs only after the "ready" reply.
  process.on('message', (request: PoolRequest) => {
    if (request.type !== 'run') return;
    runTrainingJob(request.job).then(
      (record) => reply({ type: 'done', id: request.id, record }),
      (error: unknown) => {
        const failure = error instanceof Error ? error : new Error(String(error));
        reply({ type: 'failed', id: request.id, message: failure.message, stack: failure.stack });
      },
    );
  });
  process.on('disconnect', () => process.exit(0));

  const engine = await initEngine();
  reply({ type: 'ready', engine });
}

main().catch((error: unknown) => {
  console.error(`modarch worker ${process.pid}: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
