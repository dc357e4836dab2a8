'use strict';
// Fan-out overhead benchmark: `fan_out` makes `count` trivial sub-calls.

madrpc.register('noop', () => null);
madrpc.register('fan_out', async ({ count = 1000 } = {}) => {
  await Promise.all(Array.from({ length: count }, () => madrpc.call('noop')));
  return count;
});
// `count` sub-calls one after another: each awaits the one before, so each
// is a round trip of its own rather than part of a batch.
madrpc.register('one_by_one', async ({ count = 100 } = {}) => {
  for (let i = 0; i < count; i++) await madrpc.call('noop');
  return count;
});
