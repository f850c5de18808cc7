import seedrandom from 'seedrandom';

/**
 * A seeded random stream. Every random draw in modarch comes from one of these, named by what it
 * is for (task coefficients, training samples, evaluation samples, initial weights), so that
 * changing one seed never shifts the draws of another stream.
 */
export class RandomStream {
  private readonly next: () => number;
  private spareNormal: number | undefined;

  /** `key` names the stream, for example `streamKey('train-samples', dataSeed)`. */
  constructor(key: string) {
    this.next = seedrandom.alea(key);
  }

  /** Uniform draw in [0, 1). */
  uniform(): number {
    return this.next();
  }

  /** Standard normal draw (Box-Muller; the second value of each pair is kept for the next call). */
  normal(): number {
    if (this.spareNormal !== undefined) {
      const value = this.spareNormal;
      this.spareNormal = undefined;
      return value;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const radius = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = radius * Math.sin(2 * Math.PI * v);
    return radius * Math.cos(2 * Math.PI * v);
  }

  /** Fills `target` with standard normal draws times `scale` and returns it. */
  fillNormal(target: Float32Array, scale = 1): Float32Array {
    for (let i = 0; i < target.length; i++) target[i] = this.normal() * scale;
    return target;
  }

  /** Fills `target` with uniform draws in [low, high) and returns it. */
  fillUniform(target: Float32Array, low: number, high: number): Float32Array {
    const width = high - low;
    for (let i = 0; i < target.length; i++) target[i] = low + this.next() * width;
    return target;
  }

  /** Draws an index from the cumulative distribution `cumulative` (last entry 1). */
  categorical(cumulative: ArrayLike<number>): number {
    const u = this.next();
    const last = cumulative.length - 1;
    for (let i = 0; i < last; i++) if (u < cumulative[i]) return i;
    return last;
  }

  /** Draws a distribution over `count` outcomes from Dirichlet(1, ..., 1). */
  flatDirichlet(count: number): number[] {
    const draws = Array.from({ length: count }, () => {
      let u = 0;
      while (u === 0) u = this.next();
      return -Math.log(u);
    });
    const total = draws.reduce((sum, value) => sum + value, 0);
    return draws.map((value) => value / total);
  }
}

/** Builds the key of a named stream: `streamKey('init', 3)` is "modarch/init/3". */
export function streamKey(purpose: string, ...seeds: Array<string | number>): string {
  return ['modarch', purpose, ...seeds].join('/');
}

/** Returns the running sums of `probabilities`, with the last entry set to exactly 1. */
export function cumulativeOf(probabilities: readonly number[]): Float64Array {
  const cumulative = new Float64Array(probabilities.length);
  let total = 0;
  probabilities.forEach((p, i) => {
    total += p;
    cumulative[i] = total;
  });
  cumulative[cumulative.length - 1] = 1;
  return cumulative;
}
