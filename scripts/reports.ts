import { spawn, spawnSync } from 'child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import path from 'path';
import { createInterface } from 'readline';
import { Argument, Command, InvalidArgumentError, Option } from 'commander';
import { PROFILE_NAMES, PROFILE_VARIABLE, ProfileName } from '../lib/profiles';
import { ExecutionRecord, Notebook, formatSeconds, joinText, notebookToHtml } from './export-html';

/**
 * Executes notebooks headless on the tslab Jupyter kernel and writes one self-contained HTML
 * report per notebook. Usage: `npm run reports -- [paths...] [--profile quick] [--out reports]`.
 * Exit status: 0 when every notebook ran without error, 1 when a notebook failed (its report is
 * still written), 2 for invalid arguments or a missing Jupyter setup.
 */

const REPO_ROOT = path.resolve(__dirname, '..');
const RUNNER = path.join(__dirname, 'execute-notebook.py');
const SETUP_SCRIPT = path.join(__dirname, 'setup-jupyter.sh');
const HEARTBEAT_MS = 5 * 60 * 1000;

interface ReportOptions {
  only?: string[];
  profile: ProfileName;
  out: string;
  cellTimeout: number;
  startupTimeout: number;
  kernel: string;
  python: string;
}

interface NotebookResult {
  name: string;
  seconds: number;
  htmlPath?: string;
  /** Description of the failure, naming the cell. Undefined when the notebook ran without error. */
  failure?: string;
}

/** An error that ends the command with exit status 2 and its message, without a stack trace. */
class UsageError extends Error {}

function parseNames(value: string): string[] {
  return value
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
}

function parseSeconds(value: string): number {
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds < 0) {
    throw new InvalidArgumentError(`Expected a number of seconds >= 0, got "${value}".`);
  }
  return seconds;
}

// ---------------------------------------------------------------------------------------------
// Finding notebooks

function notebookName(notebookPath: string): string {
  return path.basename(notebookPath, '.ipynb');
}

/** Lists the notebooks named by `paths` (files, or folders whose *.ipynb files are taken), filtered by `only`. */
export function findNotebooks(paths: string[], only: string[] | undefined): string[] {
  const notebooks: string[] = [];

  for (const given of paths) {
    const absolute = path.resolve(given);
    if (!existsSync(absolute)) throw new UsageError(`Notebook path not found: ${given}`);

    if (statSync(absolute).isDirectory()) {
      const found = readdirSync(absolute)
        .filter((file) => file.endsWith('.ipynb'))
        .sort()
        .map((file) => path.join(absolute, file));
      if (found.length === 0) throw new UsageError(`No .ipynb files in folder ${given}.`);
      notebooks.push(...found);
    } else if (absolute.endsWith('.ipynb')) {
      notebooks.push(absolute);
    } else {
      throw new UsageError(`Not a notebook (expected a .ipynb file or a folder): ${given}`);
    }
  }

  // Reports are named after the notebook, so two notebooks with one name would overwrite each other.
  const byName = new Map<string, string>();
  for (const notebook of notebooks) {
    const previous = byName.get(notebookName(notebook));
    if (previous && previous !== notebook) {
      throw new UsageError(`Two notebooks would write the same report: ${previous} and ${notebook}.`);
    }
    byName.set(notebookName(notebook), notebook);
  }
  const unique = [...byName.values()];

  if (!only || only.length === 0) return unique;
  const wanted = only.map((name) => name.replace(/\.ipynb$/, ''));
  const unknown = wanted.filter((name) => !byName.has(name));
  if (unknown.length > 0) {
    throw new UsageError(`--only names no notebook: ${unknown.join(', ')}. Notebooks found: ${[...byName.keys()].join(', ')}.`);
  }
  return unique.filter((notebook) => wanted.includes(notebookName(notebook)));
}

// ---------------------------------------------------------------------------------------------
// Jupyter setup

/** Environment of the runner and the kernel: node_modules/.bin first on PATH (for `tslab`), and the profile. */
function kernelEnvironment(profile: ProfileName): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PATH: `${path.join(REPO_ROOT, 'node_modules', '.bin')}${path.delimiter}${process.env.PATH ?? ''}`,
    [PROFILE_VARIABLE]: profile,
  };
}

function kernelIsRegistered(kernel: string): boolean {
  const listing = spawnSync('jupyter', ['kernelspec', 'list', '--json'], { encoding: 'utf8' });
  if (listing.error || listing.status !== 0) return false;
  try {
    const specs = JSON.parse(listing.stdout) as { kernelspecs?: Record<string, unknown> };
    return Boolean(specs.kernelspecs?.[kernel]);
  } catch {
    return false;
  }
}

/** Runs scripts/setup-jupyter.sh when Jupyter or the tslab kernel is missing. */
function ensureKernel(kernel: string): void {
  if (kernelIsRegistered(kernel)) return;
  if (kernel !== 'tslab') {
    throw new UsageError(`Jupyter kernel "${kernel}" is not registered. Check 'jupyter kernelspec list'.`);
  }

  console.log(`reports: the tslab kernel is not registered, running ${displayPath(SETUP_SCRIPT)}`);
  const setup = spawnSync('bash', [SETUP_SCRIPT], { stdio: 'inherit' });
  if (setup.status !== 0 || !kernelIsRegistered(kernel)) {
    throw new UsageError(`Jupyter setup failed (exit status ${setup.status}). Run 'bash scripts/setup-jupyter.sh' as root and read its output.`);
  }
}

// ---------------------------------------------------------------------------------------------
// Running one notebook

interface RunnerOutcome {
  /** Outcome written by the runner, or undefined when the runner crashed, for example because the kernel did not start. */
  record?: ExecutionRecord;
  /** Last lines the runner printed on stderr, for the error message when `record` is missing. */
  stderrTail: string[];
}

/** Executes a notebook with scripts/execute-notebook.py, prefixing its progress lines with the notebook name. */
function runNotebook(notebookPath: string, executedPath: string, options: ReportOptions): Promise<RunnerOutcome> {
  const name = notebookName(notebookPath);
  const statusFolder = mkdtempSync(path.join(tmpdir(), 'modarch-report-'));
  const statusFile = path.join(statusFolder, 'status.json');
  const args = [
    '-u',
    RUNNER,
    '--input',
    notebookPath,
    '--output',
    executedPath,
    '--status-file',
    statusFile,
    '--kernel',
    options.kernel,
    '--cell-timeout',
    String(options.cellTimeout),
    '--startup-timeout',
    String(options.startupTimeout),
  ];

  return new Promise((resolve, reject) => {
    const runner = spawn(options.python, args, { env: kernelEnvironment(options.profile), stdio: ['ignore', 'inherit', 'pipe'] });
    const stderrTail: string[] = [];
    const started = Date.now();
    let currentCell = '';

    createInterface({ input: runner.stderr }).on('line', (line) => {
      console.log(`  [${name}] ${line}`);
      stderrTail.push(line);
      if (stderrTail.length > 30) stderrTail.shift();
      const cellStart = /^(cell \d+ of \d+) started/.exec(line);
      if (cellStart) currentCell = cellStart[1];
    });

    const heartbeat = setInterval(() => {
      const where = currentCell ? `, ${currentCell} running` : '';
      console.log(`  [${name}] still running after ${formatSeconds((Date.now() - started) / 1000)}${where}`);
    }, HEARTBEAT_MS);
    heartbeat.unref();

    runner.on('error', (error) => {
      clearInterval(heartbeat);
      reject(new UsageError(`Failed to start ${options.python}: ${error.message}. Pass --python with Debian's Python that has nbclient.`));
    });

    runner.on('close', () => {
      clearInterval(heartbeat);
      let record: ExecutionRecord | undefined;
      if (existsSync(statusFile)) record = JSON.parse(readFileSync(statusFile, 'utf8')) as ExecutionRecord;
      rmSync(statusFolder, { recursive: true, force: true });
      resolve({ record, stderrTail });
    });
  });
}

/** Describes the failing cell by number (from 1, over all cells), prompt and first source line. */
function describeFailure(notebook: Notebook, record: ExecutionRecord): string {
  if (record.cell_index === null) return record.message;
  const cell = notebook.cells[record.cell_index];
  const firstLine = joinText(cell?.source)
    .split('\n')
    .find((line) => line.trim() !== '');
  const prompt = cell?.execution_count ? `, In [${cell.execution_count}]` : '';
  const excerpt = firstLine ? `, starting "${firstLine.trim().slice(0, 80)}"` : '';
  return `cell ${record.cell_index + 1}${prompt}${excerpt}: ${record.message}`;
}

/** Returns a path relative to the working directory when it lies inside it, else the absolute path. */
function displayPath(filePath: string): string {
  const relative = path.relative(process.cwd(), filePath);
  return relative.startsWith('..') || path.isAbsolute(relative) ? filePath : relative;
}

function writeFileAtomically(filePath: string, text: string): void {
  const temporary = `${filePath}.tmp-${process.pid}`;
  writeFileSync(temporary, text);
  renameSync(temporary, filePath);
}

async function reportNotebook(notebookPath: string, options: ReportOptions): Promise<NotebookResult> {
  const name = notebookName(notebookPath);
  const started = Date.now();
  const executedPath = path.join(options.out, 'executed', `${name}.ipynb`);
  const htmlPath = path.join(options.out, `${name}.html`);
  const seconds = () => (Date.now() - started) / 1000;

  const { record, stderrTail } = await runNotebook(notebookPath, executedPath, options);
  if (!record) {
    const details = stderrTail.slice(-8).join('\n    ');
    return { name, seconds: seconds(), failure: `the runner stopped without writing its status (did the kernel start?). Last runner output:\n    ${details}` };
  }

  const notebook = JSON.parse(readFileSync(executedPath, 'utf8')) as Notebook;
  writeFileAtomically(htmlPath, notebookToHtml(notebook, { sourceName: path.basename(notebookPath) }));
  const failure = record.status === 'ok' ? undefined : describeFailure(notebook, record);
  return { name, seconds: seconds(), htmlPath, failure };
}

// ---------------------------------------------------------------------------------------------
// Command line

async function main(argv: string[]): Promise<number> {
  const program = new Command('reports')
    .description('Execute notebooks on the tslab Jupyter kernel and write a self-contained HTML report for each.')
    .addArgument(new Argument('[paths...]', 'notebook files or folders of notebooks').default([path.join(REPO_ROOT, 'notebooks')], 'notebooks/'))
    .option('--only <names>', 'comma-separated names of the notebooks to run, with or without .ipynb', parseNames)
    .addOption(
      new Option('--profile <name>', `training profile, passed to the notebooks as ${PROFILE_VARIABLE}`).choices(PROFILE_NAMES).default('standard'),
    )
    .addOption(
      new Option('--out <folder>', 'folder for NAME.html, with the executed notebooks in <folder>/executed').default(path.join(REPO_ROOT, 'reports'), 'reports/'),
    )
    .option('--cell-timeout <seconds>', 'maximum run time of one cell in seconds, 0 for no limit', parseSeconds, 3 * 3600)
    .option('--startup-timeout <seconds>', 'maximum time for the kernel to start, in seconds', parseSeconds, 120)
    .option('--kernel <name>', 'Jupyter kernel to run the notebooks on', 'tslab')
    .option('--python <path>', 'Python interpreter that has nbclient (Debian: python3-nbclient)', '/usr/bin/python3')
    .showHelpAfterError('(run with --help for usage)')
    // Invalid arguments exit with 2 like the other usage errors, and --help with 0.
    .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2))
    .parse(argv);

  const options = program.opts<ReportOptions>();
  options.out = path.resolve(options.out);
  const notebooks = findNotebooks(program.processedArgs[0] as string[], options.only);

  ensureKernel(options.kernel);
  mkdirSync(path.join(options.out, 'executed'), { recursive: true });

  const results: NotebookResult[] = [];
  for (const [i, notebookPath] of notebooks.entries()) {
    console.log(`[${i + 1}/${notebooks.length}] ${path.basename(notebookPath)}: executing with profile ${options.profile}`);
    const result = await reportNotebook(notebookPath, options);
    const outcome = result.failure ? `FAILED: ${result.failure}` : 'ok';
    console.log(`[${i + 1}/${notebooks.length}] ${path.basename(notebookPath)}: ${outcome} (${formatSeconds(result.seconds)})`);
    if (result.htmlPath) console.log(`    report: ${displayPath(result.htmlPath)}`);
    results.push(result);
  }

  const failed = results.filter((result) => result.failure);
  if (failed.length === 0) {
    console.log(`reports: ${results.length} notebook(s) ran without error.`);
    return 0;
  }
  console.error(`reports: ${failed.length} of ${results.length} notebook(s) failed:`);
  for (const result of failed) console.error(`  ${result.name}.ipynb: ${result.failure}`);
  return 1;
}

main(process.argv).then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      console.error(`reports: ${error.message}`);
      process.exitCode = 2;
      return;
    }
    throw error;
  },
);
