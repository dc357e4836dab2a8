// expect: too_many_subcalls
// message: sub-call limit of 64 per call reached
// A thousand sub-calls at once, far over --max-subcalls.
madrpc.register('fanout_wide', async () => {
  const all = Array.from({ length: 1000 }, (_, i) => madrpc.call('sum_squares', [i % 10]));
  return (await Promise.all(all)).length;
});
