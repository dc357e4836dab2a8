'use strict';
// Functions for the overload tests: fan-outs that report how their
// sub-calls ended.

// Busy for `ms` of wall-clock time.
madrpc.register('work', (ms) => {
  const start = Date.now();
  while (Date.now() < start + ms) {}
  return ms;
});

// Fans out `width` sub-calls of `ms` each; returns the error codes of the
// sub-calls that failed (none, when the grid kept its promise).
madrpc.register('fan', async (width, ms) => {
  const outcomes = await Promise.allSettled(Array.from({ length: width }, () => madrpc.call('work', [ms])));
  return outcomes.filter((o) => o.status === 'rejected').map((o) => o.reason.code);
});
