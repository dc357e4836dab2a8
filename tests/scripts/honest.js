'use strict';
// The well-behaved functions the hostile suite calls throughout.

// The sum of i * i for i below n (exact for n up to about 200,000).
madrpc.register('sum_squares', (n) => {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += i * i;
  return sum;
});

// sum_squares of 0..count-1, fanned out as sub-calls.
madrpc.register('fan_sum', async (count) => {
  const parts = await Promise.all(Array.from({ length: count }, (_, i) => madrpc.call('sum_squares', [i])));
  return parts.reduce((a, b) => a + b, 0);
});
