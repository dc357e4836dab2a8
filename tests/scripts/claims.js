'use strict';
// Functions for the tests of the README's promises.

madrpc.register('add', (a, b) => a + b);
madrpc.register('busy', (ms) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {}
  return ms;
});
madrpc.register('nested_functions', () => ({ a: 1, f() {}, list: [1, () => 2], inner: { g: () => 3, b: 'kept' } }));
madrpc.register('timers', () => ({
  setTimeout: typeof setTimeout,
  setInterval: typeof setInterval,
  setImmediate: typeof setImmediate,
}));
madrpc.register('wait_for_timer', () => new Promise((resolve) => {
  if (typeof setTimeout === 'function') setTimeout(resolve, 1);
}));
madrpc.register('console_levels', () => {
  console.log('via log', { n: 1 });
  console.info('via info');
  console.debug('via debug');
  console.warn('via warn');
  console.error('via error');
  return 'logged';
});
// Queues a sub-call it never awaits.
madrpc.register('fire_and_forget', () => {
  madrpc.call('add', [1, 2]);
  return 'returned';
});
