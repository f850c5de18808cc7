import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zmq from 'zeromq';
import { queueZeromqSends } from '../lib/kernel-send-queue';

test('unqueued second send is busy', async () => {
  // A Push socket with no peer keeps its first send in flight, as a slow Jupyter client would.
  const push = new zmq.Push({ sendHighWaterMark: 1 });
  await push.bind('tcp://127.0.0.1:*');
  const first = push.send('one');
  first.catch(() => undefined);
  assert.throws(() => push.send('two'), /busy/i);
  push.close();
});

test('queued sends keep order', async () => {
  assert.equal(queueZeromqSends(zmq as unknown as Record<string, unknown>), true);
  const push = new zmq.Push({ sendHighWaterMark: 1 });
  await push.bind('tcp://127.0.0.1:*');
  const sends = ['one', 'two', 'three'].map((text) => push.send(text));

  const pull = new zmq.Pull();
  pull.connect(push.lastEndpoint!);
  const received: string[] = [];
  for (let i = 0; i < 3; i++) {
    const [frame] = await pull.receive();
    received.push(frame.toString());
  }
  await Promise.all(sends);
  assert.deepEqual(received, ['one', 'two', 'three']);
  push.close();
  pull.close();
});
