import { randomRouterBaseline, RouterMetrics, SPECIALIZATION_METRICS, SpecializationMetricKey } from '../metrics';
import { MODEL_LABELS } from '../models/types';
import { meanInterval, MeanInterval, ProportionInterval } from '../statistics';
import { RunRecord } from '../train';
import { SettingOutcome, winShares } from './results';

/**
 * Tests of the five findings of "Is a Modular Architecture Enough?" (Mittal, Bengio, Lajoie,
 * NeurIPS 2022) on the records of a sweep. Each test states its decision rule, computes the
 * numbers with 95% intervals and returns a verdict, so a notebook cell can report whether its
 * sweep supports the finding.
 */

/** Outcome of testing one finding. "not testable" means the sweep lacks the models or rule counts it needs. */
export type Verdict = 'supported' | 'partly supported' | 'not supported' | 'not testable';

/** The test of one finding on one set of records. */
export interface FindingAssessment {
  number: number;
  claim: string;
  verdict: Verdict;
  /** Decision rule that turns the numbers into the verdict. */
  rule: string;
  /** Markdown lines with the numbers and their 95% intervals. */
  evidence: string[];
}

const { monolithic: MONOLITHIC, modular: MODULAR, 'modular-op': MODULAR_OP, 'gt-modular': GT_MODULAR } = MODEL_LABELS;

/** The five findings in the paper's order, each with its test. */
export const FINDINGS: ReadonlyArray<{ number: number; claim: string; assess: (records: readonly RunRecord[]) => FindingAssessment }> = [
  { number: 1, claim: 'GT-Modular is best in most settings: specialization helps.', assess: assessSpecializationHelps },
  { number: 2, claim: 'Modular beats Monolithic, but only by a small margin.', assess: assessModularMargin },
  { number: 3, claim: 'The benefit of specialization grows with the number of rules.', assess: assessRuleTrend },
  { number: 4, claim: 'Modular and Modular-op systems collapse and specialize poorly, near a uniform random router.', assess: assessCollapse },
  { number: 5, claim: 'Good specialization speeds up training.', assess: assessTrainingSpeed },
];

/** Tests every finding on `records`. */
export function assessFindings(records: readonly RunRecord[]): FindingAssessment[] {
  return FINDINGS.map((finding) => finding.assess(records));
}

/** Formats an assessment as a Markdown paragraph: claim, verdict, rule and evidence. */
export function findingMarkdown(assessment: FindingAssessment): string {
  return [
    `**Finding ${assessment.number}: ${assessment.claim}** Verdict: **${assessment.verdict}**.`,
    '',
    `*Rule:* ${assessment.rule}`,
    '',
    ...assessment.evidence.map((line) => `- ${line}`),
  ].join('\n');
}

/** Finding 1: GT-Modular wins the majority of settings. */
export function assessSpecializationHelps(records: readonly RunRecord[]): FindingAssessment {
  const base = {
    number: 1,
    claim: FINDINGS[0].claim,
    rule:
      'a setting is (architecture, mode, rules, size, data seed) and its winner has the lowest ID performance averaged over model seeds. ' +
      'Supported when GT-Modular wins more than half of the settings, partly supported when it wins the most settings but not more than half.',
  };
  const id = winShares(records, 'id');
  const ood = winShares(records, 'ood');
  const gtShare = id.all.shares[GT_MODULAR];
  if (!gtShare || id.all.settings === 0 || !records.some((record) => record.model.label === GT_MODULAR)) {
    return { ...base, verdict: 'not testable', evidence: ['The records hold no setting where GT-Modular is compared with another model.'] };
  }

  const ranked = rankShares(id.all.shares);
  const verdict = verdictOf(gtShare.share > 0.5, ranked[0][0] === GT_MODULAR);
  return {
    ...base,
    verdict,
    evidence: [
      `ID wins over ${id.all.settings} settings: ${ranked.map(([label, share]) => `${label} ${formatShare(share)}`).join(', ')}.`,
      `OoD wins: ${rankShares(ood.all.shares).map(([label, share]) => `${label} ${formatShare(share)}`).join(', ')}.`,
      `GT-Modular's ID share ${gtShare.lower > 0.5 ? 'is above one half with 95% confidence' : 'has a 95% interval that reaches one half or below'}.`,
    ],
  };
}

/** Finding 2: Modular wins against Monolithic, by less than half of GT-Modular's margin. */
export function assessModularMargin(records: readonly RunRecord[]): FindingAssessment {
  const base = {
    number: 2,
    claim: FINDINGS[1].claim,
    rule:
      'the margin of a model in a setting is (Monolithic - model) / Monolithic of the seed-averaged ID performance. ' +
      'Supported when Modular wins more than half of the settings against Monolithic and its mean margin is positive but under half of GT-Modular\'s. ' +
      'Partly supported when it wins more than half of the settings or its mean margin is positive.',
  };
  const shares = winShares(records, 'id');
  const pair = shares.modularVsMonolithic;
  if (pair.settings === 0) {
    return { ...base, verdict: 'not testable', evidence: ['No setting has both Modular and Monolithic runs.'] };
  }

  const modularMargin = meanInterval(relativeMargins(shares.outcomes, MODULAR));
  const gtMargin = meanInterval(relativeMargins(shares.outcomes, GT_MODULAR));
  const wins = pair.shares[MODULAR].share > 0.5;
  const smallPositive = modularMargin.mean > 0 && (!(gtMargin.count > 0) || modularMargin.mean < 0.5 * gtMargin.mean);
  const verdict = verdictOf(wins && smallPositive, wins || modularMargin.mean > 0);
  const evidence = [
    `Modular wins ${formatShare(pair.shares[MODULAR])} of ${pair.settings} settings against Monolithic.`,
    `Mean margin of Modular over Monolithic: ${formatPercent(modularMargin)} over ${modularMargin.count} settings.`,
  ];
  if (gtMargin.count > 0) evidence.push(`Mean margin of GT-Modular over Monolithic, for scale: ${formatPercent(gtMargin)}.`);
  return { ...base, verdict, evidence };
}

/** Finding 3: GT-Modular's margin over Monolithic is larger at the most rules than at the fewest. */
export function assessRuleTrend(records: readonly RunRecord[]): FindingAssessment {
  const base = {
    number: 3,
    claim: FINDINGS[2].claim,
    rule:
      'the benefit of specialization in a setting is GT-Modular\'s margin over Monolithic, (Monolithic - GT-Modular) / Monolithic of the seed-averaged ID performance. ' +
      'For each (architecture, mode, size, data seed) the benefit at the most rules minus the benefit at the fewest rules is one paired difference. ' +
      'Supported when the mean difference is positive with a 95% interval above 0, partly supported when it is positive but its interval includes 0.',
  };
  const { outcomes } = winShares(records, 'id');
  const ruleCounts = [...new Set(outcomes.map((outcome) => outcome.setting.rules))].sort((a, b) => a - b);
  if (ruleCounts.length < 2) {
    return { ...base, verdict: 'not testable', evidence: [`The records hold ${ruleCounts.length} rule count(s); the trend needs at least 2.`] };
  }

  const minRules = ruleCounts[0];
  const maxRules = ruleCounts[ruleCounts.length - 1];
  const benefitBy = new Map<string, number>();
  for (const outcome of outcomes) {
    const margin = relativeMargin(outcome, GT_MODULAR);
    if (margin !== null) benefitBy.set(settingKey(outcome, outcome.setting.rules), margin);
  }
  const differences: number[] = [];
  for (const outcome of outcomes.filter((entry) => entry.setting.rules === minRules)) {
    const atMinRules = benefitBy.get(settingKey(outcome, minRules));
    const atMaxRules = benefitBy.get(settingKey(outcome, maxRules));
    if (atMinRules !== undefined && atMaxRules !== undefined) differences.push(atMaxRules - atMinRules);
  }
  if (differences.length === 0) {
    return { ...base, verdict: 'not testable', evidence: ['No setting has GT-Modular and Monolithic runs at both the fewest and the most rules.'] };
  }

  const difference = meanInterval(differences);
  const verdict = verdictOf(difference.mean - difference.halfWidth > 0, difference.mean > 0);
  const perRules = ruleCounts.map((rules) => {
    const margins = outcomes.filter((outcome) => outcome.setting.rules === rules).map((outcome) => relativeMargin(outcome, GT_MODULAR));
    return `${rules} rules ${formatPercent(meanInterval(margins))}`;
  });
  return {
    ...base,
    verdict,
    evidence: [
      `Benefit of specialization per rule count: ${perRules.join('; ')}.`,
      `Benefit at ${maxRules} rules minus benefit at ${minRules} rules: ${formatPoints(difference)} over ${difference.count} paired settings.`,
    ],
  };
}

/** Finding 4: learned routers sit nearer the random router than GT-Modular, and leave modules unused. */
export function assessCollapse(records: readonly RunRecord[]): FindingAssessment {
  const base = {
    number: 4,
    claim: FINDINGS[3].claim,
    rule:
      'inverse mutual information, alignment and adaptation of each run are divided by the uniform random router\'s values at its rule count, ' +
      'so 0 is GT-Modular (perfect specialization) and 1 is the random router. Their mean is the router score of the run. ' +
      'A system specializes poorly when its mean router score is above 0.5 (nearer the random router), and it collapses when its mean Collapse-Worst is above 0.5 ' +
      '(on average its least used module gets under half of its fair share). Supported when both hold for Modular and for Modular-op, ' +
      'partly supported when at least one of the four holds.',
  };
  const baselines = new Map<number, RouterMetrics>();
  const baselineOf = (rules: number) => {
    if (!baselines.has(rules)) baselines.set(rules, randomRouterBaseline(rules));
    return baselines.get(rules)!;
  };
  const normalized: SpecializationMetricKey[] = ['inverseMutualInformation', 'alignment', 'adaptation'];

  const evidence: string[] = [];
  const conditions: boolean[] = [];
  for (const label of [MODULAR, MODULAR_OP]) {
    const runs = records.filter((record) => record.model.label === label && record.metrics);
    if (runs.length === 0) continue;
    const scores = runs.map((record) => {
      const baseline = baselineOf(record.task.ruleCount);
      const ratios = normalized.map((key) => record.metrics![key] / baseline[key]);
      return ratios.reduce((sum, ratio) => sum + ratio, 0) / ratios.length;
    });
    const score = meanInterval(scores);
    const collapseWorst = meanInterval(runs.map((record) => record.metrics!.collapseWorst));
    const collapseAverage = meanInterval(runs.map((record) => record.metrics!.collapseAverage));
    conditions.push(score.mean > 0.5, collapseWorst.mean > 0.5);
    const perMetric = normalized.map((key) => {
      const label = SPECIALIZATION_METRICS.find((entry) => entry.key === key)?.label ?? key;
      return `${label} ${formatNumber(meanInterval(runs.map((record) => record.metrics![key] / baselineOf(record.task.ruleCount)[key])))}`;
    });
    evidence.push(
      `${label} (${runs.length} runs): router score ${formatNumber(score)} (${perMetric.join(', ')}). ` +
        `Collapse-Worst ${formatNumber(collapseWorst)}, Collapse-Avg ${formatNumber(collapseAverage)}.`,
    );
  }
  if (conditions.length < 4) {
    return { ...base, verdict: 'not testable', evidence: [...evidence, 'The test needs runs of both Modular and Modular-op.'] };
  }

  const gtRuns = records.filter((record) => record.model.label === GT_MODULAR && record.metrics);
  if (gtRuns.length > 0) {
    evidence.push(`GT-Modular for reference: Collapse-Worst ${formatNumber(meanInterval(gtRuns.map((record) => record.metrics!.collapseWorst)))}, alignment ${formatNumber(meanInterval(gtRuns.map((record) => record.metrics!.alignment)))}.`);
  }
  const verdict = verdictOf(conditions.every(Boolean), conditions.some(Boolean));
  return { ...base, verdict, evidence };
}

/** Finding 5: GT-Modular's training loss falls faster than Monolithic's and Modular's. */
export function assessTrainingSpeed(records: readonly RunRecord[]): FindingAssessment {
  const base = {
    number: 5,
    claim: FINDINGS[4].claim,
    rule:
      'the loss area of a run is its training loss averaged over all evaluations, which is lower when the loss falls sooner. ' +
      'In each setting GT-Modular\'s seed-averaged loss area is divided by that of Monolithic and of Modular, and the ratios are averaged on a log scale. ' +
      'Supported when both mean ratios are below 1 with 95% intervals below 1, partly supported when at least one mean ratio is below 1.',
  };
  const areas = new Map<string, Map<string, number[]>>();
  const curves = new Map<string, Map<string, number[][]>>();
  for (const record of records) {
    const key = JSON.stringify([record.task.architecture, record.task.mode, record.task.ruleCount, record.model.encoderDim, record.model.hiddenDim, record.task.dataSeed, record.profile.steps]);
    if (!areas.has(key)) {
      areas.set(key, new Map());
      curves.set(key, new Map());
    }
    const loss = record.curves.trainLoss;
    push(areas.get(key)!, record.model.label, loss.reduce((sum, value) => sum + value, 0) / loss.length);
    push(curves.get(key)!, record.model.label, loss);
  }

  const evidence: string[] = [];
  const ratios: MeanInterval[] = [];
  for (const other of [MONOLITHIC, MODULAR]) {
    const logRatios: number[] = [];
    for (const byModel of areas.values()) {
      const gt = byModel.get(GT_MODULAR);
      const reference = byModel.get(other);
      if (gt && reference) logRatios.push(Math.log(mean(gt) / mean(reference)));
    }
    if (logRatios.length === 0) continue;
    const logRatio = meanInterval(logRatios);
    ratios.push(logRatio);
    const interval = `[${Math.exp(logRatio.mean - logRatio.halfWidth).toFixed(3)}, ${Math.exp(logRatio.mean + logRatio.halfWidth).toFixed(3)}]`;
    evidence.push(`GT-Modular / ${other} loss area: ${Math.exp(logRatio.mean).toFixed(3)} (95% interval ${interval}) over ${logRatio.count} settings.`);
  }
  if (ratios.length < 2) {
    return { ...base, verdict: 'not testable', evidence: [...evidence, 'The test needs GT-Modular, Monolithic and Modular runs in the same settings.'] };
  }

  // The first evaluation at which GT-Modular's mean curve reaches Monolithic's final training loss.
  const fractions: number[] = [];
  for (const byModel of curves.values()) {
    const gt = byModel.get(GT_MODULAR);
    const monolithic = byModel.get(MONOLITHIC);
    if (!gt || !monolithic) continue;
    const gtCurve = meanCurve(gt);
    const target = meanCurve(monolithic)[gtCurve.length - 1];
    const reached = gtCurve.findIndex((value) => value <= target);
    fractions.push(reached < 0 ? Infinity : (reached + 1) / gtCurve.length);
  }
  const reachedShare = fractions.filter(Number.isFinite).length / Math.max(fractions.length, 1);
  const medianFraction = median(fractions);
  evidence.push(
    `GT-Modular reaches Monolithic's final training loss in ${(100 * reachedShare).toFixed(0)}% of ${fractions.length} settings; ` +
      `median point: ${Number.isFinite(medianFraction) ? `${(100 * medianFraction).toFixed(0)}% of the steps` : 'not reached'}.`,
  );

  const below = ratios.map((ratio) => ratio.mean + ratio.halfWidth < 0);
  const verdict = verdictOf(below.every(Boolean), ratios.some((ratio) => ratio.mean < 0));
  return { ...base, verdict, evidence };
}

/** Returns the (label, share) pairs from the largest share to the smallest. */
function rankShares(shares: Record<string, ProportionInterval>): Array<[string, ProportionInterval]> {
  return Object.entries(shares).sort(([, first], [, second]) => second.share - first.share);
}

/** Returns the verdict for a test whose full and partial conditions are given. */
function verdictOf(full: boolean, partial: boolean): Verdict {
  if (full) return 'supported';
  if (partial) return 'partly supported';
  return 'not supported';
}

/** Returns (Monolithic - model) / Monolithic in one setting, or null when either is missing or Monolithic is 0. */
function relativeMargin(outcome: SettingOutcome, label: string): number | null {
  const monolithic = outcome.performance[MONOLITHIC];
  const model = outcome.performance[label];
  if (!Number.isFinite(monolithic) || !Number.isFinite(model) || monolithic === 0) return null;
  return (monolithic - model) / monolithic;
}

function relativeMargins(outcomes: readonly SettingOutcome[], label: string): number[] {
  return outcomes.map((outcome) => relativeMargin(outcome, label)).filter((margin): margin is number => margin !== null);
}

/** Identity of a setting apart from its rule count, with `rules` put back in. */
function settingKey(outcome: SettingOutcome, rules: number): string {
  const { architecture, mode, encoderDim, hiddenDim, dataSeed } = outcome.setting;
  return JSON.stringify([architecture, mode, encoderDim, hiddenDim, dataSeed, rules]);
}

function push<T>(map: Map<string, T[]>, key: string, value: T): void {
  if (!map.has(key)) map.set(key, []);
  map.get(key)!.push(value);
}

function mean(values: readonly number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / values.length;
}

/** Pointwise mean of curves, cut to the shortest. */
function meanCurve(curves: readonly number[][]): number[] {
  const length = Math.min(...curves.map((curve) => curve.length));
  return Array.from({ length }, (_, index) => mean(curves.map((curve) => curve[index])));
}

function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function formatShare(share: ProportionInterval): string {
  return `${(100 * share.share).toFixed(0)}% [${(100 * share.lower).toFixed(0)}, ${(100 * share.upper).toFixed(0)}]`;
}

function formatPercent(value: MeanInterval): string {
  if (value.count === 0) return 'no data';
  return `${(100 * value.mean).toFixed(1)}% ± ${(100 * value.halfWidth).toFixed(1)}`;
}

function formatPoints(value: MeanInterval): string {
  return `${(100 * value.mean).toFixed(1)} points ± ${(100 * value.halfWidth).toFixed(1)}`;
}

function formatNumber(value: MeanInterval): string {
  if (value.count === 0) return 'no data';
  return `${value.mean.toFixed(3)} ± ${value.halfWidth.toFixed(3)}`;
}

