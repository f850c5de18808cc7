/** Sweeps: grids of runs, a run store on disk, worker processes, Slurm array jobs and results. */
export * from './spec';
export * from './store';
export * from './execute';
export * from './runner';
export * from './results';
export * from './findings';
export * from './plots';
export * from './slurm';
