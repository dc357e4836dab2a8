'use strict';
// Functions for the fan-out tests: sub-calls, their errors and budgets.

madrpc.register('double', (x) => x * 2);
madrpc.register('length', (text) => text.length);
madrpc.register('fail', () => {
  throw new Error('leaf failed');
});

// Busy for `ms` of wall-clock time; reports when it ran.
madrpc.register('window', (ms) => {
  const start = Date.now();
  while (Date.now() < start + ms) {}
  return { start, end: Date.now() };
});
madrpc.register('parallel_windows', async (count, ms) =>
  Promise.all(Array.from({ length: count }, () => madrpc.call('window', [ms]))));

madrpc.register('sync_double_plus_one', (x) => madrpc.callSync('double', [x]) + 1);

madrpc.register('catch_failure', async () => {
  try {
    await madrpc.call('fail');
    return 'not caught';
  } catch (error) {
    return { caught: error instanceof Error, name: error.name, code: error.code, message: error.message };
  }
});
madrpc.register('catch_sync_failure', () => {
  try {
    madrpc.callSync('fail');
    return 'not caught';
  } catch (error) {
    return { code: error.code, message: error.message };
  }
});

// `level` levels of `width` sub-calls each; returns the number of leaves.
madrpc.register('tree', async (level, width) => {
  if (level === 0) return 1;
  const counts = await Promise.all(Array.from({ length: width }, () => madrpc.call('tree', [level - 1, width])));
  return counts.reduce((a, b) => a + b, 0);
});

madrpc.register('recurse_forever', async (depth) => madrpc.call('recurse_forever', [depth + 1]));
madrpc.register('deepest', async (depth) => {
  try {
    return await madrpc.call('deepest', [depth + 1]);
  } catch (error) {
    return { depth, code: error.code };
  }
});

madrpc.register('too_many', async (n) => {
  const outcomes = await Promise.allSettled(Array.from({ length: n }, (_, i) => madrpc.call('double', [i])));
  const rejected = outcomes.filter((o) => o.status === 'rejected');
  return { fulfilled: n - rejected.length, rejected: rejected.length, code: rejected.length ? rejected[0].reason.code : null };
});

madrpc.register('spin', () => {
  for (;;) {}
});
madrpc.register('wait_on_spin', async () => madrpc.call('spin'));

madrpc.register('bomb', () => {
  const hoard = [];
  for (;;) hoard.push(new Array(1 << 16).fill(1.5));
});
// Runs a sub-call and reports the error code it failed with.
madrpc.register('code_of', async (method) => {
  try {
    await madrpc.call(method);
    return null;
  } catch (error) {
    return error.code;
  }
});
// A sub-call whose params are `size` bytes of text, caught: reports the
// sub-call's error.
madrpc.register('call_padded', async (method, size) => {
  try {
    return { result: await madrpc.call(method, ['x'.repeat(size)]) };
  } catch (error) {
    return { code: error.code, kind: error.data && error.data.kind, message: error.message };
  }
});
