// A second version of cache.js: `slow` under the same name, in another
// module, so its results must never be served from cache.js's entries.
madrpc.register('slow', (params) => ({ params, random: Math.random(), version: 2 }), { cache: '60s' });
// Not cacheable itself; sub-calls the cacheable `slow` through the gateway.
madrpc.register('outer', async (tag) => {
  const inner = await madrpc.call('slow', { tag });
  return inner.random;
});
