/** Two-sided 95% quantiles of Student's t for 1 to 30 degrees of freedom. */
const T_975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11,
  2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/** Mean and 95% confidence half-width of a sample. */
export interface MeanInterval {
  mean: number;
  /** Half-width of the 95% interval (Student's t on the sample standard deviation); 0 for one value. */
  halfWidth: number;
  count: number;
}

/**
 * Returns the mean of the finite values and the half-width of their 95% confidence interval.
 * Null, undefined and NaN entries are skipped (a Monolithic model has no module metrics), so
 * they never turn a group statistic into NaN; with no finite values the mean is NaN.
 */
export function meanInterval(values: ReadonlyArray<number | null | undefined>): MeanInterval {
  const finite = values.filter((value): value is number => typeof value === 'number' && Number.isFinite(value));
  const count = finite.length;
  if (count === 0) return { mean: NaN, halfWidth: NaN, count };
  const mean = finite.reduce((sum, value) => sum + value, 0) / count;
  if (count === 1) return { mean, halfWidth: 0, count };
  const variance = finite.reduce((sum, value) => sum + (value - mean) ** 2, 0) / (count - 1);
  const quantile = count - 1 <= T_975.length ? T_975[count - 2] : 1.96;
  return { mean, halfWidth: (quantile * Math.sqrt(variance)) / Math.sqrt(count), count };
}

/** A share of trials and its 95% interval. */
export interface ProportionInterval {
  share: number;
  lower: number;
  upper: number;
  trials: number;
}

/**
 * Returns the share `successes / trials` and its 95% Wilson score interval, which stays inside
 * [0, 1] and is usable for few trials. Fractional successes (a tie split between winners) are
 * accepted. With no trials the share and bounds are NaN.
 */
export function proportionInterval(successes: number, trials: number): ProportionInterval {
  if (!(trials > 0)) return { share: NaN, lower: NaN, upper: NaN, trials: 0 };
  const z = 1.959964;
  const share = successes / trials;
  const denominator = 1 + (z * z) / trials;
  const center = (share + (z * z) / (2 * trials)) / denominator;
  const spread = (z * Math.sqrt((share * (1 - share)) / trials + (z * z) / (4 * trials * trials))) / denominator;
  return { share, lower: Math.max(0, center - spread), upper: Math.min(1, center + spread), trials };
}
