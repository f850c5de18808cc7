/**
 * Queues the ZeroMQ sends of the tslab kernel.
 *
 * tslab 1.0.22 sends every Jupyter message with `socket.send()` of zeromq 6 without awaiting it,
 * and zeromq 6 throws "Socket is busy writing" (EBUSY) when a send starts while the previous one
 * on that socket is still in flight. Frequent outputs (progress updates, plots) make that
 * collision likely on a busy machine, and the exception kills the kernel. Chaining each send
 * after the previous one on the same socket keeps the message order and removes the collision.
 */
const QUEUED = Symbol.for('modarch.zeromqSendQueued');

type SendFunction = (this: object, message: unknown) => Promise<void>;
type Patchable = { send: SendFunction; [QUEUED]?: true };

/** Makes every zeromq socket wait for its previous send before the next; returns false when zeromq is absent. */
export function queueZeromqSends(zeromq?: Record<string, unknown>): boolean {
  let library = zeromq;
  if (!library) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      library = require('zeromq') as Record<string, unknown>;
    } catch {
      return false;
    }
  }

  // zeromq defines `send` read-only on the shared socket prototype, so each socket class gets its
  // own property that shadows it.
  let patched = 0;
  for (const name of ['Publisher', 'Router', 'Dealer', 'Push', 'Pair', 'Reply', 'Request']) {
    const prototype = (library[name] as { prototype?: Patchable } | undefined)?.prototype;
    if (!prototype || typeof prototype.send !== 'function') continue;
    patched += 1;
    if (prototype[QUEUED]) continue;
    const send = prototype.send;
    const pending = new WeakMap<object, Promise<void>>();
    Object.defineProperty(prototype, 'send', {
      configurable: true,
      writable: true,
      value: function queuedSend(this: object, message: unknown): Promise<void> {
        const previous = pending.get(this) ?? Promise.resolve();
        const current = previous.then(() => send.call(this, message));
        // A failed send must not block the ones after it; the caller still sees its own failure.
        pending.set(
          this,
          current.catch(() => undefined),
        );
        return current;
      },
    });
    Object.defineProperty(prototype, QUEUED, { value: true });
  }
  return patched > 0;
}

// Only a Jupyter kernel (which sets JPY_PARENT_PID) runs tslab's sockets in this process.
if (process.env.JPY_PARENT_PID) queueZeromqSends();
