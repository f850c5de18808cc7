import katex from 'katex';
import { Marked, Tokens } from 'marked';

/**
 * Converts an executed Jupyter notebook (nbformat 4) to one self-contained HTML page.
 *
 * The page loads nothing from the network: the stylesheet is inline, Markdown is rendered here
 * with `marked`, LaTeX with KaTeX to MathML (which browsers draw without extra fonts or
 * scripts), and images are data URLs. Unlike nbconvert's templates it needs no require.js or
 * MathJax.
 *
 * Code cells show their source. text/html outputs are inserted as they are, which is how the
 * Plotly figures of lib/plots.ts draw. text/plain, stream and error outputs are HTML-escaped,
 * with ANSI color codes removed.
 */

type MultilineText = string | string[];

/** One output of a code cell, as stored in an .ipynb file. */
export interface NotebookOutput {
  output_type: 'stream' | 'display_data' | 'execute_result' | 'error' | string;
  name?: 'stdout' | 'stderr' | string;
  text?: MultilineText;
  data?: Record<string, MultilineText | object>;
  execution_count?: number | null;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}

export interface NotebookCell {
  cell_type: 'code' | 'markdown' | 'raw' | string;
  source: MultilineText;
  metadata?: Record<string, unknown>;
  outputs?: NotebookOutput[];
  execution_count?: number | null;
  /** Files pasted into a Markdown cell: name to mime type to base64 data. */
  attachments?: Record<string, Record<string, string>>;
}

/** Outcome that scripts/execute-notebook.py stores in the notebook metadata. */
export interface ExecutionRecord {
  status: 'ok' | 'error' | 'timeout' | 'dead_kernel' | string;
  /** Index of the failing cell, counting from 0 over all cells, or null. */
  cell_index: number | null;
  message: string;
  profile?: string | null;
  kernel?: string;
  started_at?: string;
  seconds?: number;
}

export interface Notebook {
  cells: NotebookCell[];
  metadata: Record<string, unknown> & { modarch_execution?: ExecutionRecord };
  nbformat: number;
  nbformat_minor: number;
}

export interface ExportOptions {
  /** Name shown in the header, usually the notebook's file name. */
  sourceName: string;
  /** Page title. Default: the first Markdown heading, else `sourceName`. */
  title?: string;
}

/** Output mime types in order of preference: the first one present in an output is rendered. */
const MIME_PREFERENCE = [
  'text/html',
  'image/svg+xml',
  'image/png',
  'image/jpeg',
  'image/gif',
  'text/markdown',
  'application/javascript',
  'text/javascript',
  'text/latex',
  'application/json',
  'text/plain',
];

export function joinText(text: MultilineText | undefined): string {
  if (text === undefined) return '';
  return Array.isArray(text) ? text.join('') : text;
}

export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

// CSI sequences (colors, cursor moves) and OSC sequences (window titles, links).
const ANSI_PATTERN = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)/g;

/**
 * Prepares terminal text for a `<pre>`: removes ANSI escape codes, and keeps for each line
 * only the text after its last carriage return, as a terminal shows progress bars.
 */
export function terminalText(text: string): string {
  return text
    .replace(ANSI_PATTERN, '')
    .split('\n')
    .map((line) => {
      const segments = line.split('\r');
      for (let i = segments.length - 1; i >= 0; i--) {
        if (segments[i] !== '') return segments[i];
      }
      return '';
    })
    .join('\n');
}

function scriptSafeCode(code: string): string {
  return code.replace(/<\/script/gi, '<\\/script').replace(/<!--/g, '<\\!--');
}

// ---------------------------------------------------------------------------------------------
// Markdown

/** Renders LaTeX as MathML. An unknown command is drawn in red in place, so a typo does not stop the report. */
function renderTex(tex: string, displayMode: boolean): string {
  return katex.renderToString(tex, { displayMode, output: 'mathml', throwOnError: false });
}

const blockMath = {
  name: 'blockMath',
  level: 'block' as const,
  start: (source: string) => /\$\$/.exec(source)?.index,
  tokenizer(source: string) {
    const match = /^\$\$([\s\S]+?)\$\$(?:\n|$)/.exec(source);
    if (match) return { type: 'blockMath', raw: match[0], text: match[1].trim() };
    return undefined;
  },
  renderer: (token: Tokens.Generic) => `<div class="math display">${renderTex(token.text, true)}</div>\n`,
};

const inlineMath = {
  name: 'inlineMath',
  level: 'inline' as const,
  start: (source: string) => /\$/.exec(source)?.index,
  tokenizer(source: string) {
    // "$x_t$" is math, "costs $5 and $10" is not: the content may not start or end with a space.
    const match = /^\$\$([^$]+?)\$\$|^\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\d)/.exec(source);
    if (match) return { type: 'inlineMath', raw: match[0], text: match[1] ?? match[2] };
    return undefined;
  },
  renderer: (token: Tokens.Generic) => `<span class="math">${renderTex(token.text, false)}</span>`,
};

/**
 * Renders a Markdown cell. `$...$` and `$$...$$` are math, rendered by KaTeX before Markdown
 * emphasis can change them.
 * Images pasted into the cell become data URLs. Images from http(s) become links, so that the
 * page loads nothing from the network.
 */
export function renderMarkdown(source: string, attachments: NotebookCell['attachments'] = {}): string {
  const marked = new Marked({
    gfm: true,
    extensions: [blockMath, inlineMath],
    renderer: {
      image({ href, title, text }: Tokens.Image): string {
        const titleAttribute = title ? ` title="${escapeHtml(title)}"` : '';

        if (href.startsWith('attachment:')) {
          const files = attachments[decodeURIComponent(href.slice('attachment:'.length))] ?? {};
          const mimeType = Object.keys(files).find((type) => type.startsWith('image/'));
          if (mimeType) {
            return `<img src="data:${mimeType};base64,${files[mimeType]}" alt="${escapeHtml(text)}"${titleAttribute}>`;
          }
          return `<span class="missing-image">[missing attachment ${escapeHtml(href)}]</span>`;
        }

        if (/^([a-z][a-z0-9+.-]*:)?\/\//i.test(href) && !href.startsWith('file:')) {
          return `<a href="${escapeHtml(href)}"${titleAttribute}>[image: ${escapeHtml(text || href)}]</a>`;
        }
        return `<img src="${escapeHtml(href)}" alt="${escapeHtml(text)}"${titleAttribute}>`;
      },
    },
  });
  return marked.parse(source, { async: false });
}

// ---------------------------------------------------------------------------------------------
// Outputs

function renderMimeBundle(data: Record<string, MultilineText | object>): string {
  const mimeType = MIME_PREFERENCE.find((type) => type in data);
  if (!mimeType) {
    return `<pre class="output-text output-unknown">[output of type ${escapeHtml(Object.keys(data).join(', '))}, not shown]</pre>`;
  }
  const value = data[mimeType];
  const text = typeof value === 'string' || Array.isArray(value) ? joinText(value as MultilineText) : JSON.stringify(value, null, 2);

  switch (mimeType) {
    case 'text/html':
      return `<div class="output-html">${text}</div>`;
    case 'image/svg+xml':
      return `<div class="output-image">${text}</div>`;
    case 'image/png':
    case 'image/jpeg':
    case 'image/gif':
      return `<div class="output-image"><img src="data:${mimeType};base64,${text.replace(/\s/g, '')}" alt=""></div>`;
    case 'text/markdown':
      return `<div class="output-markdown">${renderMarkdown(text)}</div>`;
    case 'application/javascript':
    case 'text/javascript':
      return `<script type="text/javascript">\n${scriptSafeCode(text)}\n</script>`;
    default:
      return `<pre class="output-text">${escapeHtml(terminalText(text))}</pre>`;
  }
}

function renderError(output: NotebookOutput): string {
  const title = `${output.ename ?? 'Error'}: ${output.evalue ?? ''}`;
  const traceback = terminalText((output.traceback ?? []).join('\n')).trim();
  const details = traceback && traceback !== title ? `<pre>${escapeHtml(traceback)}</pre>` : '';
  return `<div class="output-error" role="alert"><div class="error-title">${escapeHtml(title)}</div>${details}</div>`;
}

export function renderOutput(output: NotebookOutput): string {
  switch (output.output_type) {
    case 'stream': {
      const name = output.name === 'stderr' ? 'stderr' : 'stdout';
      return `<pre class="output-stream ${name}">${escapeHtml(terminalText(joinText(output.text)))}</pre>`;
    }
    case 'display_data':
    case 'execute_result':
      return renderMimeBundle(output.data ?? {});
    case 'error':
      return renderError(output);
    default:
      return `<pre class="output-text output-unknown">[output of type ${escapeHtml(String(output.output_type))}, not shown]</pre>`;
  }
}

// ---------------------------------------------------------------------------------------------
// Cells and page

/** Seconds between the kernel turning busy and idle for a cell, from nbclient's record_timing metadata. */
function cellSeconds(cell: NotebookCell): number | undefined {
  const timing = cell.metadata?.execution as Record<string, string> | undefined;
  const start = Date.parse(timing?.['iopub.status.busy'] ?? '');
  const end = Date.parse(timing?.['iopub.status.idle'] ?? timing?.['shell.execute_reply'] ?? '');
  if (Number.isNaN(start) || Number.isNaN(end)) return undefined;
  return (end - start) / 1000;
}

export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

type CellState = 'ran' | 'failed' | 'not-run';

function renderCodeCell(cell: NotebookCell, number: number, state: CellState): string {
  const source = joinText(cell.source);
  const count = cell.execution_count ?? ' ';
  const seconds = cellSeconds(cell);
  const labelParts = [`<span class="prompt">In [${count}]</span>`];
  if (seconds !== undefined) labelParts.push(`<span class="cell-time">${formatSeconds(seconds)}</span>`);
  if (state === 'failed') labelParts.push('<span class="cell-status failed">failed</span>');
  if (state === 'not-run') labelParts.push('<span class="cell-status not-run">not run: an earlier cell failed</span>');

  const outputs = (cell.outputs ?? []).map(renderOutput).join('\n');
  return [
    `<section class="cell code-cell ${state}" id="cell-${number}">`,
    `<div class="cell-label">${labelParts.join(' ')}</div>`,
    `<pre class="source"><code class="language-typescript">${escapeHtml(source)}</code></pre>`,
    outputs ? `<div class="outputs">\n${outputs}\n</div>` : '',
    '</section>',
  ].join('\n');
}

function renderCell(cell: NotebookCell, index: number, failedIndex: number | null): string {
  const number = index + 1;
  const source = joinText(cell.source);

  if (cell.cell_type === 'markdown') {
    return `<section class="cell markdown-cell" id="cell-${number}">\n${renderMarkdown(source, cell.attachments)}\n</section>`;
  }
  if (cell.cell_type === 'raw') {
    // Raw cells reach HTML only when marked as HTML, as in nbconvert.
    const format = (cell.metadata?.format ?? cell.metadata?.raw_mimetype) as string | undefined;
    return format === 'text/html' ? `<section class="cell raw-cell" id="cell-${number}">${source}</section>` : '';
  }

  let state: CellState = 'ran';
  if (failedIndex !== null && index === failedIndex) state = 'failed';
  if (failedIndex !== null && index > failedIndex && source.trim() !== '') state = 'not-run';
  return renderCodeCell(cell, number, state);
}

function firstHeading(notebook: Notebook): string | undefined {
  for (const cell of notebook.cells) {
    if (cell.cell_type !== 'markdown') continue;
    const match = /^#{1,6}\s+(.+?)\s*#*\s*$/m.exec(joinText(cell.source));
    if (match) return match[1].replace(/[*_`]/g, '');
  }
  return undefined;
}

function renderHeader(notebook: Notebook, options: ExportOptions): string {
  const record = notebook.metadata.modarch_execution;
  const facts = [`<span>${escapeHtml(options.sourceName)}</span>`];
  if (record?.profile) facts.push(`<span>profile <strong>${escapeHtml(record.profile)}</strong></span>`);
  if (record?.started_at) facts.push(`<span>executed ${escapeHtml(record.started_at.replace('T', ' ').replace('+00:00', ' UTC'))}</span>`);
  if (record?.seconds !== undefined) facts.push(`<span>run time ${formatSeconds(record.seconds)}</span>`);

  const lines = [`<header class="report-header">`, `<p class="report-facts">${facts.join('<span class="separator">·</span>')}</p>`];
  if (record && record.status !== 'ok') {
    let where = 'kernel start';
    if (record.cell_index !== null) {
      const count = notebook.cells[record.cell_index]?.execution_count;
      where = `<a href="#cell-${record.cell_index + 1}">cell ${record.cell_index + 1}</a>${count ? ` (In [${count}])` : ''}`;
    }
    const message = escapeHtml(record.message.replace(/\.\s*$/, ''));
    lines.push(
      `<div class="report-failure" role="alert"><strong>Execution stopped at ${where}.</strong> ${message}. ` +
        'Cells after it did not run, so this report is incomplete.</div>',
    );
  }
  lines.push('</header>');
  return lines.join('\n');
}

/** Renders a whole notebook as a self-contained HTML document. */
export function notebookToHtml(notebook: Notebook, options: ExportOptions): string {
  if (!Array.isArray(notebook.cells)) {
    throw new Error(`Invalid notebook ${options.sourceName}: it has no "cells" array (is it nbformat 4?).`);
  }
  const title = options.title ?? firstHeading(notebook) ?? options.sourceName;
  const record = notebook.metadata.modarch_execution;
  const failedIndex = record && record.status !== 'ok' ? record.cell_index : null;
  const cells = notebook.cells.map((cell, index) => renderCell(cell, index, failedIndex)).filter((html) => html !== '');

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="modarch scripts/reports.ts">
<title>${escapeHtml(title)}</title>
<style>
${STYLESHEET}
</style>
</head>
<body>
<main class="report">
${renderHeader(notebook, options)}
${cells.join('\n')}
</main>
</body>
</html>
`;
}

const STYLESHEET = `
:root {
  --text: #1f2937;
  --muted: #6b7280;
  --border: #e5e7eb;
  --code-background: #f6f8fa;
  --accent: #2563eb;
  --error: #b91c1c;
  --error-background: #fef2f2;
  --warning-background: #fffbeb;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0;
  background: #ffffff;
  color: var(--text);
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 16px;
  line-height: 1.6;
}
.report { max-width: 1040px; margin: 0 auto; padding: 2rem 1.5rem 4rem; }
.report-header { border-bottom: 1px solid var(--border); margin-bottom: 1.5rem; padding-bottom: 0.75rem; }
.report-facts { color: var(--muted); font-size: 0.9rem; margin: 0; }
.report-facts .separator { margin: 0 0.5em; }
.report-failure {
  margin-top: 0.75rem; padding: 0.75rem 1rem; border-left: 4px solid var(--error);
  background: var(--error-background); color: var(--error);
}
.report-failure a { color: inherit; }
.cell { margin: 1.25rem 0; }
.markdown-cell h1 { font-size: 2rem; line-height: 1.25; margin: 1.5rem 0 0.75rem; }
.markdown-cell h2 { font-size: 1.5rem; line-height: 1.3; margin: 2rem 0 0.5rem; padding-bottom: 0.25rem; border-bottom: 1px solid var(--border); }
.markdown-cell h3 { font-size: 1.2rem; margin: 1.5rem 0 0.5rem; }
.markdown-cell p, .markdown-cell ul, .markdown-cell ol { margin: 0.6rem 0; }
.markdown-cell a { color: var(--accent); }
.markdown-cell code { background: var(--code-background); padding: 0.1em 0.35em; border-radius: 4px; font-size: 0.9em; }
.markdown-cell pre code { padding: 0; background: none; }
.markdown-cell pre { background: var(--code-background); padding: 0.75rem 1rem; border-radius: 6px; overflow-x: auto; }
.markdown-cell blockquote { margin: 0.75rem 0; padding: 0 1rem; border-left: 4px solid var(--border); color: var(--muted); }
.markdown-cell table { border-collapse: collapse; }
.markdown-cell th, .markdown-cell td { border: 1px solid var(--border); padding: 0.3rem 0.7rem; }
.markdown-cell img { max-width: 100%; }
.math math { font-size: 1.08em; }
.math.display { display: block; margin: 0.75rem 0; overflow-x: auto; }
pre, code { font-family: ui-monospace, "SFMono-Regular", "JetBrains Mono", Menlo, Consolas, "Liberation Mono", monospace; }
.cell-label { color: var(--muted); font-size: 0.8rem; margin-bottom: 0.2rem; display: flex; gap: 0.75rem; align-items: baseline; }
.prompt { font-family: ui-monospace, Menlo, Consolas, monospace; }
.cell-status { font-weight: 600; }
.cell-status.failed { color: var(--error); }
.cell-status.not-run { color: var(--muted); font-style: italic; }
.source {
  margin: 0; padding: 0.75rem 1rem; background: var(--code-background); border: 1px solid var(--border);
  border-radius: 6px; font-size: 0.86rem; line-height: 1.5; overflow-x: auto;
}
.code-cell.failed .source { border-color: var(--error); }
.code-cell.not-run .source { opacity: 0.6; }
.outputs { margin-top: 0.5rem; padding-left: 0.75rem; border-left: 3px solid var(--border); }
.outputs > * + * { margin-top: 0.5rem; }
.output-stream, .output-text {
  margin: 0; padding: 0.4rem 0.6rem; font-size: 0.84rem; line-height: 1.45;
  white-space: pre-wrap; word-break: break-word; max-height: 32rem; overflow-y: auto;
}
.output-stream.stderr { background: var(--warning-background); }
.output-html { overflow-x: auto; }
.output-image img { max-width: 100%; }
.output-error { border: 1px solid var(--error); border-radius: 6px; background: var(--error-background); color: var(--error); }
.output-error .error-title { font-weight: 600; padding: 0.5rem 0.75rem; }
.output-error pre { margin: 0; padding: 0 0.75rem 0.6rem; font-size: 0.84rem; white-space: pre-wrap; }
.modarch-plot { margin: 0.25rem 0; }
@media print {
  .report { max-width: none; padding: 0; }
  .cell { break-inside: avoid; }
}
`;
