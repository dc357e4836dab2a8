'use strict';
// Fan-out overhead benchmark: `fan_out` makes `count` trivial sub-calls.

madrpc.register('noop', () => null);
madrpc.register('fan_out', async ({ count = 1000 } = {}) => {
  await Promise.all(Array.from({ length: count }, () => madrpc.call('noop')));
  return count;
});
