// expect: deadline_exceeded
// Sub-calls in rounds, each burning CPU, until the deadline passes.
madrpc.register('slow_chain_of_subcalls', async () => {
  for (let i = 0; i < 60; i++) await madrpc.call('burn', [200]);
  return 'finished';
});
madrpc.register('burn', (ms) => {
  const end = Date.now() + ms;
  let x = 0;
  while (Date.now() < end) x = (x + 1) | 0;
  return x;
});
