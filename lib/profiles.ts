import { requireChoice } from './errors';
import { Architecture } from './tasks/types';

export const PROFILE_NAMES = ['quick', 'standard', 'paper'] as const;
export type ProfileName = (typeof PROFILE_NAMES)[number];

/** A named training budget. */
export interface Profile {
  name: ProfileName;
  /** Adam steps per architecture. */
  steps: Record<Architecture, number>;
  learningRate: number;
  batchSize: number;
  /** Steps between evaluations (and checkpoints). */
  evalEvery: Record<Architecture, number>;
  /** Held-out batches per evaluation, for ID and for OoD each. */
  evalBatches: number;
  /** Gradient-norm clipping per architecture; null for none. */
  clipNorm: Record<Architecture, number | null>;
}

/**
 * Training budgets. `paper` is the paper's protocol (Adam 1e-4, batch 256, 100k MLP steps and
 * 500k MHA/RNN steps, validation every 5000, RNN clipping at 1.0). `quick` and `standard` trade
 * steps for a larger learning rate so a notebook finishes in minutes. MHA and RNN steps cost
 * 10-30 times an MLP step on the wasm engine, so their budgets are smaller. Every run record
 * stores the budget it used.
 */
export const PROFILES: Record<ProfileName, Profile> = {
  quick: {
    name: 'quick',
    steps: { mlp: 1500, mha: 500, rnn: 500 },
    learningRate: 1e-3,
    batchSize: 256,
    evalEvery: { mlp: 250, mha: 100, rnn: 100 },
    evalBatches: 4,
    clipNorm: { mlp: null, mha: null, rnn: 1 },
  },
  standard: {
    name: 'standard',
    steps: { mlp: 4000, mha: 2000, rnn: 2000 },
    learningRate: 1e-3,
    batchSize: 256,
    evalEvery: { mlp: 500, mha: 250, rnn: 250 },
    evalBatches: 8,
    clipNorm: { mlp: null, mha: null, rnn: 1 },
  },
  paper: {
    name: 'paper',
    steps: { mlp: 100_000, mha: 500_000, rnn: 500_000 },
    learningRate: 1e-4,
    batchSize: 256,
    evalEvery: { mlp: 5000, mha: 5000, rnn: 5000 },
    evalBatches: 16,
    clipNorm: { mlp: null, mha: null, rnn: 1 },
  },
};

/** Environment variable the report command sets to pick the profile of every notebook. */
export const PROFILE_VARIABLE = 'MODARCH_PROFILE';

/** Returns the profile named by `name`, MODARCH_PROFILE, or `fallback`, in that order. */
export function resolveProfile(name?: string, fallback: ProfileName = 'quick'): Profile {
  const chosen = name ?? process.env[PROFILE_VARIABLE] ?? fallback;
  return PROFILES[requireChoice(name ? 'profile' : PROFILE_VARIABLE, chosen, PROFILE_NAMES)];
}
