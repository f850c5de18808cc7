import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { createMlpTask } from '../lib/tasks/mlp';
import { createModel } from '../lib/models';
import { MODEL_KINDS } from '../lib/models/types';

/** Interpreter with Debian's python3-torch; the speed benchmark compares against it. */
const PYTHON = process.env.MODARCH_PYTHON ?? '/usr/bin/python3';
const TORCH_DIR = path.join(__dirname, '..', 'bench', 'torch');

function torchAvailable(): boolean {
  return spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
}

/** Parameter counts of bench/torch/mlp.py for every model kind at one size, from one Python process. */
function torchMlpCounts(rules: number, encoderDim: number, hiddenDim: number): Record<string, number> {
  const script = [
    'import json, sys',
    `sys.path.insert(0, ${JSON.stringify(TORCH_DIR)})`,
    'import mlp',
    `print(json.dumps({kind: mlp.parameter_count(mlp.build_model(kind, ${rules}, ${encoderDim}, ${hiddenDim})) for kind in mlp.MODEL_KINDS}))`,
  ].join('\n');
  const result = spawnSync(PYTHON, ['-c', script], { encoding: 'utf8' });
  assert.equal(result.status, 0, `bench/torch/mlp.py failed: ${result.stderr}`);
  return JSON.parse(result.stdout);
}

describe('PyTorch benchmark models', { skip: torchAvailable() ? false : `${PYTHON} cannot import torch` }, () => {
  for (const [rules, encoderDim, hiddenDim] of [[8, 64, 256], [4, 32, 128], [2, 16, 64]]) {
    it(`MLP parameter counts at R=${rules} e=${encoderDim} h=${hiddenDim}`, () => {
      const counts = torchMlpCounts(rules, encoderDim, hiddenDim);
      const task = createMlpTask({ mode: 'classification', rules });
      for (const kind of MODEL_KINDS) {
        const model = createModel(task, { kind, encoderDim, hiddenDim });
        assert.equal(counts[kind], model.layout.size, `${kind}: PyTorch ${counts[kind]}, tfjs ${model.layout.size}`);
      }
    });
  }
});
