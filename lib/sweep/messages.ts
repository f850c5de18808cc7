import { RunSpec } from '../run-spec';
import { RunOutcome } from './execute';

/** Messages from a sweep to one of its worker processes. */
export type ParentMessage = { type: 'run'; spec: RunSpec; store: string } | { type: 'exit' };

/** Messages from a worker process to its sweep. */
export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'started'; id: string; fromStep: number }
  | { type: 'progress'; id: string; step: number }
  | { type: 'done'; id: string; outcome: RunOutcome }
  | { type: 'failed'; id: string; message: string };
