'use strict';
// One function per row of the README's error table.

madrpc.register('add', (a, b) => a + b);
madrpc.register('echo', (value) => value);
madrpc.register('fail', () => {
  throw new TypeError('deliberate failure');
});
madrpc.register('spin', () => {
  for (;;) {}
});
madrpc.register('bomb', () => {
  const hoard = [];
  for (;;) hoard.push(new Array(1 << 16).fill(1.5));
});
madrpc.register('deep', () => {
  const down = (n) => down(n + 1) + 1;
  return down(0);
});
madrpc.register('returns_function', () => () => 1);
madrpc.register('returns_bigint', () => ({ n: 10n }));
madrpc.register('never_settles', () => new Promise(() => {}));
madrpc.register('big_result', (n) => 'x'.repeat(n));
// Busy for `ms` of wall-clock time.
madrpc.register('busy', (ms) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {}
  return ms;
});

// Sub-calls whose errors the function lets escape.
madrpc.register('recurse_forever', async (depth) => madrpc.call('recurse_forever', [depth + 1]));
madrpc.register('fan_out', async (n) => Promise.all(Array.from({ length: n }, (_, i) => madrpc.call('add', [i, 1]))));
madrpc.register('nested_fan_out', async (n) => madrpc.call('fan_out', [n]));
// `k` fan-outs of `n` sub-calls each, side by side: a tree of k * (n + 1) calls.
madrpc.register('wide_tree', async (k, n) => Promise.all(Array.from({ length: k }, () => madrpc.call('fan_out', [n]))));
madrpc.register('call_and_let_escape', async (method) => madrpc.call(method));
madrpc.register('call_sync_and_let_escape', (method) => madrpc.callSync(method));
// The same, caught: reports the sub-call's error.
madrpc.register('call_and_catch', async (method, params) => {
  try {
    return { result: await madrpc.call(method, params) };
  } catch (error) {
    return { name: error.name, code: error.code, kind: error.data && error.data.kind };
  }
});
