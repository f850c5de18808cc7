import { barChart, BarSeries, Curve, heatmap, lineChart, PlotFigure } from './plots';
import { RouterMetrics, SPECIALIZATION_METRICS, SpecializationMetricKey } from './metrics';
import { MODEL_LABELS } from './models/types';
import { meanInterval } from './statistics';
import { RunRecord } from './train';

const LABEL_ORDER = Object.values(MODEL_LABELS);

function ruleCounts(records: RunRecord[]): number[] {
  return [...new Set(records.map((record) => record.task.ruleCount))].sort((a, b) => a - b);
}

function modelLabels(records: RunRecord[], modularOnly = false): string[] {
  const present = new Set(records.filter((record) => !modularOnly || record.metrics).map((record) => record.model.label));
  return LABEL_ORDER.filter((label) => present.has(label));
}

function performanceTitle(records: RunRecord[]): string {
  return records[0]?.task.mode === 'regression' ? 'L1 loss' : 'Error (%)';
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
  const yTitle = curve === 'trainLoss' ? 'Training loss' : `${curve === 'idPerformance' ? 'ID' : 'OoD'} ${performanceTitle(selected)}`;
  return lineChart(curves, { title: `${yTitle} during training, ${rules} rules`, xTitle: 'Step', yTitle, yLog: curve === 'trainLoss' });
}

/** Bars of ID or OoD performance per rule count and model, with 95% intervals over seeds. */
export function performanceFigure(records: RunRecord[], split: 'id' | 'ood'): PlotFigure {
  const counts = ruleCounts(records);
  const series: BarSeries[] = modelLabels(records).map((label) => {
    const stats = counts.map((rules) =>
      meanInterval(records.filter((r) => r.model.label === label && r.task.ruleCount === rules).map((r) => r[split].performance)),
    );
    return { name: label, values: stats.map((s) => s.mean), errors: stats.map((s) => s.halfWidth) };
  });
  const name = split === 'id' ? 'In-distribution' : 'Out-of-distribution';
  return barChart(counts, series, { title: `${name} ${performanceTitle(records).toLowerCase()}`, xTitle: 'Number of rules', yTitle: performanceTitle(records) });
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
    return { name: label, values: stats.map((s) => s.mean), errors: stats.map((s) => s.halfWidth) };
  });
  series.push({ name: 'Random router', values: counts.map((rules) => baselines[rules][metric]), color: '#9ca3af' });
  const info = SPECIALIZATION_METRICS.find((entry) => entry.key === metric);
  return barChart(counts, series, { title: `${info?.label ?? metric} (lower is better)`, xTitle: 'Number of rules', yTitle: info?.label ?? metric, height: 380 });
}
