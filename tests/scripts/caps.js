// Functions that produce large results, for the host's size caps.
madrpc.register('text', (n) => 'x'.repeat(n));
madrpc.register('gather', async (count, n) => {
  const settled = await Promise.allSettled(Array.from({ length: count }, () => madrpc.call('text', [n])));
  return settled.map((s) => (s.status === 'fulfilled' ? s.value.length : s.reason.data.kind));
});
// The same, letting the first refusal escape.
madrpc.register('gather_and_let_escape', async (count, n) => {
  const parts = await Promise.all(Array.from({ length: count }, () => madrpc.call('text', [n])));
  return parts.length;
});
// `level` levels of `width` sub-calls each; returns the number of leaves.
madrpc.register('tree', async (level, width) => {
  if (level === 0) return 1;
  const counts = await Promise.all(Array.from({ length: width }, () => madrpc.call('tree', [level - 1, width])));
  return counts.reduce((a, b) => a + b, 0);
});
// Burns CPU: `n` loop iterations.
madrpc.register('burn', (n) => {
  let x = 0;
  for (let i = 0; i < n; i++) x = (x + i) % 1000003;
  return x;
});
madrpc.register('burn_many', async (count, n) => {
  const parts = await Promise.all(Array.from({ length: count }, () => madrpc.call('burn', [n])));
  return parts.length;
});
// Busy for `ms` milliseconds of wall-clock time.
madrpc.register('busy', (ms) => {
  const end = Date.now() + ms;
  while (Date.now() < end);
  return ms;
});
