// Functions that produce large results, for the host's size caps.
madrpc.register('text', (n) => 'x'.repeat(n));
madrpc.register('gather', async (count, n) => {
  const settled = await Promise.allSettled(Array.from({ length: count }, () => madrpc.call('text', [n])));
  return settled.map((s) => (s.status === 'fulfilled' ? s.value.length : s.reason.data.kind));
});
