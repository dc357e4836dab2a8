'use strict';
// Functions for the drain and network-fault tests.

// Busy for `ms` of wall-clock time, then returns `value`.
madrpc.register('hold', (ms, value) => {
  const start = Date.now();
  while (Date.now() < start + ms) {}
  return value;
});

// `count` rounds, one sub-call each, awaited one after another: the call
// needs the grid for every round until its last.
madrpc.register('rounds', async (count, ms) => {
  let sum = 0;
  for (let i = 1; i <= count; i++) sum += await madrpc.call('hold', [ms, i]);
  return sum;
});

madrpc.register('square', (x) => x * x);

// The sum of the squares of 1..n, each square a sub-call.
madrpc.register('sum_squares', async (n) => {
  const squares = await Promise.all(Array.from({ length: n }, (_, i) => madrpc.call('square', [i + 1])));
  return squares.reduce((a, b) => a + b, 0);
});
