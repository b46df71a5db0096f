import assert from 'node:assert/strict';
import { test } from 'node:test';
import { installSteps, stagingPercent, step } from '../services/installer/steps.js';

// The install's steps as /progress shows them, from their one table: the figures rise in the
// order an install passes through the steps, and staging spreads its modules up to the stop.

test('install steps: each figure is higher than the one before, in the order an install passes them', () => {
  const figures = Object.entries(installSteps).map(([name, { percent }]) => [name, percent] as const);
  for (let i = 1; i < figures.length; i++)
    assert.ok(
      figures[i][1] > figures[i - 1][1],
      `${figures[i][0]} after ${figures[i - 1][0]}: ${JSON.stringify(figures)}`,
    );
  assert.ok(figures.every(([, percent]) => percent >= 0 && percent < 100));
});

test('install steps: staging goes from its own figure to the stop, one figure per module', () => {
  assert.equal(stagingPercent(0, 3), installSteps.staging.percent);
  assert.equal(stagingPercent(3, 3), installSteps.stopping.percent);
  const figures = [0, 1, 2, 3].map((done) => stagingPercent(done, 3));
  assert.deepEqual(
    figures,
    [...figures].sort((a, b) => a - b),
  );
  assert.deepEqual(step('staging', 'a', 2, 3), {
    percent: installSteps.staging.percent,
    message: 'Installing module a (2/3)',
  });
  assert.deepEqual(step('switching', '2.0.0'), { percent: 70, message: 'Switching to version 2.0.0...' });
});
