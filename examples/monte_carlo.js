'use strict';
// Monte Carlo estimation of π, one sample batch per call or fanned out across
// the grid.
//
//   madrpc run examples/monte_carlo.js estimate_single '{"samples": 1000000}'
//   madrpc run examples/monte_carlo.js aggregate '{"batches": 50, "samples": 20000}'

const DEFAULT_SAMPLES = 100000;

// The classic LCG: deterministic for a seed, so any split of the work into
// batches gives the same totals as running the batches one by one.
const sample = (seed, samples) => {
  let state = seed;
  let inside = 0;
  for (let i = 0; i < samples; i++) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    const x = state / 0x7fffffff;
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    const y = state / 0x7fffffff;
    if (x * x + y * y <= 1) inside++;
  }
  return { inside, total: samples };
};

madrpc.register('monte_carlo_sample', ({ seed = 0, samples = DEFAULT_SAMPLES } = {}) => sample(seed, samples));

madrpc.register('estimate_single', ({ seed = 0, samples = DEFAULT_SAMPLES } = {}) => {
  const { inside, total } = sample(seed, samples);
  return { pi: (4 * inside) / total, inside, total };
});

// Fans out one `monte_carlo_sample` per seed across the grid and adds up the
// totals. The result is exactly the sum of calling `monte_carlo_sample` for
// the same seeds one by one.
madrpc.register('aggregate', async ({ batches = 50, samples = DEFAULT_SAMPLES } = {}) => {
  const seeds = Array.from({ length: batches }, (_, seed) => seed);
  const parts = await Promise.all(seeds.map((seed) => madrpc.call('monte_carlo_sample', { seed, samples })));
  const inside = parts.reduce((sum, part) => sum + part.inside, 0);
  const total = parts.reduce((sum, part) => sum + part.total, 0);
  return { pi: (4 * inside) / total, inside, total, batches };
});
