import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as os from 'node:os';
import { initEngine } from '../lib/engine';
import { jobName, runTrainingJob, TrainingJob, TrainingPool, workerThreadFlags } from '../lib/parallel';
import { Profile } from '../lib/profiles';
import { RunRecord } from '../lib/train';

const PROFILE: Profile = {
  name: 'quick',
  steps: { mlp: 30, mha: 30, rnn: 30 },
  learningRate: 1e-3,
  batchSize: 32,
  evalEvery: { mlp: 15, mha: 15, rnn: 15 },
  evalBatches: 1,
  clipNorm: { mlp: null, mha: null, rnn: 1 },
};

const JOBS: TrainingJob[] = [
  { task: { architecture: 'mlp', mode: 'classification', rules: 2, dataSeed: 0 }, model: { kind: 'monolithic', encoderDim: 8, hiddenDim: 16 }, modelSeed: 0, profile: PROFILE },
  { task: { architecture: 'mlp', mode: 'classification', rules: 2, dataSeed: 0 }, model: { kind: 'modular', encoderDim: 8, hiddenDim: 16 }, modelSeed: 1, profile: PROFILE },
  { task: { architecture: 'mlp', mode: 'regression', rules: 4, dataSeed: 3 }, model: { kind: 'modular-op', encoderDim: 8, hiddenDim: 16 }, modelSeed: 2, profile: PROFILE },
  { task: { architecture: 'mlp', mode: 'classification', rules: 4, dataSeed: 1 }, model: { kind: 'gt-modular', encoderDim: 8, hiddenDim: 16 }, modelSeed: 3, profile: PROFILE },
];

/** Picks the fields of a record that depend only on the job, not on timing or the process. */
function resultFields(record: RunRecord) {
  const { task, model, modelSeed, profile, engine, curves, best, id, ood, perLength, metrics } = record;
  return { task, model, modelSeed, profile, engine, curves, best, id, ood, perLength, metrics };
}

describe('TrainingPool', () => {
  const pool = new TrainingPool({ workers: 2 });

  before(async () => {
    await initEngine();
  });

  after(async () => {
    await pool.close();
  });

  it('defaults to one worker per core', () => {
    assert.equal(new TrainingPool().size, os.availableParallelism());
  });

  it('runs V8 single-threaded only when workers fill every core', () => {
    const cores = os.availableParallelism();
    assert.deepEqual(workerThreadFlags(cores), ['--single-threaded']);
    assert.deepEqual(workerThreadFlags(cores + 1), ['--single-threaded']);
    if (cores > 1) assert.deepEqual(workerThreadFlags(cores - 1), []);
  });

  it('matches sequential runs in one process', async () => {
    const parallel = await pool.runAll(JOBS);
    const sequential: RunRecord[] = [];
    for (const job of JOBS) sequential.push(await runTrainingJob(job));

    assert.equal(parallel.length, JOBS.length);
    JOBS.forEach((job, index) => {
      assert.deepEqual(resultFields(parallel[index]), resultFields(sequential[index]), jobName(job));
    });
  });

  it('rejects a failing job by name', async () => {
    const failing: TrainingJob = {
      name: 'uneven modules',
      task: { architecture: 'mlp', mode: 'classification', rules: 3 },
      model: { kind: 'modular', encoderDim: 8, hiddenDim: 16 },
      profile: PROFILE,
    };
    await assert.rejects(pool.run(failing), (error: Error) => {
      assert.match(error.message, /Training job "uneven modules" failed/);
      assert.match(error.message, /hiddenDim/);
      return true;
    });
  });

  it('keeps working after a failure', async () => {
    const record = await pool.run(JOBS[0]);
    assert.deepEqual(resultFields(record), resultFields(await runTrainingJob(JOBS[0])));
  });

  it('rejects a job that is not plain data', async () => {
    const withFunction = {
      ...JOBS[0],
      name: 'custom rule function',
      task: { architecture: 'mlp', mode: 'classification', rules: [(x1: number) => x1, (x1: number, x2: number) => x2] },
    } as TrainingJob;
    await assert.rejects(pool.run(withFunction), /Training job "custom rule function" is invalid: Invalid job\.task\.rules\[0\]/);
  });

  it('rejects jobs after close', async () => {
    const closed = new TrainingPool({ workers: 1 });
    await closed.close();
    await assert.rejects(closed.run(JOBS[0]), /was not run: the pool is closed/);
  });
});
