// Functions for the result cache tests.
// Cacheable: busy for `ms` milliseconds, then returns its params and a
// random number, so a repeated result shows it came from the cache.
madrpc.register('slow', (params) => {
  const end = Date.now() + (params.ms || 0);
  while (Date.now() < end);
  return { params, random: Math.random() };
}, { cache: '60s' });
// Cacheable for a short while only.
madrpc.register('brief', (n) => ({ n, random: Math.random() }), { cache: '300ms' });
// Cacheable, but throws: errors are never cached.
madrpc.register('flaky', () => {
  throw new Error('always fails');
}, { cache: '60s' });
// Not cacheable: live per call.
madrpc.register('live', () => ({ random: Math.random(), now: Date.now() }));
// Cacheable, returning `size` bytes of text (for eviction).
madrpc.register('blob', (n, size) => ({ n, text: 'x'.repeat(size), random: Math.random() }), { cache: '60s' });
// Not cacheable itself; sub-calls the cacheable `slow`.
madrpc.register('outer', async (tag) => {
  const inner = await madrpc.call('slow', { tag });
  return inner.random;
});
