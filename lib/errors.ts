/**
 * Error raised for an invalid setting. The message names the setting, the value it received and
 * what is accepted, so a researcher can fix a notebook cell without reading library code.
 */
export class SettingError extends Error {
  readonly setting: string;
  readonly value: unknown;
  readonly accepted: string;

  constructor(setting: string, value: unknown, accepted: string) {
    // A setting that was never given reads as missing rather than as "Invalid x: undefined".
    super(value === undefined ? `Missing ${setting}. Accepted: ${accepted}.` : `Invalid ${setting}: ${formatValue(value)}. Accepted: ${accepted}.`);
    this.name = 'SettingError';
    this.setting = setting;
    this.value = value;
    this.accepted = accepted;
  }
}

function formatValue(value: unknown): string {
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || value === undefined) return String(value);
  try {
    // Keep NaN, Infinity and functions readable inside arrays and objects too.
    const text = JSON.stringify(value, (_key, entry: unknown) => {
      if (typeof entry === 'number' && !Number.isFinite(entry)) return String(entry);
      if (typeof entry === 'function') return `function ${entry.name || '(anonymous)'}`;
      return entry;
    });
    if (text === undefined) return String(value);
    return text.length > 200 ? `${text.slice(0, 200)}...` : text;
  } catch {
    return String(value);
  }
}

/** Checks that `value` is an integer in [min, max] and returns it. */
export function requireInteger(setting: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
    throw new SettingError(setting, value, range);
  }
  return value;
}

/** Checks that `value` is a finite number in (or at the edges of) [min, max] and returns it. */
export function requireNumber(setting: string, value: unknown, min = -Infinity, max = Infinity): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new SettingError(setting, value, `a finite number from ${min} to ${max}`);
  }
  return value;
}

/** Checks that `value` is one of `choices` and returns it. */
export function requireChoice<T extends string>(setting: string, value: unknown, choices: readonly T[]): T {
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    throw new SettingError(setting, value, `one of ${choices.map((choice) => JSON.stringify(choice)).join(', ')}`);
  }
  return value as T;
}

/**
 * Checks that `probabilities` is a distribution over `count` outcomes: non-negative entries that
 * sum to 1 within 1e-6. Returns a copy renormalized to sum exactly to 1.
 */
export function requireDistribution(setting: string, probabilities: unknown, count: number): number[] {
  const accepted = `${count} non-negative numbers that sum to 1`;
  if (!Array.isArray(probabilities) || probabilities.length !== count) {
    throw new SettingError(setting, probabilities, accepted);
  }
  let total = 0;
  for (const p of probabilities) {
    if (typeof p !== 'number' || !Number.isFinite(p) || p < 0) throw new SettingError(setting, probabilities, accepted);
    total += p;
  }
  if (Math.abs(total - 1) > 1e-6) {
    throw new SettingError(setting, probabilities, `${accepted} (these sum to ${total})`);
  }
  return probabilities.map((p: number) => p / total);
}
