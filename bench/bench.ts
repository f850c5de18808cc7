/**
 * Speed benchmark of modarch training steps against PyTorch, and of parallel trainings.
 *
 * For every architecture and model kind that exists, at the default shape, this trains with
 * the library's Trainer (the exact update `trainRun` runs) on fresh batches. Right after, it
 * times the same model's step in PyTorch with one thread (bench/torch/step.py), so machine
 * load hits both alike. It prints a table with ms per step, the tfjs/PyTorch ratio and the
 * tfjs tensor count before and after many steps (a leak shows as growth). Then it measures the
 * throughput of independent trainings on 1 worker process and on every core.
 *
 * Run: npm run bench -- [--steps 200] [--arch mlp,rnn] [--kinds modular] [--no-torch] [--workers 2]
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import {
  ARCHITECTURES,
  Architecture,
  createModel,
  createTask,
  describeEngine,
  initEngine,
  initialParameters,
  MODEL_KINDS,
  MODEL_LABELS,
  ModelKind,
  PROFILES,
  Profile,
  RandomStream,
  streamKey,
  tf,
  Trainer,
  TrainingJob,
  TrainingPool,
} from '../lib/index';

/** Default shape of one architecture, for tfjs and for PyTorch. */
interface BenchShape {
  label: string;
  task: { architecture: Architecture } & Record<string, unknown>;
  encoderDim: number;
  hiddenDim: number;
  batchSize: number;
  /** Extra `--set` options for step.py (sequence length, state size). */
  torchOptions: Record<string, number>;
  /** Default timed steps, warm-up steps and profiled steps, sized to the cost of one step. */
  counts: StepCounts;
}

/** How many steps to time, to run before timing and to profile, per model. */
interface StepCounts {
  steps: number;
  warmup: number;
  profileSteps: number;
}

const SHAPES: Record<Architecture, BenchShape> = {
  mlp: {
    label: 'R=8 e=64 h=256 batch 256',
    task: { architecture: 'mlp', mode: 'classification', rules: 8 },
    encoderDim: 64,
    hiddenDim: 256,
    batchSize: 256,
    torchOptions: {},
    counts: { steps: 200, warmup: 20, profileSteps: 10 },
  },
  mha: {
    label: 'R=4 D=64 A=256 L=10 batch 256',
    task: { architecture: 'mha', mode: 'classification', rules: 4, searchVersion: 1, trainLength: 10 },
    encoderDim: 64,
    hiddenDim: 256,
    batchSize: 256,
    torchOptions: { length: 10 },
    counts: { steps: 30, warmup: 3, profileSteps: 3 },
  },
  rnn: {
    label: 'R=4 e=64 n=256 d=32 L=10 batch 256',
    task: { architecture: 'rnn', mode: 'classification', rules: 4, stateDim: 32, trainLength: 10 },
    encoderDim: 64,
    hiddenDim: 256,
    batchSize: 256,
    torchOptions: { length: 10, state_dim: 32 },
    counts: { steps: 30, warmup: 3, profileSteps: 3 },
  },
};

/** Learning rate (1e-4) and gradient clipping (RNN only, norm 1.0) of the "paper" profile, for both engines. */
const PROTOCOL = PROFILES.paper;

const TORCH_DIR = path.join(__dirname, 'torch');

interface BenchOptions {
  steps?: number;
  warmup?: number;
  arch: Architecture[];
  kinds: ModelKind[];
  torch: boolean;
  python: string;
  leakSteps: number;
  leakArch: Architecture[];
  workers: number;
  throughput: boolean;
  throughputSteps: number;
  throughputJobs?: number;
  profileAbove: number;
  profileSteps?: number;
}

function parseOptions(argv: string[]): BenchOptions {
  const program = new Command()
    .name('bench')
    .description('Time modarch training steps against PyTorch and measure parallel training throughput.')
    .option('--steps <count>', 'timed training steps per model, for tfjs and for PyTorch (default: 200 MLP, 30 MHA and RNN)', positiveInteger)
    .option('--warmup <count>', 'untimed steps before timing (default: 20 MLP, 3 MHA and RNN)', nonNegativeInteger)
    .option('--arch <list>', `comma-separated architectures (${ARCHITECTURES.join(', ')})`, listOf(ARCHITECTURES), [...ARCHITECTURES])
    .option('--kinds <list>', `comma-separated model kinds (${MODEL_KINDS.join(', ')})`, listOf(MODEL_KINDS), [...MODEL_KINDS])
    .option('--no-torch', 'skip the PyTorch timings')
    .option('--python <path>', 'Python interpreter that has torch', '/usr/bin/python3')
    .option('--leak-steps <count>', 'steps after warm-up before the tensor count is read again', nonNegativeInteger, 2000)
    .option('--leak-arch <list>', 'architectures whose models run the --leak-steps check', listOf(ARCHITECTURES), ['mlp'])
    .option('--workers <count>', 'worker processes for the all-cores throughput run', positiveInteger, os.availableParallelism())
    .option('--no-throughput', 'skip the parallel throughput measurement')
    .option('--throughput-steps <count>', 'training steps of each job in the throughput measurement', positiveInteger, 1500)
    .option('--throughput-jobs <count>', 'jobs per throughput run (default: 4 per worker)', positiveInteger)
    .option('--profile-above <ratio>', 'profile the tfjs step of models whose tfjs/PyTorch ratio exceeds this', positiveNumber, 1.5)
    .option('--profile-steps <count>', 'steps averaged in each tf.profile breakdown (default: 10 MLP, 3 MHA and RNN)', positiveInteger)
    .parse(argv);
  return program.opts<BenchOptions>();
}

function positiveInteger(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(`expected an integer >= 1, got "${text}"`);
  return value;
}

function positiveNumber(text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new InvalidArgumentError(`expected a number > 0, got "${text}"`);
  return value;
}

function nonNegativeInteger(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new InvalidArgumentError(`expected an integer >= 0, got "${text}"`);
  return value;
}

function listOf<T extends string>(choices: readonly T[]): (text: string) => T[] {
  return (text) => {
    const items = text.split(',').map((item) => item.trim()).filter((item) => item.length > 0);
    const invalid = items.filter((item) => !(choices as readonly string[]).includes(item));
    if (invalid.length > 0 || items.length === 0) {
      throw new InvalidArgumentError(`expected a comma-separated list of ${choices.join(', ')}, got "${text}"`);
    }
    return items as T[];
  };
}

/** Timing of the tfjs steps of one model; `trainer` stays alive for the tensor count check. */
interface TfjsTiming {
  trainer: Trainer;
  sample: () => ReturnType<Trainer['task']['sample']>;
  parameterCount: number;
  msPerStep: number;
  cpuMsPerStep: number;
  samplingMsPerStep: number;
  tensorsAfterWarmup: number;
}

/** Returns the step counts of `shape`, with the ones given on the command line instead of the defaults. */
function stepCounts(shape: BenchShape, options: BenchOptions): StepCounts {
  return {
    steps: options.steps ?? shape.counts.steps,
    warmup: options.warmup ?? shape.counts.warmup,
    profileSteps: options.profileSteps ?? shape.counts.profileSteps,
  };
}

/** Builds the model, runs warm-up steps, then times `counts.steps` steps (sampling timed apart). */
async function timeTfjs(shape: BenchShape, kind: ModelKind, counts: StepCounts): Promise<TfjsTiming> {
  const task = createTask(shape.task);
  const model = createModel(task, { kind, encoderDim: shape.encoderDim, hiddenDim: shape.hiddenDim });
  const trainer = new Trainer(task, model, initialParameters(model, 0), {
    learningRate: PROTOCOL.learningRate,
    clipNorm: PROTOCOL.clipNorm[task.architecture],
  });
  const stream = new RandomStream(streamKey('bench-samples', task.architecture, kind));
  const sample = () => task.sample(stream, shape.batchSize, { length: task.trainLength });

  for (let i = 0; i < counts.warmup; i++) trainer.step(sample());
  await trainer.takeMeanLoss();
  const tensorsAfterWarmup = tf.memory().numTensors;

  let stepMs = 0;
  let samplingMs = 0;
  let cpuMicroseconds = 0;
  for (let i = 0; i < counts.steps; i++) {
    const sampleStarted = performance.now();
    const data = sample();
    const stepStarted = performance.now();
    const cpuStarted = process.cpuUsage();
    trainer.step(data);
    const cpu = process.cpuUsage(cpuStarted);
    stepMs += performance.now() - stepStarted;
    samplingMs += stepStarted - sampleStarted;
    cpuMicroseconds += cpu.user + cpu.system;
  }
  // Reading the loss waits for any queued work (none on the CPU backends, which run ops at once).
  const finishStarted = performance.now();
  await trainer.takeMeanLoss();
  stepMs += performance.now() - finishStarted;

  return {
    trainer,
    sample,
    parameterCount: model.layout.size,
    msPerStep: stepMs / counts.steps,
    cpuMsPerStep: cpuMicroseconds / 1000 / counts.steps,
    samplingMsPerStep: samplingMs / counts.steps,
    tensorsAfterWarmup,
  };
}

/** Time per step of one kernel name in a tf.profile breakdown. */
interface KernelShare {
  kernel: string;
  msPerStep: number;
  callsPerStep: number;
}

/**
 * Profiles `steps` Trainer steps with tf.profile and returns the time per step of each kernel
 * name, largest first, with the total. Wrapper entries that are not registered kernels (such as
 * a custom gradient's "forward") contain other kernels and are left out, so nothing counts
 * twice. tf.profile times each kernel with the wall clock, so the step also runs slower than
 * unprofiled; shares are what to read.
 */
async function profileKernels(timing: TfjsTiming, steps: number): Promise<{ kernels: KernelShare[]; kernelMsPerStep: number; stepMs: number }> {
  const backend = tf.getBackend();
  const totals = new Map<string, { ms: number; calls: number }>();
  let stepMs = 0;
  for (let i = 0; i < steps; i++) {
    const data = timing.sample();
    const started = performance.now();
    const info = await tf.profile(() => timing.trainer.step(data));
    stepMs += performance.now() - started;
    for (const kernel of info.kernels) {
      if (!tf.getKernel(kernel.name, backend)) continue;
      const ms = await kernel.kernelTimeMs;
      const total = totals.get(kernel.name) ?? { ms: 0, calls: 0 };
      total.ms += typeof ms === 'number' ? ms : 0;
      total.calls += 1;
      totals.set(kernel.name, total);
    }
  }
  const kernels = [...totals.entries()]
    .map(([kernel, total]) => ({ kernel, msPerStep: total.ms / steps, callsPerStep: total.calls / steps }))
    .sort((a, b) => b.msPerStep - a.msPerStep);
  const kernelMsPerStep = kernels.reduce((sum, kernel) => sum + kernel.msPerStep, 0);
  return { kernels, kernelMsPerStep, stepMs: stepMs / steps };
}

/** Prints a tf.profile breakdown: the largest kernels and the time outside any kernel. */
function printProfile(name: string, ratio: number, profile: Awaited<ReturnType<typeof profileKernels>>): void {
  const share = (ms: number) => `${((100 * ms) / profile.stepMs).toFixed(0)}%`;
  const top = profile.kernels.slice(0, 6).map((kernel) => `${kernel.kernel} ${share(kernel.msPerStep)} (${fixed(kernel.callsPerStep, 0)} ${kernel.callsPerStep === 1 ? 'call' : 'calls'})`);
  const others = profile.kernels.slice(6).reduce((sum, kernel) => sum + kernel.msPerStep, 0);
  const calls = profile.kernels.reduce((sum, kernel) => sum + kernel.callsPerStep, 0);
  console.log(
    `${name} (ratio ${fixed(ratio)}): ${fixed(calls, 0)} kernels per step; ${top.join(', ')}, ` +
      `other kernels ${share(others)}, outside kernels (JavaScript: tape, tidy, op dispatch) ${share(profile.stepMs - profile.kernelMsPerStep)}`,
  );
}

interface TorchTiming {
  msPerStep: number;
  cpuMsPerStep: number;
  parameterCount: number;
}

/** Checks that `python` imports torch; returns its version, or null with the reason printed. */
function torchVersion(python: string): string | null {
  const result = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  if (result.status === 0) return result.stdout.trim();
  const reason = result.error ? result.error.message : (result.stderr.trim().split('\n').pop() ?? `exit code ${result.status}`);
  console.log(`PyTorch columns skipped: ${python} cannot import torch (${reason}).`);
  return null;
}

/** Runs step.py for one model; returns its timing, or an error message. */
function timeTorch(shape: BenchShape, kind: ModelKind, counts: StepCounts, python: string): TorchTiming | string {
  const architecture = shape.task.architecture;
  const clipNorm = PROTOCOL.clipNorm[architecture];
  const args = [
    path.join(TORCH_DIR, 'step.py'),
    '--arch', architecture,
    '--kind', kind,
    '--rules', String(shape.task.rules),
    '--encoder-dim', String(shape.encoderDim),
    '--hidden-dim', String(shape.hiddenDim),
    '--batch-size', String(shape.batchSize),
    '--steps', String(counts.steps),
    '--warmup', String(counts.warmup),
    '--learning-rate', String(PROTOCOL.learningRate),
    '--threads', '1',
    ...(clipNorm === null ? [] : ['--clip-norm', String(clipNorm)]),
    ...Object.entries(shape.torchOptions).flatMap(([name, value]) => ['--set', `${name}=${value}`]),
  ];
  const result = spawnSync(python, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (result.status !== 0) {
    const lines = (result.stderr || result.error?.message || '').trim().split('\n');
    return `step.py failed: ${lines[lines.length - 1]}`;
  }
  const output = JSON.parse(result.stdout.trim().split('\n').pop()!);
  return { msPerStep: output.ms_per_step, cpuMsPerStep: output.cpu_ms_per_step, parameterCount: output.parameter_count };
}

/** Whether `architecture` has a task generator and models in this checkout; prints why not. */
function tfjsSupports(shape: BenchShape): boolean {
  try {
    const task = createTask(shape.task);
    createModel(task, { kind: 'monolithic', encoderDim: shape.encoderDim, hiddenDim: shape.hiddenDim });
    return true;
  } catch (error) {
    console.log(`${shape.task.architecture.toUpperCase()}: skipped, no tfjs task or model (${(error as Error).message})`);
    return false;
  }
}

type Row = Record<string, string>;

/** Prints rows as a table with right-aligned columns. */
function printTable(columns: string[], rows: Row[]): void {
  const widths = columns.map((column) => Math.max(column.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, index) => (index < 2 ? cell.padEnd(widths[index]) : cell.padStart(widths[index]))).join('  ');
  console.log(line(columns));
  console.log(line(widths.map((width) => '-'.repeat(width))));
  for (const row of rows) console.log(line(columns.map((column) => row[column] ?? '')));
}

function fixed(value: number, digits = 2): string {
  return value.toFixed(digits);
}

const STEP_COLUMNS = [
  'model',
  'shape',
  'params',
  'tfjs ms/step',
  'tfjs steps/s',
  'sampling ms',
  'torch ms/step',
  'ratio',
  'CPU ratio',
  'tensors before',
  'tensors after',
];

type ProfileEntry = { name: string; ratio: number; steps: number; profile: Awaited<ReturnType<typeof profileKernels>> };

/**
 * Times every requested model, tfjs then PyTorch back to back, and returns the table rows and
 * the tf.profile breakdowns of models slower than `--profile-above` times PyTorch.
 */
async function benchmarkSteps(options: BenchOptions, torchAvailable: boolean): Promise<{ rows: Row[]; profiles: ProfileEntry[] }> {
  const rows: Row[] = [];
  const profiles: ProfileEntry[] = [];
  for (const architecture of options.arch) {
    const shape = SHAPES[architecture];
    if (!tfjsSupports(shape)) continue;
    const torchFile = path.join(TORCH_DIR, `${architecture}.py`);
    const torchReady = torchAvailable && fs.existsSync(torchFile);
    if (torchAvailable && !torchReady) console.log(`${architecture.toUpperCase()}: PyTorch column skipped, ${torchFile} not found.`);

    for (const kind of options.kinds) {
      const name = `${architecture.toUpperCase()} ${MODEL_LABELS[kind]}`;
      console.error(`timing ${name} ...`);
      const counts = stepCounts(shape, options);
      const tfjsTiming = await timeTfjs(shape, kind, counts);
      const torchTiming = torchReady ? timeTorch(shape, kind, counts, options.python) : 'skipped';

      let stepsDone = counts.steps;
      const ratio = typeof torchTiming === 'string' ? null : tfjsTiming.msPerStep / torchTiming.msPerStep;
      if (ratio !== null && ratio > options.profileAbove) {
        profiles.push({ name, ratio, steps: counts.profileSteps, profile: await profileKernels(tfjsTiming, counts.profileSteps) });
        stepsDone += counts.profileSteps;
      }

      // The tensor count check runs after the PyTorch timing, so both timings sit back to back.
      const checkSteps = Math.max(options.leakArch.includes(architecture) ? options.leakSteps : 0, stepsDone);
      for (; stepsDone < checkSteps; stepsDone++) tfjsTiming.trainer.step(tfjsTiming.sample());
      await tfjsTiming.trainer.takeMeanLoss();
      const tensorsAfter = tf.memory().numTensors;
      tfjsTiming.trainer.dispose();

      const row: Row = {
        model: name,
        shape: shape.label,
        params: String(tfjsTiming.parameterCount),
        'tfjs ms/step': fixed(tfjsTiming.msPerStep),
        'tfjs steps/s': fixed(1000 / (tfjsTiming.msPerStep + tfjsTiming.samplingMsPerStep), 1),
        'sampling ms': fixed(tfjsTiming.samplingMsPerStep),
        'tensors before': String(tfjsTiming.tensorsAfterWarmup),
        'tensors after': `${tensorsAfter} (${checkSteps} steps)`,
      };
      if (typeof torchTiming === 'string') {
        row['torch ms/step'] = torchTiming === 'skipped' ? '-' : 'failed';
        if (torchTiming !== 'skipped') console.log(`${name}: ${torchTiming}`);
      } else {
        row['torch ms/step'] = fixed(torchTiming.msPerStep);
        row.ratio = fixed(ratio!);
        row['CPU ratio'] = fixed(tfjsTiming.cpuMsPerStep / torchTiming.cpuMsPerStep);
        if (torchTiming.parameterCount !== tfjsTiming.parameterCount) {
          row.params += ` (torch ${torchTiming.parameterCount})`;
          console.log(`${name}: parameter counts differ: tfjs ${tfjsTiming.parameterCount}, PyTorch ${torchTiming.parameterCount}.`);
        }
      }
      rows.push(row);
    }
  }
  return { rows, profiles };
}

/**
 * Runs `jobs` on a pool of `workers` processes and returns the wall time, the training steps
 * per second of wall time, and each job's own training rate (its record's stepsPerSecond,
 * without evaluation and scoring) averaged over the jobs.
 */
async function measureThroughput(
  workers: number,
  jobs: TrainingJob[],
): Promise<{ seconds: number; stepsPerSecond: number; jobStepsPerSecond: number }> {
  const pool = new TrainingPool({ workers });
  try {
    // Start every worker and its engine before timing, with one tiny job each.
    const startup: TrainingJob = { ...jobs[0], name: 'worker start-up', steps: 1, runDir: undefined };
    await pool.runAll(Array.from({ length: workers }, () => startup));

    const started = performance.now();
    const records = await pool.runAll(jobs);
    const seconds = (performance.now() - started) / 1000;
    const steps = records.reduce((total, record) => total + record.profile.steps, 0);
    const jobRates = records.reduce((total, record) => total + record.stepsPerSecond, 0);
    return { seconds, stepsPerSecond: steps / seconds, jobStepsPerSecond: jobRates / records.length };
  } finally {
    await pool.close();
  }
}

async function benchmarkThroughput(options: BenchOptions): Promise<void> {
  const shape = SHAPES.mlp;
  // Jobs of 300 steps gave ratios from 1.61 to 1.79 in repeated runs: each fresh job's start
  // (first steps, evaluation, scoring) weighs too much. 4 jobs per worker of 1,500 steps each
  // take about 1.5 minutes on 2 cores and vary less.
  const jobCount = options.throughputJobs ?? 4 * options.workers;
  const profile: Profile = {
    ...PROFILES.quick,
    learningRate: PROTOCOL.learningRate,
    evalEvery: { mlp: options.throughputSteps, mha: options.throughputSteps, rnn: options.throughputSteps },
    evalBatches: 1,
  };
  const jobs: TrainingJob[] = Array.from({ length: jobCount }, (_, index) => ({
    name: `throughput job ${index}`,
    task: shape.task,
    model: { kind: 'modular', encoderDim: shape.encoderDim, hiddenDim: shape.hiddenDim },
    modelSeed: index,
    profile,
    steps: options.throughputSteps,
  }));

  console.log(
    `\nIndependent trainings: ${jobCount} jobs of ${options.throughputSteps} steps each (MLP Modular, ${shape.label}; ` +
      'each job also runs one evaluation and the final scoring)',
  );
  console.error('measuring throughput on 1 worker ...');
  const single = await measureThroughput(1, jobs);
  console.error(`measuring throughput on ${options.workers} workers ...`);
  const parallel = await measureThroughput(options.workers, jobs);
  const row = (label: string, processes: number, result: Awaited<ReturnType<typeof measureThroughput>>): Row => ({
    workers: label,
    processes: String(processes),
    'wall s': fixed(result.seconds, 1),
    'steps/s': fixed(result.stepsPerSecond, 1),
    'steps/s per job': fixed(result.jobStepsPerSecond, 1),
  });
  printTable(
    ['workers', 'processes', 'wall s', 'steps/s', 'steps/s per job'],
    [row('1 worker', 1, single), row('all cores', options.workers, parallel)],
  );
  console.log(
    `Throughput ratio (all cores / 1 worker): ${fixed(parallel.stepsPerSecond / single.stepsPerSecond)}. ` +
      'steps/s counts every training step per second of wall time; steps/s per job is the mean training rate inside ' +
      'each job. Other processes on the machine take cores too (see the load averages).',
  );
}

function loadAverage(): string {
  return os.loadavg().map((value) => value.toFixed(2)).join(' ');
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv);
  process.env.MODARCH_QUIET ??= '1';
  await initEngine();

  const torch = options.torch ? torchVersion(options.python) : null;
  if (!options.torch) console.log('PyTorch columns skipped (--no-torch).');
  console.log(
    `Engine: tfjs ${tf.version.tfjs}, ${describeEngine()} | PyTorch: ${torch ?? 'not used'} (1 thread) | ` +
      `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} cores | load average ${loadAverage()}`,
  );

  const { rows, profiles } = await benchmarkSteps(options, torch !== null);
  console.log('');
  printTable(STEP_COLUMNS, rows);
  console.log(
    '\nms/step: one Trainer.step (tfjs) or one PyTorch step (forward, BCE with logits, backward, Adam lr ' +
      `${PROTOCOL.learningRate}, RNN clipping at ${PROTOCOL.clipNorm.rnn}), wall time, batch drawn outside the timing. ` +
      'steps/s includes drawing the batch. ratio: tfjs / PyTorch ms per step; CPU ratio: the same for CPU time of ' +
      'each process. Tensors: tf.memory().numTensors after warm-up and after the steps shown.',
  );

  if (profiles.length > 0) {
    console.log(`\nWhere the tfjs step spends its time (tf.profile), for ratios above ${options.profileAbove}:`);
    for (const entry of profiles) printProfile(`${entry.name} over ${entry.steps} steps`, entry.ratio, entry.profile);
  }

  if (options.throughput) await benchmarkThroughput(options);
  console.log(`\nLoad average at the end: ${loadAverage()}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
