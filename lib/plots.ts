import { randomUUID } from 'crypto';
import { readFileSync } from 'fs';
import { SettingError } from './errors';

/**
 * Plotly figures as plain JSON, and their display in the tslab Jupyter kernel.
 *
 * `plotly.js-dist` is a browser bundle and cannot run in Node, so a figure leaves the kernel as
 * HTML: a `<div class="modarch-plot">` plus a script that calls `Plotly.newPlot` on it. The
 * first figure shown in a kernel process also carries the whole bundle (11 MB for
 * plotly.js-dist 3.7.0), so a notebook that plots only through `show` contains it exactly once.
 */

/** One Plotly trace, for example `{ type: 'scatter', x, y, name }`. */
export interface PlotTrace {
  type: string;
  [attribute: string]: unknown;
}

/** Plotly layout attributes. Titles follow Plotly 3 and are objects: `{ text: 'Accuracy' }`. */
export type PlotLayout = Record<string, unknown>;

/** Plotly config attributes, for example `{ responsive: true }`. */
export type PlotConfig = Record<string, unknown>;

/** A Plotly figure that serializes to JSON as it is. */
export interface PlotFigure {
  data: PlotTrace[];
  layout: PlotLayout;
  config?: PlotConfig;
}

/** Titles and size shared by the chart builders. */
export interface ChartOptions {
  title?: string;
  xTitle?: string;
  yTitle?: string;
  /** Height in CSS pixels. Default 450. */
  height?: number;
}

// ---------------------------------------------------------------------------------------------
// Colors

/** Display names of the model families. */
export type ModelFamily = 'Monolithic' | 'Modular' | 'Modular-op' | 'GT-Modular';

/** Color of each model family, the same in every chart (Okabe-Ito colors, safe for color blindness). */
export const MODEL_COLORS: Record<ModelFamily, string> = {
  Monolithic: '#0072B2',
  Modular: '#E69F00',
  'Modular-op': '#009E73',
  'GT-Modular': '#CC79A7',
};

/** Colors for series that are not a model family, used in order. */
export const SERIES_PALETTE = ['#56B4E9', '#D55E00', '#F0E442', '#000000', '#999999', '#8C564B', '#17BECF', '#7F7F7F'];

/**
 * Returns the model family that a series name starts with, case-insensitively, so that
 * `'modular-op'`, `'Modular-op'` and `'Modular-op (R=8)'` all give `'Modular-op'`. The longest
 * family name wins, which keeps `'Modular-op'` apart from `'Modular'`. Returns undefined
 * when no family matches.
 */
export function modelFamilyOf(seriesName: string): ModelFamily | undefined {
  const name = seriesName.trim().toLowerCase();
  const byLength = (Object.keys(MODEL_COLORS) as ModelFamily[]).sort((a, b) => b.length - a.length);

  for (const family of byLength) {
    const prefix = family.toLowerCase();
    if (!name.startsWith(prefix)) continue;
    const next = name.charAt(prefix.length);
    if (next === '' || !/[a-z0-9-]/.test(next)) return family;
  }
  return undefined;
}

/**
 * Returns the color of a series: its model family's color when the name starts with one,
 * else entry `fallbackIndex` of SERIES_PALETTE (wrapping around).
 */
export function colorForSeries(seriesName: string, fallbackIndex = 0): string {
  const family = modelFamilyOf(seriesName);
  if (family) return MODEL_COLORS[family];
  return SERIES_PALETTE[fallbackIndex % SERIES_PALETTE.length];
}

/** Colors for a list of series names: family colors first, the palette in order for the rest. */
function colorsForSeries(names: readonly string[], explicit: readonly (string | undefined)[]): string[] {
  let paletteIndex = 0;
  return names.map((name, i) => {
    if (explicit[i]) return explicit[i] as string;
    if (modelFamilyOf(name)) return colorForSeries(name);
    return colorForSeries(name, paletteIndex++);
  });
}

/** Converts `#rrggbb` to `rgba(r, g, b, alpha)`. Other color strings are returned unchanged. */
function withAlpha(color: string, alpha: number): string {
  const match = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
  if (!match) return color;
  const [red, green, blue] = match.slice(1).map((hex) => parseInt(hex, 16));
  return `rgba(${red}, ${green}, ${blue}, ${alpha})`;
}

// ---------------------------------------------------------------------------------------------
// Layout

const FONT_FAMILY = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
const DEFAULT_HEIGHT = 450;

function axisLayout(title: string | undefined): Record<string, unknown> {
  return {
    title: { text: title ?? '', standoff: 12, font: { size: 15 } },
    showline: true,
    linecolor: '#9ca3af',
    ticks: 'outside',
    tickcolor: '#9ca3af',
    gridcolor: '#e5e7eb',
    zeroline: false,
    automargin: true,
  };
}

/** Builds the layout that every builder starts from: white background, light grid, large fonts. */
function baseLayout(options: ChartOptions): PlotLayout {
  const height = options.height ?? DEFAULT_HEIGHT;
  if (!(Number.isFinite(height) && height >= 100)) {
    throw new SettingError('height', options.height, 'a number of CSS pixels >= 100');
  }

  return {
    title: { text: options.title ?? '', x: 0.02, xanchor: 'left', font: { size: 18 } },
    font: { family: FONT_FAMILY, size: 14, color: '#1f2937' },
    height,
    margin: { l: 70, r: 30, t: options.title ? 60 : 30, b: 60 },
    paper_bgcolor: '#ffffff',
    plot_bgcolor: '#ffffff',
    xaxis: axisLayout(options.xTitle),
    yaxis: axisLayout(options.yTitle),
    // A vertical legend right of the plot never overlaps the x-axis title, unlike one below it.
    legend: { orientation: 'v', x: 1.02, xanchor: 'left', y: 1, yanchor: 'top' },
    hoverlabel: { font: { family: FONT_FAMILY } },
  };
}

const DEFAULT_CONFIG: PlotConfig = {
  responsive: true,
  displaylogo: false,
  toImageButtonOptions: { format: 'svg' },
};

function requireFiniteArray(setting: string, values: unknown, length?: number): number[] {
  if (!Array.isArray(values)) throw new SettingError(setting, values, 'an array of numbers');
  if (length !== undefined && values.length !== length) {
    throw new SettingError(`${setting}.length`, values.length, `${length}, the length of the matching x values`);
  }
  values.forEach((value, i) => {
    // NaN is allowed: Plotly leaves a gap there, because JSON turns it into null.
    if (typeof value !== 'number' || value === Infinity || value === -Infinity) {
      throw new SettingError(`${setting}[${i}]`, value, 'a number (NaN leaves a gap)');
    }
  });
  return values as number[];
}

// ---------------------------------------------------------------------------------------------
// Chart builders

/** One line of a line chart. */
export interface Curve {
  name: string;
  x: number[];
  y: number[];
  /**
   * Half-width of the shaded band drawn from `y - error` to `y + error`, for example the
   * standard deviation over seeds. Same length as `y`.
   */
  error?: number[];
  /** Line color. Default: the model family color of `name`, else the next palette color. */
  color?: string;
  dash?: 'solid' | 'dash' | 'dot' | 'dashdot';
}

export interface LineChartOptions extends ChartOptions {
  xLog?: boolean;
  yLog?: boolean;
  /** Fixed y-axis range [min, max], in data units (log10 units when `yLog`). */
  yRange?: [number, number];
  /** Draws a marker at each point. Default: true when every curve has at most 30 points. */
  markers?: boolean;
}

/**
 * Builds a line chart with one line per curve and an optional error band around each.
 * Bands share their curve's legend entry, so hiding a curve hides its band too.
 *
 * @example
 * show(lineChart([{ name: 'Modular', x: steps, y: accuracy, error: accuracyStd }],
 *   { title: 'Test accuracy', xTitle: 'Training step', yTitle: 'Accuracy' }));
 */
export function lineChart(curves: Curve[], options: LineChartOptions = {}): PlotFigure {
  const colors = colorsForSeries(
    curves.map((curve) => curve.name),
    curves.map((curve) => curve.color),
  );
  const markers = options.markers ?? curves.every((curve) => curve.x.length <= 30);
  const data: PlotTrace[] = [];

  curves.forEach((curve, i) => {
    const x = requireFiniteArray(`curves[${i}].x`, curve.x);
    const y = requireFiniteArray(`curves[${i}].y`, curve.y, x.length);
    const legendgroup = `curve-${i}`;

    // The band goes first so that the line is drawn on top of it. It is one closed polygon:
    // the upper edge from left to right, then the lower edge from right to left.
    if (curve.error) {
      const error = requireFiniteArray(`curves[${i}].error`, curve.error, x.length);
      const upper = y.map((value, j) => value + error[j]);
      const lower = y.map((value, j) => value - error[j]);
      data.push({
        type: 'scatter',
        mode: 'lines',
        x: [...x, ...[...x].reverse()],
        y: [...upper, ...lower.reverse()],
        fill: 'toself',
        fillcolor: withAlpha(colors[i], 0.18),
        line: { width: 0, color: colors[i] },
        hoverinfo: 'skip',
        showlegend: false,
        legendgroup,
        name: `${curve.name} band`,
      });
    }

    data.push({
      type: 'scatter',
      mode: markers ? 'lines+markers' : 'lines',
      x,
      y,
      name: curve.name,
      legendgroup,
      line: { color: colors[i], width: 2.5, dash: curve.dash ?? 'solid' },
      marker: { size: 6, color: colors[i] },
    });
  });

  const layout = baseLayout(options);
  const xaxis = layout.xaxis as Record<string, unknown>;
  const yaxis = layout.yaxis as Record<string, unknown>;
  if (options.xLog) xaxis.type = 'log';
  if (options.yLog) yaxis.type = 'log';
  if (options.yRange) yaxis.range = requireFiniteArray('yRange', options.yRange, 2);
  layout.hovermode = 'x unified';

  return { data, layout, config: { ...DEFAULT_CONFIG } };
}

/** One group member of a grouped bar chart: one value per category. */
export interface BarSeries {
  name: string;
  values: number[];
  /** Symmetric error bar per value, for example the standard deviation over seeds. */
  errors?: number[];
  color?: string;
}

/** A horizontal reference line, such as the score of a random router. */
export interface ReferenceLine {
  value: number;
  label: string;
  color?: string;
}

export interface BarChartOptions extends ChartOptions {
  /** Fixed y-axis range [min, max]. */
  yRange?: [number, number];
  baseline?: ReferenceLine;
}

/**
 * Builds a grouped bar chart: one group per category, one bar per series, with optional error
 * bars and a dashed horizontal reference line across the whole plot (for example the
 * random router baseline). Categories are shown as text, so `[2, 4, 8]` stays three evenly
 * spaced groups.
 */
export function barChart(categories: (string | number)[], series: BarSeries[], options: BarChartOptions = {}): PlotFigure {
  const labels = categories.map(String);
  const colors = colorsForSeries(
    series.map((entry) => entry.name),
    series.map((entry) => entry.color),
  );

  const data: PlotTrace[] = series.map((entry, i) => {
    const values = requireFiniteArray(`series[${i}].values`, entry.values, labels.length);
    const trace: PlotTrace = {
      type: 'bar',
      x: labels,
      y: values,
      name: entry.name,
      marker: { color: colors[i], line: { width: 0 } },
    };
    if (entry.errors) {
      const errors = requireFiniteArray(`series[${i}].errors`, entry.errors, labels.length);
      trace.error_y = { type: 'data', array: errors, visible: true, color: '#374151', thickness: 1.5, width: 4 };
    }
    return trace;
  });

  const layout = baseLayout(options);
  layout.barmode = 'group';
  layout.bargap = 0.25;
  layout.bargroupgap = 0.05;
  (layout.xaxis as Record<string, unknown>).type = 'category';
  if (options.yRange) (layout.yaxis as Record<string, unknown>).range = requireFiniteArray('yRange', options.yRange, 2);

  if (options.baseline) {
    const { value, label } = options.baseline;
    requireFiniteArray('baseline.value', [value]);
    const color = options.baseline.color ?? '#6b7280';
    layout.shapes = [
      {
        type: 'line',
        xref: 'paper',
        x0: 0,
        x1: 1,
        yref: 'y',
        y0: value,
        y1: value,
        line: { color, width: 2, dash: 'dash' },
      },
    ];
    layout.annotations = [
      {
        xref: 'paper',
        x: 1,
        xanchor: 'right',
        yref: 'y',
        y: value,
        yanchor: 'bottom',
        text: label,
        showarrow: false,
        font: { size: 13, color },
        bgcolor: 'rgba(255, 255, 255, 0.8)',
      },
    ];
  }

  return { data, layout, config: { ...DEFAULT_CONFIG } };
}

export interface HeatmapOptions extends ChartOptions {
  /** Column labels, one per entry of a row of `z`. Default: 0, 1, 2, ... */
  xLabels?: (string | number)[];
  /** Row labels, one per row of `z`, drawn from top to bottom. Default: 0, 1, 2, ... */
  yLabels?: (string | number)[];
  /** A Plotly colorscale name. Default 'Viridis'. */
  colorscale?: string;
  /** Color range [min, max]. Default: the range of the data. */
  zRange?: [number, number];
  colorbarTitle?: string;
  /** Writes each value in its cell. Default: true when the matrix has at most 400 cells. */
  showValues?: boolean;
  /** Digits after the decimal point of the written values. Default 2. */
  valueDigits?: number;
}

/**
 * Builds a heatmap of the matrix `z` ([rows][columns]) with row 0 at the top, as a matrix is
 * printed, and each cell's value written inside it.
 */
export function heatmap(z: number[][], options: HeatmapOptions = {}): PlotFigure {
  if (!Array.isArray(z) || z.length === 0) throw new SettingError('z', z, 'a non-empty array of rows');
  const columnCount = Array.isArray(z[0]) ? z[0].length : 0;
  z.forEach((row, i) => requireFiniteArray(`z[${i}]`, row, columnCount));

  const xLabels = (options.xLabels ?? z[0].map((_, j) => j)).map(String);
  const yLabels = (options.yLabels ?? z.map((_, i) => i)).map(String);
  if (xLabels.length !== columnCount) throw new SettingError('xLabels.length', xLabels.length, `${columnCount}, the number of columns of z`);
  if (yLabels.length !== z.length) throw new SettingError('yLabels.length', yLabels.length, `${z.length}, the number of rows of z`);

  const digits = options.valueDigits ?? 2;
  if (!Number.isInteger(digits) || digits < 0 || digits > 10) throw new SettingError('valueDigits', digits, 'an integer from 0 to 10');
  const showValues = options.showValues ?? z.length * columnCount <= 400;

  const trace: PlotTrace = {
    type: 'heatmap',
    z,
    x: xLabels,
    y: yLabels,
    colorscale: options.colorscale ?? 'Viridis',
    colorbar: { title: { text: options.colorbarTitle ?? '' }, outlinewidth: 0 },
    xgap: 1,
    ygap: 1,
    hovertemplate: `%{y}, %{x}: %{z:.${digits}f}<extra></extra>`,
  };
  if (showValues) {
    trace.texttemplate = `%{z:.${digits}f}`;
    trace.textfont = { size: 13 };
  }
  if (options.zRange) {
    const [zmin, zmax] = requireFiniteArray('zRange', options.zRange, 2);
    trace.zmin = zmin;
    trace.zmax = zmax;
  }

  const layout = baseLayout(options);
  const xaxis = layout.xaxis as Record<string, unknown>;
  const yaxis = layout.yaxis as Record<string, unknown>;
  xaxis.type = 'category';
  xaxis.showgrid = false;
  yaxis.type = 'category';
  yaxis.showgrid = false;
  yaxis.autorange = 'reversed';

  return { data: [trace], layout, config: { ...DEFAULT_CONFIG } };
}

/** One slice of a pie chart. */
export interface PieSlice {
  label: string;
  value: number;
  color?: string;
}

export interface PieChartOptions {
  title?: string;
  height?: number;
  /** Fraction of the radius cut out of the center, from 0 (a full pie) to 0.9. Default 0. */
  hole?: number;
}

/** Builds a pie chart. Slices named after a model family get that family's color. */
export function pieChart(slices: PieSlice[], options: PieChartOptions = {}): PlotFigure {
  const values = requireFiniteArray(
    'slices[].value',
    slices.map((slice) => slice.value),
  );
  values.forEach((value, i) => {
    if (!(value >= 0)) throw new SettingError(`slices[${i}].value`, value, 'a number >= 0');
  });
  const hole = options.hole ?? 0;
  if (!(hole >= 0 && hole <= 0.9)) throw new SettingError('hole', options.hole, 'a number from 0 to 0.9');

  const labels = slices.map((slice) => slice.label);
  const colors = colorsForSeries(
    labels,
    slices.map((slice) => slice.color),
  );

  const layout = baseLayout({ title: options.title, height: options.height });
  delete layout.xaxis;
  delete layout.yaxis;
  layout.legend = { orientation: 'v', x: 1, xanchor: 'left', y: 0.5, yanchor: 'middle' };

  const trace: PlotTrace = {
    type: 'pie',
    labels,
    values,
    hole,
    sort: false,
    marker: { colors, line: { color: '#ffffff', width: 2 } },
    textinfo: 'label+percent',
    textposition: 'inside',
    insidetextorientation: 'horizontal',
    hovertemplate: '%{label}: %{value} (%{percent})<extra></extra>',
  };
  return { data: [trace], layout, config: { ...DEFAULT_CONFIG } };
}

// ---------------------------------------------------------------------------------------------
// HTML and display

/** Text of `plotly.js-dist`'s browser bundle, read on first use. */
let plotlyBundle: string | undefined;

/** Returns the text of the Plotly browser bundle, resolved from this package's dependencies. */
export function plotlyBundleText(): string {
  if (plotlyBundle === undefined) {
    const bundlePath = require.resolve('plotly.js-dist/plotly.js');
    plotlyBundle = readFileSync(bundlePath, 'utf8');
  }
  return plotlyBundle;
}

/** Serializes a value as JSON that can sit inside a `<script>` element: every `<` becomes `\u003c`. */
function scriptSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/**
 * Breaks up `</script` and `<!--` in code placed inside a `<script>` element, so that the HTML
 * parser cannot end the script early. String and regex literals keep their value.
 */
function scriptSafeCode(code: string): string {
  return code.replace(/<\/script/gi, '<\\/script').replace(/<!--/g, '<\\!--');
}

export interface FigureHtmlOptions {
  /** Puts the Plotly bundle in a `<script>` before the plot. Default false. */
  includePlotly?: boolean;
}

/**
 * Renders a figure as an HTML fragment: a `<div class="modarch-plot">` and a script that draws
 * it with `Plotly.newPlot`. Plotly must be loaded by this fragment (`includePlotly`) or by an
 * earlier one on the page. The script waits up to 10 s for `window.Plotly` and then writes a
 * message into the div.
 */
export function figureHtml(figure: PlotFigure, options: FigureHtmlOptions = {}): string {
  if (!figure || !Array.isArray(figure.data) || typeof figure.layout !== 'object' || figure.layout === null) {
    throw new SettingError('figure', figure, 'an object with a `data` array and a `layout` object');
  }
  const id = `modarch-plot-${randomUUID()}`;
  const height = typeof figure.layout.height === 'number' ? figure.layout.height : DEFAULT_HEIGHT;
  const parts: string[] = [];

  if (options.includePlotly) {
    parts.push(`<script type="text/javascript">\n${scriptSafeCode(plotlyBundleText())}\n</script>`);
  }

  parts.push(`<div class="modarch-plot" id="${id}" style="width: 100%; height: ${height}px;"></div>`);
  parts.push(`<script type="text/javascript">
(function () {
  var figure = ${scriptSafeJson({ config: DEFAULT_CONFIG, ...figure })};
  var element = document.getElementById(${JSON.stringify(id)});
  var waited = 0;
  function draw() {
    if (window.Plotly) {
      window.Plotly.newPlot(element, figure.data, figure.layout, figure.config);
    } else if (waited < 10000) {
      waited += 100;
      setTimeout(draw, 100);
    } else {
      element.textContent = 'Plotly is not loaded on this page. It is sent with the first plot of a kernel ' +
        'session: restart the kernel and run all cells.';
    }
  }
  draw();
})();
</script>`);
  return parts.join('\n');
}

interface TslabDisplay {
  html(html: string): void;
}

/** Sends HTML to the current tslab cell. tslab is required lazily so that modarch also loads outside a kernel. */
function displayHtml(html: string): void {
  let display: TslabDisplay;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    display = (require('tslab') as { display: TslabDisplay }).display;
  } catch (error) {
    throw new Error(`show() needs the tslab package, which failed to load: ${(error as Error).message}`);
  }

  try {
    display.html(html);
  } catch (error) {
    // tslab throws "Not ready" when no kernel runs this process.
    throw new Error(
      `show() and showTable() display only inside the tslab Jupyter kernel (tslab: ${(error as Error).message}). ` +
        'Outside a notebook, use figureHtml() or tableHtml() to get the HTML.',
    );
  }
}

// The flag lives on globalThis so that it stays true for the whole process even when
// modarch is loaded twice (through node_modules/modarch and through a direct path).
const PLOTLY_SENT = Symbol.for('modarch.plotlyBundleSent');
type FlagHolder = { [PLOTLY_SENT]?: boolean };

/**
 * Displays a figure in the current tslab notebook cell. The first call in a kernel process
 * also sends the Plotly bundle, and later plots reuse it from the page.
 */
export function show(figure: PlotFigure): void {
  const holder = globalThis as FlagHolder;
  const includePlotly = !holder[PLOTLY_SENT];
  displayHtml(figureHtml(figure, { includePlotly }));
  holder[PLOTLY_SENT] = true;
}

// ---------------------------------------------------------------------------------------------
// Tables

/** A table row: column name to cell value. */
export type TableRow = Record<string, unknown>;

/** The parts of a danfo.js DataFrame (or Series) that a table needs. */
export interface DataFrameLike {
  columns: string[];
  /** [rows][columns] for a DataFrame, [rows] for a Series. */
  values: unknown[];
  index?: (string | number)[];
}

export interface TableOptions {
  caption?: string;
  /** Significant digits of non-integer numbers. Default 4. */
  digits?: number;
  /** Rows shown before the table is cut, with a note giving the number left out. Default 500. */
  maxRows?: number;
}

const INTEGER_FORMAT = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/**
 * Formats a table cell. Integers get thousands separators (12,345). Other numbers keep
 * `digits` significant digits (0.9123), in exponent form below 0.001 or from 1e6 up (1.23e-5).
 * Null and undefined give an empty cell, objects their JSON.
 */
export function formatCell(value: unknown, digits = 4): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return formatNumber(value, digits);
  if (typeof value === 'bigint') return INTEGER_FORMAT.format(value);
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return String(value);
  if (value instanceof Date) return value.toISOString();
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function formatNumber(value: number, digits: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '∞' : '−∞';
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return INTEGER_FORMAT.format(value);

  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) {
    return value.toExponential(Math.max(digits - 2, 1));
  }
  return new Intl.NumberFormat('en-US', { maximumSignificantDigits: digits }).format(value);
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function isDataFrameLike(data: unknown): data is DataFrameLike {
  const candidate = data as DataFrameLike;
  return !Array.isArray(data) && typeof data === 'object' && data !== null && Array.isArray(candidate.columns) && Array.isArray(candidate.values);
}

/** Converts rows or a DataFrame to a header and a matrix of cells, with the index as a first column when it is not 0..n-1. */
function tableCells(data: readonly TableRow[] | DataFrameLike): { header: string[]; rows: unknown[][] } {
  if (isDataFrameLike(data)) {
    const isSeries = data.values.length > 0 && !Array.isArray(data.values[0]);
    const rows = isSeries ? data.values.map((value) => [value]) : (data.values as unknown[][]);
    const header = isSeries ? [data.columns[0] ?? 'value'] : [...data.columns];
    const index = data.index ?? [];
    const isDefaultIndex = index.every((label, i) => label === i);
    if (isDefaultIndex) return { header, rows };
    return { header: ['', ...header], rows: rows.map((row, i) => [index[i], ...row]) };
  }

  if (!Array.isArray(data)) throw new SettingError('data', data, 'an array of row objects or a danfo.js DataFrame');
  const header: string[] = [];
  const seen = new Set<string>();
  for (const row of data) {
    for (const key of Object.keys(row)) {
      if (!seen.has(key)) {
        seen.add(key);
        header.push(key);
      }
    }
  }
  return { header, rows: data.map((row) => header.map((key) => row[key])) };
}

const TABLE_STYLE = `<style>
.modarch-table { border-collapse: collapse; margin: 0.5em 0; font-size: 14px; font-variant-numeric: tabular-nums; }
.modarch-table-caption { font-weight: 600; font-size: 14px; margin: 0.75em 0 0.3em; }
.modarch-table th, .modarch-table td { padding: 0.3em 0.8em; border-bottom: 1px solid #e5e7eb; text-align: left; }
.modarch-table thead th { border-bottom: 2px solid #9ca3af; font-weight: 600; }
.modarch-table .number { text-align: right; }
.modarch-table tbody tr:nth-child(even) { background: #f9fafb; }
.modarch-table-note { color: #6b7280; font-size: 13px; }
</style>`;

/**
 * Renders rows (objects of column name to value) or a danfo.js DataFrame as an HTML table.
 * Columns are the union of the rows' keys in first-seen order. Cells are formatted by
 * `formatCell` and HTML-escaped, and columns of numbers are right-aligned.
 */
export function tableHtml(data: readonly TableRow[] | DataFrameLike, options: TableOptions = {}): string {
  const digits = options.digits ?? 4;
  if (!Number.isInteger(digits) || digits < 1 || digits > 21) throw new SettingError('digits', digits, 'an integer from 1 to 21');
  const maxRows = options.maxRows ?? 500;
  if (!Number.isInteger(maxRows) || maxRows < 1) throw new SettingError('maxRows', maxRows, 'an integer >= 1');

  const { header, rows } = tableCells(data);
  const shownRows = rows.slice(0, maxRows);

  // A column is right-aligned, header included, when all its non-empty cells are numbers.
  const numericColumns = header.map((_, j) => {
    const present = rows.map((row) => row[j]).filter((value) => value !== null && value !== undefined);
    return present.length > 0 && present.every((value) => typeof value === 'number' || typeof value === 'bigint');
  });
  const cellTag = (tag: 'th' | 'td', j: number, text: string) => `<${tag}${numericColumns[j] ? ' class="number"' : ''}>${escapeHtml(text)}</${tag}>`;

  // The caption is a paragraph above the table, not a <caption>, so that it is not wrapped to
  // the width of a narrow table.
  const lines: string[] = [TABLE_STYLE];
  if (options.caption) lines.push(`<p class="modarch-table-caption">${escapeHtml(options.caption)}</p>`);
  lines.push('<table class="modarch-table">');
  lines.push(`<thead><tr>${header.map((name, j) => cellTag('th', j, name)).join('')}</tr></thead>`);
  lines.push('<tbody>');
  for (const row of shownRows) {
    lines.push(`<tr>${row.map((value, j) => cellTag('td', j, formatCell(value, digits))).join('')}</tr>`);
  }
  lines.push('</tbody>', '</table>');

  if (rows.length > shownRows.length) {
    lines.push(`<p class="modarch-table-note">${rows.length - shownRows.length} more rows not shown (maxRows = ${maxRows}).</p>`);
  }
  return lines.join('\n');
}

/** Displays rows or a danfo.js DataFrame as a table in the current tslab notebook cell. */
export function showTable(data: readonly TableRow[] | DataFrameLike, options: TableOptions = {}): void {
  displayHtml(tableHtml(data, options));
}
