import { requireInteger, SettingError } from '../errors';
import { RandomStream, streamKey } from '../random';

/**
 * A rule of a task whose target combines two numbers: the MLP task's inputs (x1, x2) or the
 * MHA task's retrieved values (v1, v2).
 */
export interface TwoInputRule {
  name: string;
  apply: (first: number, second: number) => number;
  /** (a, b) of a linear rule y = a first + b second. Absent for custom rules. */
  coefficients?: [number, number];
}

/** Rules as a task's settings accept them: a count of linear rules to draw, or the rules. */
export type TwoInputRuleSetting = number | Array<TwoInputRule | ((first: number, second: number) => number)>;

/**
 * Builds the linear rule y = a first + b second, named with the task's input names, for
 * example `2.000*x1 + -1.000*x2`.
 */
export function linearTwoInputRule(a: number, b: number, inputNames: readonly [string, string]): TwoInputRule {
  const [first, second] = inputNames;
  return {
    name: `${a.toFixed(3)}*${first} + ${b.toFixed(3)}*${second}`,
    apply: (x, y) => a * x + b * y,
    coefficients: [a, b],
  };
}

/**
 * Resolves a rules setting. A count draws that many linear rules with a, b ~ N(0, 1) from the
 * stream named `streamName` and the data seed, so one seed always gives the same rules. A list
 * names its functions by their own names, or by position when anonymous.
 */
export function resolveTwoInputRules(
  rules: TwoInputRuleSetting,
  dataSeed: number,
  streamName: string,
  inputNames: readonly [string, string],
): TwoInputRule[] {
  if (typeof rules === 'number') {
    requireInteger('rules', rules, 2, 1024);
    const stream = new RandomStream(streamKey(streamName, dataSeed));
    return Array.from({ length: rules }, () => {
      const a = stream.normal();
      const b = stream.normal();
      return linearTwoInputRule(a, b, inputNames);
    });
  }
  if (!Array.isArray(rules) || rules.length < 2) {
    throw new SettingError('rules', rules, 'an integer >= 2 or a list of at least 2 rule functions');
  }
  return rules.map((rule, index) => {
    if (typeof rule === 'function') return { name: rule.name || `rule ${index}`, apply: rule };
    if (rule && typeof rule.apply === 'function') return { ...rule, name: rule.name || `rule ${index}` };
    throw new SettingError(`rules[${index}]`, rule, `a function (${inputNames.join(', ')}) => number or { name, apply }`);
  });
}
