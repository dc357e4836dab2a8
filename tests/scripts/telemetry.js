'use strict';
// Functions for the telemetry tests: calls that succeed, fail, log from a
// sub-call, and keep a worker busy.

madrpc.register('add', (a, b) => a + b);
madrpc.register('fail', () => {
  throw new Error('it failed on purpose');
});
madrpc.register('child', (x) => {
  console.log(`in child ${x}`);
  return x * 2;
});
madrpc.register('parent', async (x) => {
  console.log('in parent');
  return madrpc.call('child', [x]);
});
madrpc.register('busy', (ms) => {
  const start = Date.now();
  while (Date.now() < start + ms) {}
  return ms;
});
// Logs, then runs longer than a call may run on the receiving thread.
madrpc.register('log_then_busy', (ms) => {
  console.log(`before busy ${ms}`);
  const start = Date.now();
  while (Date.now() < start + ms) {}
  return ms;
});
