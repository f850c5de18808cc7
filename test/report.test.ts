import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import type { Notebook, NotebookOutput } from '../scripts/export-html';

// End-to-end tests of `scripts/reports.ts` with real Jupyter (Debian's nbclient), the tslab kernel,
// and Debian's Chromium to check that the reports draw offline. `bash scripts/setup-jupyter.sh`
// installs all three, and the reports command runs it itself when the kernel is not registered.

const REPO_ROOT = path.resolve(__dirname, '..');
const FIXTURES = path.join(__dirname, 'fixtures');
const NOTEBOOKS = path.join(REPO_ROOT, 'notebooks');
const CHROMIUM = '/usr/bin/chromium';

// Chromium must contact no host: no background services, no QUIC, and no name resolution at all.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--disable-default-apps',
  '--host-resolver-rules=MAP * ~NOTFOUND',
];

// The first characters of the bundle are its license header with the version, found nowhere else.
const PLOTLY_SIGNATURE = readFileSync(require.resolve('plotly.js-dist/plotly.js'), 'utf8').slice(0, 200);

interface CommandResult {
  status: number | null;
  output: string;
}

/** Runs `scripts/reports.ts` with `args` from the repository root, collecting stdout and stderr together. */
function runReports(args: string[]): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join('scripts', 'reports.ts'), ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, output }));
  });
}

function readNotebook(filePath: string): Notebook {
  return JSON.parse(readFileSync(filePath, 'utf8')) as Notebook;
}

function errorOutputs(notebook: Notebook): { cell: number; output: NotebookOutput }[] {
  return notebook.cells.flatMap((cell, index) =>
    (cell.outputs ?? []).filter((output) => output.output_type === 'error').map((output) => ({ cell: index + 1, output })),
  );
}

function countOccurrences(text: string, part: string): number {
  return text.split(part).length - 1;
}

/** Counts copies of the Plotly bundle in an executed notebook's text/html outputs. */
function plotlyCopiesInNotebook(notebook: Notebook): number {
  let copies = 0;
  for (const cell of notebook.cells) {
    for (const output of cell.outputs ?? []) {
      const html = output.data?.['text/html'];
      if (html === undefined) continue;
      copies += countOccurrences(Array.isArray(html) ? html.join('') : String(html), PLOTLY_SIGNATURE);
    }
  }
  return copies;
}

interface BrowserCheck {
  plots: number;
  drawnPlots: number;
  externalRequests: string[];
  consoleErrors: string[];
  pageErrors: string[];
  headings: string[];
  tableCells: string[];
  /** LaTeX source of each math element that the report rendered as MathML. */
  mathSources: string[];
}

/**
 * Opens a report in headless Chromium with a fresh profile. Every request that is not for a
 * local file is aborted and recorded. Waits up to 30 s for Plotly to draw every plot.
 */
async function checkInBrowser(htmlPath: string): Promise<BrowserCheck> {
  const profile = mkdtempSync(path.join(tmpdir(), 'modarch-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1200, height: 900 },
  });

  try {
    const check: BrowserCheck = {
      plots: 0,
      drawnPlots: 0,
      externalRequests: [],
      consoleErrors: [],
      pageErrors: [],
      headings: [],
      tableCells: [],
      mathSources: [],
    };
    const isLocal = (url: string) => /^(file|data|blob|about):/.test(url);
    await context.route('**/*', (route) => (isLocal(route.request().url()) ? route.continue() : route.abort()));
    context.on('request', (request) => {
      if (!isLocal(request.url())) check.externalRequests.push(request.url());
    });

    const page = await context.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error') check.consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => check.pageErrors.push(error.message));

    await page.goto(pathToFileURL(htmlPath).href, { waitUntil: 'load', timeout: 60_000 });
    await page
      .waitForFunction(
        () => Array.from(document.querySelectorAll('.modarch-plot')).every((plot) => plot.querySelector('.main-svg') !== null),
        undefined,
        { timeout: 30_000 },
      )
      .catch(() => undefined);

    check.plots = await page.locator('.modarch-plot').count();
    check.drawnPlots = await page.locator('.modarch-plot:has(.main-svg)').count();
    check.headings = await page.locator('h1').allTextContents();
    check.tableCells = await page.locator('table.modarch-table td').allTextContents();
    // KaTeX keeps the LaTeX source in the MathML annotation.
    check.mathSources = await page.locator('.markdown-cell .math math annotation').allTextContents();
    return check;
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

describe('reports command on fixture notebooks', () => {
  let outFolder: string;
  let run: CommandResult;

  before(async () => {
    outFolder = mkdtempSync(path.join(tmpdir(), 'modarch-reports-'));
    // The failing notebook goes first, to check that the command still reports the next one.
    run = await runReports([
      path.join(FIXTURES, 'report-failing.ipynb'),
      path.join(FIXTURES, 'report-plots.ipynb'),
      '--profile',
      'quick',
      '--out',
      outFolder,
      '--cell-timeout',
      '900',
    ]);
  });

  after(() => rmSync(outFolder, { recursive: true, force: true }));

  test('exits non-zero naming the failed cell', () => {
    assert.equal(run.status, 1, run.output);
    assert.match(run.output, /report-failing\.ipynb: cell 3, In \[2\]/);
    assert.match(run.output, /Error: fixture failure: this cell throws on purpose/);
    assert.doesNotMatch(run.output, /report-plots\.ipynb: cell/, 'the passing notebook is listed as failed');
  });

  test('failing notebook stops at the failed cell', () => {
    const notebook = readNotebook(path.join(outFolder, 'executed', 'report-failing.ipynb'));
    const errors = errorOutputs(notebook);
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0].cell, 3);
    assert.equal(errors[0].output.ename, 'Error');
    assert.equal(errors[0].output.evalue, 'fixture failure: this cell throws on purpose');
    assert.equal(notebook.cells[3].execution_count, null, 'the cell after the failure ran');
    assert.deepEqual(notebook.cells[3].outputs, []);
    assert.equal(notebook.metadata.modarch_execution?.status, 'error');
  });

  test('failing notebook report shows the error', () => {
    const html = readFileSync(path.join(outFolder, 'report-failing.html'), 'utf8');
    assert.match(html, /Execution stopped at <a href="#cell-3">cell 3<\/a>/);
    assert.match(html, /class="output-error"/);
    assert.match(html, /not run: an earlier cell failed/);
  });

  test('plots notebook runs without errors', () => {
    const notebook = readNotebook(path.join(outFolder, 'executed', 'report-plots.ipynb'));
    assert.deepEqual(errorOutputs(notebook), []);
    assert.equal(notebook.metadata.modarch_execution?.status, 'ok');
    assert.equal(notebook.metadata.modarch_execution?.profile, 'quick');

    const codeCells = notebook.cells.filter((cell) => cell.cell_type === 'code');
    for (const cell of codeCells) assert.equal(typeof cell.execution_count, 'number', `cell not executed: ${cell.source}`);
    const printed = (codeCells[1].outputs ?? []).map((output) => output.text).join('');
    assert.match(printed, /profile: quick/);
  });

  test('plotly bundle appears exactly once', () => {
    const html = readFileSync(path.join(outFolder, 'report-plots.html'), 'utf8');
    assert.equal(countOccurrences(html, PLOTLY_SIGNATURE), 1);
    const notebook = readNotebook(path.join(outFolder, 'executed', 'report-plots.ipynb'));
    assert.equal(plotlyCopiesInNotebook(notebook), 1);
  });

  test('report references no external resource', () => {
    const html = readFileSync(path.join(outFolder, 'report-plots.html'), 'utf8');
    // Reports are 11 MB, so a failure shows only the matching tag, not the whole file.
    const firstMatch = (pattern: RegExp) => pattern.exec(html)?.[0];
    assert.equal(firstMatch(/<script[^>]*\ssrc=[^>]*>/i), undefined);
    assert.equal(firstMatch(/<link[^>]*\shref=[^>]*>/i), undefined);
    assert.equal(firstMatch(/<img[^>]*\ssrc="(?!data:)[^>]*>/i), undefined);
    assert.equal(firstMatch(/@import[^;]*;/), undefined);
  });

  test('report draws every plot offline', async () => {
    const check = await checkInBrowser(path.join(outFolder, 'report-plots.html'));
    assert.deepEqual(check.externalRequests, []);
    assert.deepEqual(check.pageErrors, []);
    assert.deepEqual(check.consoleErrors, []);
    assert.equal(check.plots, 2);
    assert.equal(check.drawnPlots, 2);
    assert.deepEqual(check.headings, ['Report fixture']);
    assert.deepEqual(check.mathSources, ['h_t = f(x_t)']);
    assert.ok(check.tableCells.includes('123,456'), `table cells: ${check.tableCells.join(' | ')}`);
    assert.ok(check.tableCells.includes('0.8512'), `table cells: ${check.tableCells.join(' | ')}`);
    assert.ok(check.tableCells.includes('Modular <R=4>'), `table cells: ${check.tableCells.join(' | ')}`);
  });
});

describe('reports command on notebooks/', () => {
  const notebookNames = existsSync(NOTEBOOKS)
    ? readdirSync(NOTEBOOKS)
        .filter((file) => file.endsWith('.ipynb'))
        .sort()
    : [];

  if (notebookNames.length === 0) {
    test('every notebook in notebooks/', (t) => t.skip('notebooks/ contains no .ipynb file yet'));
    return;
  }

  let outFolder: string;
  let run: CommandResult;

  before(async () => {
    outFolder = mkdtempSync(path.join(tmpdir(), 'modarch-notebooks-'));
    run = await runReports([NOTEBOOKS, '--profile', 'quick', '--out', outFolder, '--cell-timeout', '1800']);
  });

  after(() => rmSync(outFolder, { recursive: true, force: true }));

  test('exits zero with quick profile', () => {
    assert.equal(run.status, 0, run.output);
  });

  for (const file of notebookNames) {
    const name = path.basename(file, '.ipynb');

    test(`${file} has no error outputs`, () => {
      const notebook = readNotebook(path.join(outFolder, 'executed', file));
      assert.deepEqual(errorOutputs(notebook), []);
      assert.equal(notebook.metadata.modarch_execution?.status, 'ok');
    });

    test(`${file} report draws offline`, async () => {
      const htmlPath = path.join(outFolder, `${name}.html`);
      const html = readFileSync(htmlPath, 'utf8');
      const check = await checkInBrowser(htmlPath);
      assert.deepEqual(check.externalRequests, []);
      assert.deepEqual(check.pageErrors, []);
      assert.deepEqual(check.consoleErrors, []);
      assert.equal(check.drawnPlots, check.plots);
      assert.equal(countOccurrences(html, PLOTLY_SIGNATURE), check.plots > 0 ? 1 : 0);
    });
  }
});
