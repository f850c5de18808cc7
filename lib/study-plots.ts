import { munkres } from 'munkres';
import { SettingError } from './errors';
import { barChart, BarSeries, Curve, heatmap, lineChart, PlotFigure, PlotTrace, ReferenceLine } from './plots';
import { RouterMetrics, SPECIALIZATION_METRICS, SpecializationMetricKey } from './metrics';
import { MODEL_LABELS } from './models/types';
import { RandomStream, streamKey } from './random';
import { meanInterval, MeanInterval } from './statistics';
import { Task } from './tasks/types';
import { RunRecord } from './train';

const LABEL_ORDER = Object.values(MODEL_LABELS);

function ruleCounts(records: RunRecord[]): number[] {
  return [...new Set(records.map((record) => record.task.ruleCount))].sort((a, b) => a - b);
}

function modelLabels(records: RunRecord[], modularOnly = false): string[] {
  const present = new Set(records.filter((record) => !modularOnly || record.metrics).map((record) => record.model.label));
  return LABEL_ORDER.filter((label) => present.has(label));
}

/** Returns error bars of 95% half-widths, or none when no bar averages more than one run (its half-width is 0). */
function errorBars(stats: MeanInterval[]): number[] | undefined {
  if (!stats.some((s) => s.count > 1)) return undefined;
  return stats.map((s) => (s.count > 1 ? s.halfWidth : 0));
}

/** Axis title of the performance measure. */
function performanceTitle(records: RunRecord[]): string {
  return records[0]?.task.mode === 'regression' ? 'L1 loss' : 'Error (%)';
}

/** Returns the performance measure as it reads inside a title or sentence, keeping the capital L of L1. */
function performanceNoun(records: RunRecord[]): string {
  return records[0]?.task.mode === 'regression' ? 'L1 loss' : 'error (%)';
}

/**
 * Plots a training curve per model for one rule count, averaged over seeds with a 95% band:
 * `curve` is the training loss, or the ID or OoD validation performance.
 */
export function trainingCurvesFigure(
  records: RunRecord[],
  rules: number,
  curve: 'trainLoss' | 'idPerformance' | 'oodPerformance' = 'trainLoss',
): PlotFigure {
  const selected = records.filter((record) => record.task.ruleCount === rules);
  const curves: Curve[] = modelLabels(selected).map((label) => {
    const runs = selected.filter((record) => record.model.label === label);
    const steps = runs[0].curves.step;
    const stats = steps.map((_, i) => meanInterval(runs.map((run) => run.curves[curve][i])));
    return { name: label, x: steps, y: stats.map((s) => s.mean), error: runs.length > 1 ? stats.map((s) => s.halfWidth) : undefined };
  });
  const yTitle = curve === 'trainLoss' ? 'Training loss' : `${curve === 'idPerformance' ? 'ID' : 'OoD'} ${performanceNoun(selected)}`;
  return lineChart(curves, { title: `${yTitle} during training, ${rules} rules`, xTitle: 'Step', yTitle, yLog: curve === 'trainLoss' });
}

/** Options of `performanceFigure`. */
export interface PerformanceFigureOptions {
  /** A dashed reference line across the bars, such as the error of chance guessing. */
  baseline?: ReferenceLine;
}

/** Bars of ID or OoD performance per rule count and model, with 95% intervals over seeds. */
export function performanceFigure(records: RunRecord[], split: 'id' | 'ood', options: PerformanceFigureOptions = {}): PlotFigure {
  const counts = ruleCounts(records);
  const series: BarSeries[] = modelLabels(records).map((label) => {
    const stats = counts.map((rules) =>
      meanInterval(records.filter((r) => r.model.label === label && r.task.ruleCount === rules).map((r) => r[split].performance)),
    );
    return { name: label, values: stats.map((s) => s.mean), errors: errorBars(stats) };
  });
  const name = split === 'id' ? 'In-distribution' : 'Out-of-distribution';
  return barChart(counts, series, {
    title: `${name} ${performanceNoun(records)}`,
    xTitle: 'Number of rules',
    yTitle: performanceTitle(records),
    baseline: options.baseline,
  });
}

/** Options of `lengthFigure`. */
export interface LengthFigureOptions {
  /** Data to plot: ID (solid lines), OoD (dashed lines, inputs scaled by 2) or both. Default both. */
  splits?: Array<'id' | 'ood'>;
  /** A dashed horizontal reference line, such as the error of chance guessing. */
  baseline?: ReferenceLine;
}

/**
 * Plots performance against sequence length for one rule count: a line per model and split,
 * from the `perLength` scores of sequence-task records, averaged over seeds with a 95% band.
 * ID lines are solid and OoD lines dashed, and a dotted vertical line marks the training length.
 */
export function lengthFigure(records: RunRecord[], rules: number, options: LengthFigureOptions = {}): PlotFigure {
  const selected = records.filter((record) => record.task.ruleCount === rules);
  if (selected.length === 0) {
    throw new SettingError('rules', rules, `a rule count of the records (${ruleCounts(records).join(', ')})`);
  }
  const lengths = [...new Set(selected.flatMap((record) => record.perLength.map((entry) => entry.length)))].sort((a, b) => a - b);
  if (lengths.length < 2) {
    throw new SettingError('records', `${lengths.length} evaluated length`, 'records of a sequence task scored at 2 or more lengths');
  }
  const splits = options.splits ?? ['id', 'ood'];

  const curves: Curve[] = [];
  for (const label of modelLabels(selected)) {
    const runs = selected.filter((record) => record.model.label === label);
    for (const split of splits) {
      const stats = lengths.map((length) =>
        meanInterval(runs.map((run) => run.perLength.find((entry) => entry.length === length)?.[split].performance)),
      );
      curves.push({
        name: `${label} ${split === 'id' ? 'ID' : 'OoD'}`,
        x: lengths,
        y: stats.map((s) => s.mean),
        error: runs.length > 1 ? stats.map((s) => s.halfWidth) : undefined,
        dash: split === 'id' ? 'solid' : 'dash',
      });
    }
  }

  let splitName = 'ID (solid) and OoD (dashed)';
  if (splits.length === 1) splitName = splits[0] === 'id' ? 'ID' : 'OoD';
  const figure = lineChart(curves, {
    title: `${splitName} ${performanceNoun(selected)} against sequence length, ${rules} rules`,
    xTitle: 'Sequence length',
    yTitle: performanceTitle(selected),
  });
  (figure.layout.xaxis as Record<string, unknown>).tickvals = lengths;

  const shapes: Array<Record<string, unknown>> = [];
  const annotations: Array<Record<string, unknown>> = [];
  const trainLength = Number(selected[0].task.trainLength);
  if (Number.isFinite(trainLength)) {
    const color = '#6b7280';
    shapes.push({ type: 'line', xref: 'x', x0: trainLength, x1: trainLength, yref: 'paper', y0: 0, y1: 1, line: { color, width: 1.5, dash: 'dot' } });
    annotations.push({
      xref: 'x',
      x: trainLength,
      xanchor: 'left',
      yref: 'paper',
      y: 1,
      yanchor: 'top',
      text: ' training length',
      showarrow: false,
      font: { size: 12, color },
    });
  }
  if (options.baseline) {
    const { value, label } = options.baseline;
    const color = options.baseline.color ?? '#6b7280';
    shapes.push({ type: 'line', xref: 'paper', x0: 0, x1: 1, yref: 'y', y0: value, y1: value, line: { color, width: 2, dash: 'dash' } });
    annotations.push({
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
    });
  }
  figure.layout.shapes = shapes;
  figure.layout.annotations = annotations;
  return figure;
}

/** Heatmap of a run's activation matrix P scaled by R, so perfect specialization shows ones on a permutation. */
export function activationFigure(record: RunRecord): PlotFigure {
  if (!record.metrics) throw new Error(`${record.model.label} has no modules, so it has no activation matrix.`);
  const rules = record.task.ruleCount;
  const scaled = record.metrics.activationMatrix.map((row) => row.map((value) => value * rules));
  return heatmap(scaled, {
    title: `${record.model.label}, ${rules} rules: R x P`,
    xTitle: 'Module',
    yTitle: 'True rule',
    colorbarTitle: 'R x P',
    zRange: [0, 1],
    height: 360,
  });
}

/**
 * Bars of one specialization metric per rule count for each modular model, next to the
 * uniform random router. Lower is better.
 */
export function metricFigure(records: RunRecord[], metric: SpecializationMetricKey, baselines: Record<number, RouterMetrics>): PlotFigure {
  const counts = ruleCounts(records);
  const series: BarSeries[] = modelLabels(records, true).map((label) => {
    const stats = counts.map((rules) =>
      meanInterval(records.filter((r) => r.model.label === label && r.task.ruleCount === rules).map((r) => r.metrics?.[metric])),
    );
    return { name: label, values: stats.map((s) => s.mean), errors: errorBars(stats) };
  });
  series.push({ name: 'Random router', values: counts.map((rules) => baselines[rules][metric]), color: '#9ca3af' });
  const info = SPECIALIZATION_METRICS.find((entry) => entry.key === metric);
  return barChart(counts, series, { title: `${info?.label ?? metric} (lower is better)`, xTitle: 'Number of rules', yTitle: info?.label ?? metric, height: 380 });
}

/**
 * Returns the module matched to each rule: the one-to-one assignment of rules to modules with the
 * largest total activation, as the alignment metric uses. `activationMatrix` is [rule][module],
 * R x R, and entry g of the result is the module of rule g.
 */
export function matchRulesToModules(activationMatrix: number[][]): number[] {
  const ruleCount = activationMatrix.length;
  if (ruleCount === 0 || activationMatrix.some((row) => !Array.isArray(row) || row.length !== ruleCount)) {
    throw new SettingError('activationMatrix', activationMatrix, 'a square [rule][module] matrix with at least one row');
  }

  // munkres minimizes cost, so negate the activations to maximize their total.
  const matched = new Array<number>(ruleCount).fill(-1);
  for (const [rule, module] of munkres(activationMatrix.map((row) => row.map((value) => -value)))) matched[rule] = module;
  return matched;
}

/** Options of `moduleTimelineFigure`. */
export interface ModuleTimelineOptions {
  title?: string;
  /**
   * Module matched to each rule (see `matchRulesToModules`). When given, a marker on the heatmap
   * shows, at every step, the module matched to that step's true rule.
   */
  matchedModules?: number[];
  /** Height in CSS pixels. Default 520. */
  height?: number;
}

/**
 * Plots how a model routes one sequence: a heatmap of module weights (modules x steps, 0 to 1)
 * above a strip with the true rule of each step. Shapes: `moduleWeights` [steps][modules], as a
 * model's `moduleWeights[b]` for one sequence b, and `rules` [steps].
 */
export function moduleTimelineFigure(moduleWeights: number[][], rules: ArrayLike<number>, options: ModuleTimelineOptions = {}): PlotFigure {
  const stepCount = moduleWeights.length;
  const moduleCount = stepCount > 0 ? moduleWeights[0].length : 0;
  if (stepCount === 0 || moduleCount === 0) throw new SettingError('moduleWeights', moduleWeights, 'a non-empty [steps][modules] array');
  if (rules.length !== stepCount) throw new SettingError('rules.length', rules.length, `${stepCount}, one rule per step of moduleWeights`);
  const ruleList = Array.from(rules);
  const matched = options.matchedModules;
  if (matched && (matched.length !== moduleCount || ruleList.some((rule) => !(rule >= 0 && rule < matched.length)))) {
    throw new SettingError('matchedModules', matched, `one module per rule (${moduleCount} entries) covering every rule in rules`);
  }

  const stepLabels = Array.from({ length: stepCount }, (_, t) => String(t + 1));
  const moduleLabels = Array.from({ length: moduleCount }, (_, m) => `module ${m}`);
  const byModule = moduleLabels.map((_, m) => moduleWeights.map((step) => step[m]));
  const figure = heatmap(byModule, {
    title: options.title,
    xLabels: stepLabels,
    yLabels: moduleLabels,
    xTitle: 'Step',
    colorbarTitle: 'Weight',
    zRange: [0, 1],
    showValues: stepCount * moduleCount <= 120,
    valueDigits: 1,
    height: options.height ?? 520,
  });

  // Two panels on one step axis: module weights on top and the true rule in a strip below.
  const weightsTrace = figure.data[0];
  weightsTrace.colorbar = { ...(weightsTrace.colorbar as Record<string, unknown>), y: 1, yanchor: 'top', len: 0.62 };
  const rulePanel: PlotTrace = {
    type: 'scatter',
    mode: 'lines+markers+text',
    x: stepLabels,
    y: ruleList,
    text: ruleList.map(String),
    textposition: 'middle center',
    textfont: { color: '#ffffff', size: 10 },
    line: { shape: 'hvh', color: '#9ca3af', width: 1.5 },
    marker: { size: 16, color: '#374151' },
    xaxis: 'x',
    yaxis: 'y2',
    name: 'True rule',
    showlegend: false,
    hovertemplate: 'step %{x}: rule %{y}<extra></extra>',
  };
  figure.data.push(rulePanel);
  if (matched) {
    figure.data.push({
      type: 'scatter',
      mode: 'markers',
      x: stepLabels,
      y: ruleList.map((rule) => moduleLabels[matched[rule]]),
      marker: { symbol: 'circle-open', size: 26, color: '#ff3b30', line: { width: 3 } },
      name: "Module matched to the step's rule",
      hovertemplate: "step %{x}: the rule's matched module is %{y}<extra></extra>",
    });
  }

  const layout = figure.layout;
  const xaxis = layout.xaxis as Record<string, unknown>;
  const yaxis = layout.yaxis as Record<string, unknown>;
  yaxis.domain = [0.38, 1];
  xaxis.anchor = 'y2';
  layout.yaxis2 = {
    domain: [0, 0.28],
    anchor: 'x',
    title: { text: 'True rule', standoff: 12, font: { size: 15 } },
    range: [moduleCount - 0.5, -0.5],
    tickvals: Array.from({ length: moduleCount }, (_, r) => r),
    showgrid: true,
    gridcolor: '#e5e7eb',
    zeroline: false,
    showline: true,
    linecolor: '#9ca3af',
    automargin: true,
  };
  layout.legend = { orientation: 'h', x: 0, xanchor: 'left', y: -0.18, yanchor: 'top' };
  return figure;
}

/**
 * Estimates the classification error of chance guessing, in %: the error of always predicting
 * the more frequent label, measured on `tokenCount` fresh tokens (or samples) of `task`. It is
 * about 50% for the benchmark's linear rules, whose labels are symmetric, and can be far lower
 * for custom rules.
 */
export function chanceError(task: Task, tokenCount = 65536): number {
  if (task.mode !== 'classification') throw new SettingError('task.mode', task.mode, '"classification"; regression has no chance error');
  const batchSize = Math.ceil(tokenCount / task.trainLength);
  const data = task.sample(new RandomStream(streamKey('chance-error', task.describe().dataSeed)), batchSize);
  const positives = data.targets.reduce((total, label) => total + label, 0);
  const share = positives / data.targets.length;
  return 100 * Math.min(share, 1 - share);
}

/** Options of `studyFindings`. */
export interface StudyFindingOptions {
  /**
   * Error of chance guessing in % (see `chanceError`), quoted next to the classification errors:
   * one value for every rule count, or one per rule count.
   */
  chanceError?: number | Record<number, number>;
}

/**
 * States in Markdown, one bullet per line, what a study's records show for the benchmark's
 * hypotheses. The lines name the model with the lowest ID performance per rule count, say whether
 * the benefit of GT-Modular over Monolithic grows with the number of rules and compare Modular
 * with Monolithic. They place Modular and Modular-op between perfect specialization and the
 * random router, and for sequence tasks they state how performance changes with length. Values
 * are means over seeds. A line is left out when its models are absent.
 */
export function studyFindings(
  records: RunRecord[],
  baselines: Record<number, RouterMetrics>,
  options: StudyFindingOptions = {},
): string[] {
  const counts = ruleCounts(records);
  if (counts.length === 0) throw new SettingError('records', records, 'a non-empty list of run records');
  const regression = records[0].task.mode === 'regression';
  const formatPerformance = (value: number) => (regression ? `L1 ${value.toFixed(3)}` : `${value.toFixed(1)}%`);
  const formatDifference = (value: number) => (regression ? value.toFixed(3) : `${value.toFixed(1)} points`);
  const statsOf = (label: string, rules: number, pick: (record: RunRecord) => number | undefined): MeanInterval =>
    meanInterval(records.filter((r) => r.model.label === label && r.task.ruleCount === rules).map(pick));
  const idPerformance = (label: string, rules: number) => statsOf(label, rules, (r) => r.id.performance);
  const has = (label: string) => records.some((record) => record.model.label === label);
  const lines: string[] = [];

  const seedCounts = [...new Set(counts.flatMap((rules) => modelLabels(records).map((label) => idPerformance(label, rules).count)))];
  const seeds = seedCounts.length === 1 ? `${seedCounts[0]}` : `${Math.min(...seedCounts)} to ${Math.max(...seedCounts)}`;
  const seedNoun = seedCounts.length === 1 && seedCounts[0] === 1 ? 'model seed' : 'model seeds';
  lines.push(`- **Runs:** ${seeds} ${seedNoun} per model and rule count. Values are means over seeds.`);

  for (const rules of counts) {
    const errors = modelLabels(records.filter((r) => r.task.ruleCount === rules)).map((label) => ({ label, value: idPerformance(label, rules).mean }));
    const best = errors.reduce((a, b) => (b.value < a.value ? b : a));
    const chanceError = typeof options.chanceError === 'number' ? options.chanceError : options.chanceError?.[rules];
    const chance = chanceError === undefined || regression ? '' : ` Chance guessing: ${formatPerformance(chanceError)}.`;
    lines.push(
      `- **${rules} rules:** lowest ID ${regression ? 'L1 loss' : 'error'}: ${best.label} (${formatPerformance(best.value)}). ` +
        errors.map((entry) => `${entry.label} ${formatPerformance(entry.value)}`).join(', ') +
        `.${chance}`,
    );
  }

  const [fewest, most] = [counts[0], counts[counts.length - 1]];
  if (has('Monolithic') && has('GT-Modular') && counts.length > 1) {
    const gap = (rules: number) => idPerformance('Monolithic', rules).mean - idPerformance('GT-Modular', rules).mean;
    lines.push(
      `- **Benefit of specialization against rules:** Monolithic minus GT-Modular ID ${regression ? 'L1 loss' : 'error'} is ` +
        `${formatDifference(gap(fewest))} at ${fewest} rules and ${formatDifference(gap(most))} at ${most} rules, so ` +
        (gap(most) > gap(fewest) ? 'the gap grows with the number of rules.' : 'the gap does not grow here.'),
    );
  }

  if (has('Monolithic') && has('Modular')) {
    const modular = idPerformance('Modular', most);
    const monolithic = idPerformance('Monolithic', most);
    const difference = monolithic.mean - modular.mean;
    let noise = ' With one seed there is no interval to tell this from noise.';
    if (modular.count > 1 && monolithic.count > 1) {
      const spread = modular.halfWidth + monolithic.halfWidth;
      noise = Math.abs(difference) > spread ? ' The difference is larger than the sum of the two 95% half-widths.' : ' The difference is within the 95% intervals.';
    }
    const comparison =
      formatDifference(Math.abs(difference)) === formatDifference(0)
        ? `the two are equal to within ${regression ? '0.001' : '0.1 points'}.`
        : `Modular is ${difference > 0 ? 'better' : 'worse'} by ${formatDifference(Math.abs(difference))}.`;
    lines.push(`- **Modular against Monolithic at ${most} rules:** ${comparison}${noise}`);
  }

  const baseline = baselines[most];
  for (const label of ['Modular', 'Modular-op']) {
    if (!has(label) || !baseline) continue;
    const alignment = statsOf(label, most, (r) => r.metrics?.alignment).mean;
    const collapse = statsOf(label, most, (r) => r.metrics?.collapseAverage).mean;
    lines.push(
      `- **${label} specialization at ${most} rules:** alignment ${alignment.toFixed(2)} (random router ${baseline.alignment.toFixed(2)}, ` +
        `perfect specialization 0) and Collapse-Avg ${collapse.toFixed(2)} (0 when every module is used equally often), so it is ` +
        (alignment > 0.5 * baseline.alignment ? 'closer to the random router than to perfect specialization.' : 'closer to perfect specialization than to the random router.'),
    );
  }

  const atMost = records.filter((record) => record.task.ruleCount === most);
  const lengths = [...new Set(atMost.flatMap((record) => record.perLength.map((entry) => entry.length)))].sort((a, b) => a - b);
  if (lengths.length > 1) {
    const [shortest, longest] = [lengths[0], lengths[lengths.length - 1]];
    const at = (label: string, split: 'id' | 'ood', length: number) =>
      statsOf(label, most, (r) => r.perLength.find((entry) => entry.length === length)?.[split].performance).mean;
    const labels = modelLabels(atMost);
    const rising = labels.filter((label) => at(label, 'id', longest) > at(label, 'id', shortest)).length;
    const oodHigher = labels.filter((label) => at(label, 'ood', longest) > at(label, 'id', longest)).length;
    lines.push(
      `- **Sequence length at ${most} rules:** ID ${regression ? 'L1 loss' : 'error'} at length ${shortest} and at length ${longest}: ` +
        labels.map((label) => `${label} ${formatPerformance(at(label, 'id', shortest))} and ${formatPerformance(at(label, 'id', longest))}`).join(', ') +
        `. It rises with length for ${rising} of ${labels.length} models, and at length ${longest} OoD data (inputs scaled by 2) ` +
        `score worse than ID data for ${oodHigher} of ${labels.length}.`,
    );
  }
  return lines;
}
