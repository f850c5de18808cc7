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

/** Metadata a checkpoint stores besides the weights. */
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
 * Saves a checkpoint as `<name>.json` plus binary files named after the step:
 * `<name>.<step>.weights.bin` (float32 parameters) and, with optimizer state,
 * `<name>.<step>.optimizer.bin` (Adam moments). The JSON names its binary files and is written
 * last, so a process killed at any point leaves the previous complete checkpoint or the new
 * one, never new weights paired with old metadata. Binary files of older saves are then deleted.
 */
export function saveCheckpoint(runDir: string, name: CheckpointName, checkpoint: Checkpoint): void {
  const weightsFile = `${name}.${checkpoint.meta.step}.weights.bin`;
  writeFileAtomic(path.join(runDir, weightsFile), toBytes(checkpoint.parameters));
  let optimizerFile: string | undefined;
  let optimizerStep: number | undefined;
  if (checkpoint.optimizer) {
    const { firstMoment, secondMoment } = checkpoint.optimizer;
    const moments = new Float32Array(firstMoment.length * 2);
    moments.set(firstMoment, 0);
    moments.set(secondMoment, firstMoment.length);
    optimizerFile = `${name}.${checkpoint.meta.step}.optimizer.bin`;
    writeFileAtomic(path.join(runDir, optimizerFile), toBytes(moments));
    optimizerStep = checkpoint.optimizer.step;
  }
  writeJsonAtomic(path.join(runDir, `${name}.json`), { ...checkpoint.meta, optimizerStep, weightsFile, optimizerFile });

  const current = new Set([weightsFile, optimizerFile]);
  for (const file of fs.readdirSync(runDir)) {
    const isBinary = file.endsWith('.weights.bin') || file.endsWith('.optimizer.bin');
    if (isBinary && file.startsWith(`${name}.`) && !current.has(file)) fs.rmSync(path.join(runDir, file), { force: true });
  }
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
  const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8')) as CheckpointMeta & StoredFiles;
  // Checkpoints saved before binary files carried the step in their names have no file fields.
  const parameters = fromBytes(fs.readFileSync(path.join(runDir, meta.weightsFile ?? `${name}.weights.bin`)));
  if (parameters.length !== meta.parameterCount) {
    throw new Error(`Checkpoint ${metaFile} is damaged: ${parameters.length} weights stored, ${meta.parameterCount} expected.`);
  }

  const checkpoint: Checkpoint = { meta, parameters };
  const optimizerFile = path.join(runDir, meta.optimizerFile ?? `${name}.optimizer.bin`);
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

/** Fields that `saveCheckpoint` adds to a checkpoint's JSON. */
interface StoredFiles {
  optimizerStep?: number;
  weightsFile?: string;
  optimizerFile?: string;
}

function toBytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

function fromBytes(bytes: Buffer): Float32Array {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}
