/**
 * modarch: rule tasks, modular models, training and metrics for the benchmark of
 * "Is a Modular Architecture Enough?" (Mittal, Bengio, Lajoie, NeurIPS 2022).
 */
import './kernel-send-queue';
export * as tf from '@tensorflow/tfjs';
export * from './errors';
export * from './engine';
export * from './blas';
export * from './random';
export * from './profiles';
export * from './progress';
export * from './checkpoint';
export * from './parameters';
export * from './optimizer';
export * from './kernels';
export * from './tasks/types';
export * from './tasks/two-input-rules';
export * from './tasks/mlp';
export * from './tasks/mha';
export * from './tasks';
export * from './tasks/rnn';
export * from './models';
export * from './models/mha';
export * from './models/rnn';
export * from './lstm';
export * from './train';
export * from './parallel';
export * from './metrics';
export * from './plots';
export * from './statistics';
export * from './run-spec';
export * from './study';
export * from './study-plots';
export * from './sweep';
