// expect: deadline_exceeded
// deadline-ms: 300
// Sub-calls in rounds, each spinning until its fuel runs out; the parent
// catches every failure and starts the next round until its deadline passes.
madrpc.register('slow_chain_of_subcalls', async () => {
  for (let i = 0; i < 60; i++) {
    try {
      await madrpc.call('burn');
    } catch (error) {
      // next round
    }
  }
  return 'finished';
});
madrpc.register('burn', () => {
  for (;;) {}
});
