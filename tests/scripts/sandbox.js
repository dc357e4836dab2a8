'use strict';
// Functions that exercise the sandbox: limits, isolation, encoding, errors.

let counter = 0;
madrpc.register('increment', () => {
  counter += 1;
  globalThis.leaked = (globalThis.leaked || 0) + 1;
  return { counter, leaked: globalThis.leaked };
});

madrpc.register('add', (a, b) => a + b);
madrpc.register('echo', (params) => params);
madrpc.register('argument_count', (...args) => args.length);
madrpc.register('greet', ({ name = 'world', punctuation = '!' } = {}) => `hello ${name}${punctuation}`);

madrpc.register('throws', () => {
  throw new RangeError('value out of range');
});
madrpc.register('throws_string', () => {
  throw 'plain string';
});
madrpc.register('rejects', async () => {
  await null;
  throw new Error('async failure');
});

madrpc.register('spin_for', () => { for (;;) {} });
madrpc.register('spin_while', () => { while (true) {} });
madrpc.register('spin_do', () => { let i = 0; do { i = (i + 1) | 0; } while (i !== -1 || true); });
madrpc.register('spin_try', () => { for (;;) { try { throw 1; } catch (e) { /* keep going */ } } });
madrpc.register('spin_async', async () => { for (;;) { await null; } });

madrpc.register('array_bomb', () => {
  const hoard = [];
  for (;;) hoard.push(new Array(1 << 16).fill(1.5));
});
madrpc.register('string_bomb', () => {
  let s = 'x';
  const keep = [];
  for (;;) { s = s.repeat(2); keep.push(s); }
});
madrpc.register('caught_bomb', () => {
  try {
    const hoard = [];
    for (;;) hoard.push(new Array(1 << 16).fill(1.5));
  } catch (e) {
    return 'survived';
  }
});

madrpc.register('recurse_forever', () => {
  const dive = (n) => dive(n + 1) + 1;
  return dive(0);
});
madrpc.register('recurse', (depth) => {
  const dive = (n) => (n === 0 ? 0 : 1 + dive(n - 1));
  return dive(depth);
});

madrpc.register('returns_function', () => () => 1);
madrpc.register('returns_bigint', () => 10n);
madrpc.register('returns_cycle', () => { const a = {}; a.self = a; return a; });
madrpc.register('returns_undefined', () => undefined);
madrpc.register('never_settles', () => new Promise(() => {}));
madrpc.register('big_result', (n) => 'y'.repeat(n));

madrpc.register('chatty', (lines) => {
  for (let i = 0; i < lines; i++) console.log(`line ${i}`, { i });
  console.warn('a warning');
  return lines;
});

madrpc.register('clock_and_dice', () => ({ now: Date.now(), dice: [Math.random(), Math.random()] }));

madrpc.register('capabilities', () => ({
  javy_io: typeof Javy !== 'undefined' && typeof Javy.IO !== 'undefined',
  require: typeof require,
  process: typeof process,
  std: typeof std,
  os: typeof os,
}));

// Frozen at build time by design: top-level values are computed once.
const builtAt = Date.now();
const topLevelRandom = Math.random();
madrpc.register('top_level_values', () => ({ builtAt, topLevelRandom }));
