'use strict';
// Functions for the grid tests.

madrpc.register('add', (a, b) => a + b);
madrpc.register('echo', (params) => params);
madrpc.register('fail', () => {
  throw new Error('deliberate failure');
});
// Busy for `ms` milliseconds of wall-clock time, then returns `ms`.
madrpc.register('busy', (ms) => {
  const end = Date.now() + ms;
  let spins = 0;
  while (Date.now() < end) spins++;
  return ms;
});
