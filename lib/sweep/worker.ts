/**
 * Entry point of a sweep's worker process, started by `runRunSpecs` with `fork`. It trains the
 * runs its parent sends, one at a time, and reports progress over the IPC channel. It exits on
 * an `exit` message and when its parent dies. A dead parent closes the IPC channel, and during
 * training the worker also compares its parent process id every 50 steps, because the training
 * loop does not yield to the event loop between evaluations.
 */
import '../index';
import { executeRun } from './execute';
import { ParentMessage, WorkerMessage } from './messages';
import { RunStore } from './store';

const parentPid = process.ppid;

function send(message: WorkerMessage): void {
  if (process.connected) process.send!(message);
}

function exitIfOrphaned(): void {
  if (process.ppid !== parentPid) process.exit(1);
}

async function handleRun(message: Extract<ParentMessage, { type: 'run' }>): Promise<void> {
  const { spec } = message;
  try {
    const outcome = await executeRun(new RunStore(message.store), spec, {
      onStart: (fromStep) => send({ type: 'started', id: spec.id, fromStep }),
      onProgress: (step) => {
        exitIfOrphaned();
        send({ type: 'progress', id: spec.id, step });
      },
    });
    send({ type: 'done', id: spec.id, outcome });
  } catch (error) {
    send({ type: 'failed', id: spec.id, message: (error as Error).message });
  }
}

process.on('message', (message: ParentMessage) => {
  if (message.type === 'exit') process.exit(0);
  if (message.type === 'run') void handleRun(message);
});
process.on('disconnect', () => process.exit(1));
send({ type: 'ready' });
