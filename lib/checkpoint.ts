import * as fs from 'node:fs';
import * as path from 'node:path';
import { SettingError } from './errors';

/** Writes `data` to `file` through a temporary file and a rename, so readers never see half a file. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.${Date.now()}.tmp`;
  const handle = fs.openSync(temporary, 'w');
  try {
    fs.writeFileSync(handle, data);
    fs.fsyncSync(handle);
  } finally {
    fs.closeSync(handle);
  }
  fs.renameSync(temporary, file);
}

/** Writes `value` as indented JSON, atomically. */
export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, `${JSON.stringify(value, null, 1)}\n`);
}

export const CHECKPOINT_NAMES = ['last', 'best'] as const;
export type CheckpointName = (typeof CHECKPOINT_NAMES)[number];

/** What a checkpoint stores besides the weights. */
export interface CheckpointMeta {
  step: number;
  parameterCount: number;
  parameterNames: string[];
  [field: string]: unknown;
}

/** A checkpoint read back from disk. */
export interface Checkpoint {
  meta: CheckpointMeta;
  parameters: Float32Array;
  /** Adam moments, stored in `last` checkpoints so training can resume. */
  optimizer?: { step: number; firstMoment: Float32Array; secondMoment: Float32Array };
}

/**
 * Saves a checkpoint as `<name>.weights.bin` (float32 parameters), optionally
 * `<name>.optimizer.bin` (Adam moments) and `<name>.json`; the JSON is written last, so a
 * checkpoint whose JSON exists is complete.
 */
export function saveCheckpoint(runDir: string, name: CheckpointName, checkpoint: Checkpoint): void {
  writeFileAtomic(path.join(runDir, `${name}.weights.bin`), toBytes(checkpoint.parameters));
  let optimizerStep: number | undefined;
  if (checkpoint.optimizer) {
    const { firstMoment, secondMoment } = checkpoint.optimizer;
    const moments = new Float32Array(firstMoment.length * 2);
    moments.set(firstMoment, 0);
    moments.set(secondMoment, firstMoment.length);
    writeFileAtomic(path.join(runDir, `${name}.optimizer.bin`), toBytes(moments));
    optimizerStep = checkpoint.optimizer.step;
  }
  writeJsonAtomic(path.join(runDir, `${name}.json`), { ...checkpoint.meta, optimizerStep });
}

/** Returns true when checkpoint `name` exists complete in `runDir`. */
export function hasCheckpoint(runDir: string, name: CheckpointName): boolean {
  return fs.existsSync(path.join(runDir, `${name}.json`));
}

/** Loads checkpoint `name` ("last" or "best") from `runDir`; raises when it is missing or damaged. */
export function loadCheckpoint(runDir: string, name: CheckpointName): Checkpoint {
  if (!(CHECKPOINT_NAMES as readonly string[]).includes(name)) {
    throw new SettingError('checkpoint', name, '"last" or "best"');
  }
  const metaFile = path.join(runDir, `${name}.json`);
  if (!fs.existsSync(metaFile)) {
    throw new SettingError('checkpoint', metaFile, `an existing checkpoint; train a run into ${runDir} first`);
  }
  const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8')) as CheckpointMeta & { optimizerStep?: number };
  const parameters = fromBytes(fs.readFileSync(path.join(runDir, `${name}.weights.bin`)));
  if (parameters.length !== meta.parameterCount) {
    throw new Error(`Checkpoint ${metaFile} is damaged: ${parameters.length} weights stored, ${meta.parameterCount} expected.`);
  }

  const checkpoint: Checkpoint = { meta, parameters };
  const optimizerFile = path.join(runDir, `${name}.optimizer.bin`);
  if (meta.optimizerStep !== undefined && fs.existsSync(optimizerFile)) {
    const moments = fromBytes(fs.readFileSync(optimizerFile));
    const size = moments.length / 2;
    checkpoint.optimizer = {
      step: meta.optimizerStep,
      firstMoment: moments.slice(0, size),
      secondMoment: moments.slice(size),
    };
  }
  return checkpoint;
}

function toBytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

function fromBytes(bytes: Buffer): Float32Array {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}
