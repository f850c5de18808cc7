import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeJsonAtomic } from '../checkpoint';
import { RunSpec } from '../run-spec';
import { RunRecord } from '../train';

/** State of a run in a store: a finished record, a checkpoint to resume from, or nothing yet. */
export type RunStatus = 'finished' | 'partial' | 'pending';

/** A finished run: its spec and its record. */
export interface StoredRun {
  spec: RunSpec;
  record: RunRecord;
}

/** Severity of a log line. */
export type LogLevel = 'info' | 'warn' | 'error';

/** Contents of a run's lock file. */
interface LockOwner {
  host: string;
  pid: number;
  since: string;
}

/** Name of the file that marks a folder as a run of the store. */
const SPEC_FILE = 'run.json';
const RECORD_FILE = 'record.json';
const LOCK_FILE = 'lock';

/**
 * A run store: one folder per run id under `root`, holding `run.json` (the run spec),
 * `record.json` (written atomically by `trainRun` when the run finishes), checkpoints, `run.log`
 * and, while a process trains the run, a `lock` file. The store's own `sweep.log` records what
 * every sweep did with it. A local disk or a cluster's shared file system both work, because
 * every file is replaced by an atomic rename or appended line by line.
 */
export class RunStore {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    fs.mkdirSync(this.root, { recursive: true });
  }

  /** Returns the folder of run `id`. */
  runDir(id: string): string {
    return path.join(this.root, id);
  }

  /** Writes the spec of a run unless it is already there. */
  writeSpec(spec: RunSpec): void {
    const file = path.join(this.runDir(spec.id), SPEC_FILE);
    if (!fs.existsSync(file)) writeJsonAtomic(file, spec);
  }

  /** Reads the spec of run `id`, or returns null when the folder has none. */
  readSpec(id: string): RunSpec | null {
    const file = path.join(this.runDir(id), SPEC_FILE);
    return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as RunSpec) : null;
  }

  /**
   * Returns the record of run `id`, or null while it is not finished. A record that does not
   * parse is moved aside as `record.json.damaged-<time>` and logged, so the run trains again.
   */
  readRecord(id: string): RunRecord | null {
    const file = path.join(this.runDir(id), RECORD_FILE);
    if (!fs.existsSync(file)) return null;
    try {
      const record = JSON.parse(fs.readFileSync(file, 'utf8')) as RunRecord;
      return record.finished === true ? record : null;
    } catch (error) {
      const aside = `${file}.damaged-${Date.now()}`;
      fs.renameSync(file, aside);
      this.log(id, 'warn', `record.json did not parse (${(error as Error).message}), so it was moved to ${path.basename(aside)}`);
      return null;
    }
  }

  /** Returns whether run `id` is finished, has a checkpoint to resume from, or has neither. */
  status(id: string): RunStatus {
    if (this.readRecord(id)) return 'finished';
    return this.checkpointStep(id) > 0 ? 'partial' : 'pending';
  }

  /** Returns the step of the run's last checkpoint, or 0 when it has none. */
  checkpointStep(id: string): number {
    const file = path.join(this.runDir(id), 'last.json');
    if (!fs.existsSync(file)) return 0;
    const step = (JSON.parse(fs.readFileSync(file, 'utf8')) as { step?: unknown }).step;
    return typeof step === 'number' ? step : 0;
  }

  /** Lists the ids of every run folder (every folder with a `run.json`). */
  runIds(): string[] {
    return fs
      .readdirSync(this.root, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && fs.existsSync(path.join(this.root, entry.name, SPEC_FILE)))
      .map((entry) => entry.name)
      .sort();
  }

  /** Reads every finished run, or only those of `ids`, in the order of `ids` when given. */
  finishedRuns(ids?: readonly string[]): StoredRun[] {
    const runs: StoredRun[] = [];
    for (const id of ids ?? this.runIds()) {
      const record = this.readRecord(id);
      const spec = this.readSpec(id);
      if (record && spec) runs.push({ spec, record });
    }
    return runs;
  }

  /**
   * Deletes the temporary files that an interrupted atomic write left in the run's folder.
   * Call it only while holding the run's lock, because another writer's files look the same.
   */
  removeTemporaryFiles(id: string): string[] {
    const dir = this.runDir(id);
    if (!fs.existsSync(dir)) return [];
    const removed = fs.readdirSync(dir).filter((file) => file.endsWith('.tmp'));
    for (const file of removed) fs.rmSync(path.join(dir, file), { force: true });
    return removed;
  }

  /** Appends a line to the run's `run.log`. */
  log(id: string, level: LogLevel, message: string): void {
    fs.mkdirSync(this.runDir(id), { recursive: true });
    fs.appendFileSync(path.join(this.runDir(id), 'run.log'), logLine(level, message));
  }

  /** Appends a line to the store's `sweep.log`. */
  sweepLog(level: LogLevel, message: string): void {
    fs.appendFileSync(path.join(this.root, 'sweep.log'), logLine(level, message));
  }

  /**
   * Takes the lock of run `id` for this process, or returns null when a live process holds it.
   * A lock is stale, and taken over, when its process is gone from this host or when it was
   * not refreshed for `staleSeconds` (a process on another host cannot be checked directly).
   * NOTE: two processes that find the same stale lock at the same moment can both take it.
   * That wastes work but cannot damage files, because every write is an atomic rename.
   */
  acquireLock(id: string, staleSeconds = 600): RunLock | null {
    const file = path.join(this.runDir(id), LOCK_FILE);
    fs.mkdirSync(this.runDir(id), { recursive: true });
    const owner: LockOwner = { host: os.hostname(), pid: process.pid, since: new Date().toISOString() };

    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.writeFileSync(file, JSON.stringify(owner), { flag: 'wx' });
        return new RunLock(file, owner);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      // A lock without readable contents may be one that another process is writing right now.
      const holder = readLockOwner(file);
      const stale = holder ? isStale(file, holder, staleSeconds) : fileAgeSeconds(file) > 10;
      if (!stale) return null;
      this.log(id, 'warn', `taking over a stale lock${holder ? ` of pid ${holder.pid} on ${holder.host} since ${holder.since}` : ''}`);
      fs.rmSync(file, { force: true });
    }
    return null;
  }
}

/** A run lock held by this process. `refresh` marks it alive, and `release` deletes it. */
export class RunLock {
  private released = false;

  constructor(
    readonly file: string,
    private readonly owner: LockOwner,
  ) {}

  refresh(): void {
    const now = new Date();
    if (!this.released) fs.utimesSync(this.file, now, now);
  }

  /** Deletes the lock file if it still names this process. */
  release(): void {
    if (this.released) return;
    this.released = true;
    const holder = readLockOwner(this.file);
    if (holder && holder.pid === this.owner.pid && holder.host === this.owner.host) fs.rmSync(this.file, { force: true });
  }
}

function readLockOwner(file: string): LockOwner | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as LockOwner;
  } catch {
    // A lock that vanished or was caught half-written has no owner to wait for.
    return null;
  }
}

function isStale(file: string, holder: LockOwner, staleSeconds: number): boolean {
  if (holder.host === os.hostname()) return !processExists(holder.pid);
  return fileAgeSeconds(file) > staleSeconds;
}

/** Returns the seconds since `file` was last modified, or Infinity when it no longer exists. */
function fileAgeSeconds(file: string): number {
  try {
    return (Date.now() - fs.statSync(file).mtimeMs) / 1000;
  } catch {
    return Infinity;
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM means the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function logLine(level: LogLevel, message: string): string {
  return `${new Date().toISOString()} ${level.padEnd(5)} [${os.hostname()} pid ${process.pid}] ${message}\n`;
}
