import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  assessFindings,
  collectRuns,
  expandSweep,
  makeRunSpec,
  MODEL_LABELS,
  readResults,
  RunRecord,
  runSweep,
  summaryRows,
  SweepSettings,
  SweepSpecError,
  sweepSummaryRows,
  toCsv,
  winShares,
  writeResults,
} from '../lib/index';

const REPO_ROOT = path.resolve(__dirname, '..');
const CLI = path.join(REPO_ROOT, 'lib', 'sweep', 'cli.ts');

/** A grid small enough to train in seconds, with runs long enough to be killed midway. */
const TINY_SWEEP: SweepSettings = {
  modes: ['regression'],
  rules: [2],
  sizes: [8],
  kinds: ['monolithic', 'modular', 'modular-op', 'gt-modular'],
  profile: 'quick',
  steps: 500,
};
const TINY_SWEEP_ARGUMENTS = ['--modes', 'regression', '--rules', '2', '--sizes', '8', '--profile', 'quick', '--steps', '500'];
const TINY_SWEEP_RUNS = 4;

let referenceStore: Promise<string> | undefined;

/** Returns a store with the tiny sweep trained by one worker, shared by the tests that compare against it. */
function oneWorkerStore(): Promise<string> {
  referenceStore ??= (async () => {
    const store = temporaryStore('one-worker');
    const report = await runSweep(TINY_SWEEP, { store, workers: 1, progress: 'off', log: () => {} });
    assert.deepEqual(report.failed, []);
    assert.equal(report.trained, TINY_SWEEP_RUNS);
    return store;
  })();
  return referenceStore;
}

function temporaryStore(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `modarch-${name}-`));
}

/** Runs the CLI from its TypeScript source, as `npm run sweep` runs the compiled one. */
function spawnCli(args: string[]): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, MODARCH_QUIET: '1', MODARCH_PROGRESS: 'off' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function waitForExit(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, output })));
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}.`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function runFolders(store: string): string[] {
  return fs
    .readdirSync(store, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && fs.existsSync(path.join(store, entry.name, 'run.json')))
    .map((entry) => path.join(store, entry.name));
}

/** Returns the parts of a record that depend only on the numerics, not on timing or process. */
function numericResult(record: RunRecord) {
  return { curves: record.curves, best: record.best, id: record.id, ood: record.ood, perLength: record.perLength, metrics: record.metrics };
}

function resultsById(store: string): Map<string, ReturnType<typeof numericResult>> {
  return new Map(collectRuns(store).runs.map((run) => [run.spec.id, numericResult(run.record)]));
}

/** Asserts that every file of a run folder is complete: records finished, checkpoints whole, nothing temporary. */
function assertStoreIntact(store: string): void {
  for (const folder of runFolders(store)) {
    const files = fs.readdirSync(folder);
    assert.deepEqual(files.filter((file) => file.endsWith('.tmp')), [], `temporary files left in ${folder}`);
    if (files.includes('record.json')) {
      const record = JSON.parse(fs.readFileSync(path.join(folder, 'record.json'), 'utf8')) as RunRecord;
      assert.equal(record.finished, true, `${folder}/record.json`);
    }
    for (const name of ['last', 'best']) {
      if (!files.includes(`${name}.json`)) continue;
      const meta = JSON.parse(fs.readFileSync(path.join(folder, `${name}.json`), 'utf8'));
      const weights = fs.statSync(path.join(folder, meta.weightsFile));
      assert.equal(weights.size, meta.parameterCount * 4, `${folder}/${meta.weightsFile}`);
    }
  }
}

test('run ids stable across processes', () => {
  const ids = expandSweep(TINY_SWEEP).map((spec) => spec.id);
  const script = `const { expandSweep } = require('./lib/index'); console.log(JSON.stringify(expandSweep(${JSON.stringify(TINY_SWEEP)}).map((spec) => spec.id)));`;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { cwd: REPO_ROOT, encoding: 'utf8', env: { ...process.env, MODARCH_QUIET: '1' } });
  assert.equal(child.status, 0, child.stderr);
  assert.deepEqual(JSON.parse(child.stdout), ids);

  // Pinned: run ids name folders of existing stores, so a change here orphans every stored run.
  const pinned = makeRunSpec({
    architecture: 'mlp',
    taskSettings: { architecture: 'mlp', mode: 'classification', rules: 4, dataSeed: 1 },
    kind: 'modular',
    encoderDim: 32,
    hiddenDim: 128,
    dataSeed: 1,
    modelSeed: 0,
    profile: 'standard',
    steps: null,
  });
  assert.equal(pinned.id, '704ee823d65d04bd');
});

test('run ids distinct across settings', () => {
  const grid: SweepSettings = {
    modes: ['classification', 'regression'],
    rules: [2, 4],
    sizes: [8, { encoderDim: 8, hiddenDim: 64 }],
    dataSeeds: [0, 1],
    modelSeeds: [0, 1],
    profile: 'quick',
  };
  const ids = expandSweep(grid).map((spec) => spec.id);
  assert.equal(ids.length, 2 * 2 * 2 * 2 * 4 * 2);
  assert.equal(new Set(ids).size, ids.length);

  // Budget and task options are part of a run's identity too.
  const base = expandSweep({ ...grid, modes: ['regression'], rules: [2], sizes: [8], dataSeeds: [0], modelSeeds: [0], kinds: ['modular'] })[0].id;
  const variants = [
    { steps: 100 },
    { profile: 'standard' as const },
    { taskOptions: { mlp: { ruleProbabilities: [0.25, 0.75] } } },
  ].map((change) => expandSweep({ ...grid, modes: ['regression'], rules: [2], sizes: [8], dataSeeds: [0], modelSeeds: [0], kinds: ['modular'], ...change })[0].id);
  for (const id of variants) assert.notEqual(id, base);
  assert.equal(new Set(variants).size, variants.length);
});

test('invalid spec lists every problem', () => {
  const invalid = {
    architectures: ['mlp', 'cnn'],
    modes: [],
    rules: [2, 1, 2.5],
    sizes: [10, { encoderDim: 8, hiddenDim: 30 }, 0],
    kinds: ['modular', 'routed'],
    dataSeeds: [-1],
    modelSeeds: [0, 0],
    profile: 'fast',
    steps: 0,
  } as unknown as SweepSettings;
  let error: SweepSpecError | undefined;
  try {
    expandSweep(invalid);
  } catch (caught) {
    error = caught as SweepSpecError;
  }
  assert.ok(error instanceof SweepSpecError, 'expected a SweepSpecError');
  const settings = error.problems.map((problem) => problem.setting);
  assert.deepEqual(
    settings.sort(),
    ['architectures[1]', 'dataSeeds[0]', 'kinds[1]', 'modelSeeds[1]', 'modes', 'profile', 'rules[1]', 'rules[2]', 'sizes[2]', 'steps'].sort(),
  );
  assert.match(error.message, /Invalid sweep spec \(10 problems\)/);
  assert.match(error.message, /Invalid rules\[1\]: 1\. Accepted: an integer from 2 to 1024\./);
  assert.match(error.message, /Invalid architectures\[1\]: "cnn"\. Accepted: one of "mlp", "mha", "rnn"\./);
  assert.match(error.message, /Invalid sizes\[2\]: 0\. Accepted: an integer from 1 to 65536\./);

  // Hidden sizes that the modules cannot split are listed together, with the nearest valid sizes.
  assert.throws(
    () => expandSweep({ rules: [3, 4], sizes: [10, { encoderDim: 8, hiddenDim: 30 }], kinds: ['monolithic', 'modular'] }),
    (caught: SweepSpecError) => {
      assert.deepEqual(
        caught.problems.map((problem) => [problem.setting, problem.value]),
        [
          ['sizes[0].hiddenDim', 40],
          ['sizes[1].hiddenDim', 30],
        ],
      );
      assert.match(caught.message, /sizes\[0\]\.hiddenDim: 40\. Accepted: a multiple of 3 for modular mlp models with 3 rules, such as 39 or 42/);
      assert.match(caught.message, /sizes\[1\]\.hiddenDim: 30\. Accepted: a multiple of 4 for modular mlp models with 4 rules, such as 28 or 32/);
      return true;
    },
  );

  // A misspelled task setting is a problem, not a silently ignored option.
  assert.throws(
    () => expandSweep({ architectures: ['rnn'], rules: [2], sizes: [16], taskOptions: { rnn: { stateDims: 8 } } }),
    (caught: SweepSpecError) => {
      assert.deepEqual(caught.problems.map((problem) => problem.setting), ['rnn task']);
      assert.match(caught.message, /Invalid rnn task setting name: "stateDims"\. Accepted: one of .*stateDim/);
      return true;
    },
  );
});

test('cli rejects invalid spec', async () => {
  const { code, output } = await waitForExit(spawnCli(['sweep', '--rules', '2,x', '--sizes', '10', '--kinds', 'modular,routed', '--store', temporaryStore('invalid')]));
  assert.equal(code, 2, output);
  assert.match(output, /Invalid sweep spec \(2 problems\)/);
  assert.match(output, /Invalid rules\[1\]: "x"/);
  assert.match(output, /Invalid kinds\[1\]: "routed"/);
});

test('summary with monolithic keeps finite means', () => {
  const records = syntheticRecords();
  const summary = summaryRows(records);
  assert.equal(summary.length, 4 * 2);
  for (const row of summary) {
    assert.ok(Number.isFinite(row.idPerformance), `${row.model} R=${row.rules} idPerformance`);
    assert.ok(Number.isFinite(row.idPerformanceCi), `${row.model} R=${row.rules} idPerformanceCi`);
    if (row.model === 'Monolithic') {
      assert.equal(row.alignment, null);
      assert.equal(row.alignmentCi, null);
    } else {
      assert.ok(Number.isFinite(row.alignment), `${row.model} alignment`);
    }
  }

  // Two data seeds x two model seeds of GT-Modular at 2 rules: errors 1, 2, 3, 4.
  const gt = summary.find((row) => row.model === 'GT-Modular' && row.rules === 2)!;
  assert.equal(gt.runs, 4);
  assert.equal(gt.idPerformance, 2.5);
  // t(0.975, 3) * sd / sqrt(4) with sd = sqrt(5 / 3).
  assert.ok(Math.abs((gt.idPerformanceCi as number) - (3.182 * Math.sqrt(5 / 3)) / 2) < 1e-9);

  // A whole sweep table: CSV cells of missing metrics are empty, never NaN.
  const runs = records.map((record, index) => ({ spec: fakeSpec(record, index), record }));
  const csv = toCsv(sweepSummaryRows(runs));
  assert.doesNotMatch(csv, /NaN|null|undefined/);
  const header = csv.split('\n')[0].split(',');
  const monolithicLine = csv.split('\n').find((line) => line.includes(',Monolithic,'))!.split(',');
  assert.equal(monolithicLine[header.indexOf('alignment')], '');
  assert.equal(toCsv([{ text: 'a,"b"', value: NaN }]), 'text,value\n"a,""b""",\n');
});

test('win shares count seed-averaged winners', () => {
  const shares = winShares(syntheticRecords());
  // Settings: 2 rule counts x 2 data seeds. GT-Modular has the lowest mean in each.
  assert.equal(shares.all.settings, 4);
  assert.equal(shares.all.wins['GT-Modular'], 4);
  assert.equal(shares.all.shares['GT-Modular'].share, 1);
  assert.ok(shares.all.shares['GT-Modular'].lower < 1, 'the Wilson interval of 4 wins in 4 reaches below 1');
  assert.ok(shares.all.shares['GT-Modular'].lower > 0.4, 'the Wilson interval of 4 wins in 4 starts near 0.51');
  // Modular against Monolithic: Modular wins at 8 rules, the two tie at 2 rules (half a win each).
  assert.equal(shares.modularVsMonolithic.settings, 4);
  assert.equal(shares.modularVsMonolithic.wins.Modular, 3);
  assert.equal(shares.modularVsMonolithic.wins.Monolithic, 1);

  const findings = assessFindings(syntheticRecords());
  assert.deepEqual(
    findings.map((finding) => finding.verdict),
    ['supported', 'supported', 'supported', 'partly supported', 'supported'],
  );
  assert.equal(assessFindings(syntheticRecords().filter((record) => record.task.ruleCount === 2))[2].verdict, 'not testable');
});

test('results files round-trip', () => {
  const records = syntheticRecords();
  const runs = records.map((record, index) => ({ spec: fakeSpec(record, index), record }));
  const dir = temporaryStore('results');
  const files = writeResults(runs, dir);
  assert.deepEqual(readResults(dir), runs);
  const lines = fs.readFileSync(files.results, 'utf8').trim().split('\n');
  assert.equal(lines.length, records.length + 1);
  assert.match(lines[0], /^id,architecture,mode,rules,model,/);
});

test('two workers match one worker', async () => {
  const oneWorker = await oneWorkerStore();
  const twoWorkers = temporaryStore('two-workers');
  const second = await runSweep(TINY_SWEEP, { store: twoWorkers, workers: 2, progress: 'off', log: () => {} });
  assert.deepEqual(second.failed, []);
  assert.equal(second.trained, TINY_SWEEP_RUNS);
  assert.equal(second.workers, 2);

  const expected = resultsById(oneWorker);
  assert.equal(expected.size, TINY_SWEEP_RUNS);
  assert.deepEqual(resultsById(twoWorkers), expected);

  // Runs from both workers, so the comparison covers two processes.
  const pids = new Set(runFolders(twoWorkers).flatMap((folder) => [...fs.readFileSync(path.join(folder, 'run.log'), 'utf8').matchAll(/pid (\d+)\]/g)].map((match) => match[1])));
  assert.equal(pids.size, 2);

  // A second call finds every record and trains nothing.
  const again = await runSweep(TINY_SWEEP, { store: twoWorkers, workers: 2, progress: 'off', log: () => {} });
  assert.equal(again.alreadyFinished, TINY_SWEEP_RUNS);
  assert.equal(again.trained, 0);
});

test('sigkill mid-sweep then restart', async () => {
  const store = temporaryStore('killed');
  const reference = await oneWorkerStore();

  const child = spawnCli(['sweep', ...TINY_SWEEP_ARGUMENTS, '--store', store, '--workers', '2']);
  const exited = waitForExit(child);
  const hasRecord = (folder: string) => fs.existsSync(path.join(folder, 'record.json'));
  const hasCheckpoint = (folder: string) => fs.existsSync(path.join(folder, 'last.json'));
  // Kill once a run has finished and another stopped between checkpoints and its record.
  await waitFor(
    () => fs.existsSync(store) && runFolders(store).some(hasRecord) && runFolders(store).some((folder) => hasCheckpoint(folder) && !hasRecord(folder)),
    120_000,
    'one finished run and one partial run',
  );
  child.kill('SIGKILL');
  assert.equal((await exited).signal, 'SIGKILL');

  // The workers notice that their parent is gone, stop and release their locks.
  await waitFor(() => runFolders(store).every((folder) => !fs.existsSync(path.join(folder, 'lock'))), 30_000, 'the orphaned workers to exit');
  assertStoreIntact(store);
  const finishedBefore = runFolders(store).filter(hasRecord).length;
  assert.ok(finishedBefore >= 1, `${finishedBefore} runs finished before the kill`);
  assert.ok(finishedBefore < TINY_SWEEP_RUNS, `${finishedBefore} runs finished before the kill`);

  const restart = await waitForExit(spawnCli(['sweep', ...TINY_SWEEP_ARGUMENTS, '--store', store, '--workers', '2']));
  assert.equal(restart.code, 0, restart.output);
  assertStoreIntact(store);
  assert.equal(runFolders(store).length, TINY_SWEEP_RUNS);
  assert.equal(runFolders(store).filter(hasRecord).length, TINY_SWEEP_RUNS);
  const logs = runFolders(store).map((folder) => fs.readFileSync(path.join(folder, 'run.log'), 'utf8'));
  assert.ok(logs.some((log) => /resuming from the checkpoint at step \d+/.test(log)), 'no run resumed from a checkpoint');
  for (const log of logs) assert.equal(log.match(/finished in/g)?.length, 1, `a run finished more than once:\n${log}`);

  // Resumed runs replay the same data from their checkpoint, so they end where uninterrupted runs end.
  assert.deepEqual(resultsById(store), resultsById(reference));
});

/** Returns a stand-in spec for a synthetic record, because only its id matters to the results files. */
function fakeSpec(record: RunRecord, index: number) {
  return makeRunSpec({
    architecture: 'mlp',
    taskSettings: { architecture: 'mlp', mode: record.task.mode, rules: record.task.ruleCount, dataSeed: record.task.dataSeed },
    kind: 'modular',
    encoderDim: 8,
    hiddenDim: 32,
    dataSeed: record.task.dataSeed,
    modelSeed: index,
    profile: 'quick',
    steps: null,
  });
}

/**
 * Builds records for 2 rule counts x 2 data seeds x 2 model seeds x 4 models with hand-picked
 * numbers. GT-Modular always has the lowest error and falls fastest. Its margin over Monolithic
 * is 10 points larger at 8 rules than at 2 for both data seeds. Modular ties Monolithic at 2 rules
 * and beats it slightly at 8. The learned routers score near the random router without
 * collapsing.
 */
function syntheticRecords(): RunRecord[] {
  const records: RunRecord[] = [];
  for (const rules of [2, 8]) {
    for (const dataSeed of [0, 1]) {
      for (const modelSeed of [0, 1]) {
        for (const label of Object.values(MODEL_LABELS)) {
          const seedOffset = dataSeed * 2 + modelSeed;
          const error: Record<string, number> = {
            'GT-Modular': rules === 2 ? 1 + seedOffset : 0.5 + 4 * dataSeed + modelSeed,
            Modular: rules === 2 ? 10 : 18,
            'Modular-op': rules === 2 ? 10.5 : 19,
            Monolithic: rules === 2 ? 10 : 20,
          };
          const start = label === 'GT-Modular' ? 0.3 : 0.7;
          const metrics =
            label === 'Monolithic'
              ? null
              : label === 'GT-Modular'
                ? { collapseAverage: 0, collapseWorst: 0, inverseMutualInformation: 0, alignment: 0, adaptation: 0, activationMatrix: [] }
                : { collapseAverage: 0.1, collapseWorst: 0.2, inverseMutualInformation: 0.95, alignment: 0.9 * (1 - 1 / rules), adaptation: 0.3, activationMatrix: [] };
          records.push({
            finished: true,
            task: { architecture: 'mlp', mode: 'classification', ruleCount: rules, dataSeed, ruleProbabilities: [], rules: [] },
            model: { kind: 'modular', encoderDim: 8, hiddenDim: 32, label, parameterCount: 100 },
            modelSeed,
            profile: { name: 'quick', steps: 300, learningRate: 1e-3, batchSize: 256, evalEvery: 100, clipNorm: null },
            engine: 'wasm',
            curves: { step: [100, 200, 300], trainLoss: [start, start / 2, 0.1], idLoss: [], idPerformance: [], oodLoss: [], oodPerformance: [] },
            best: { step: 300, idLoss: 0.1 },
            id: { loss: 0, performance: error[label] },
            ood: { loss: 0, performance: 2 * error[label] },
            perLength: [],
            metrics,
            seconds: 1,
            stepsPerSecond: 300,
          });
        }
      }
    }
  }
  return records;
}
