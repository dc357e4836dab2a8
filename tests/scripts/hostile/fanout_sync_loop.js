// expect: too_many_subcalls
// message: sub-call limit of 64 per call reached
// Blocking sub-calls in an endless loop.
madrpc.register('fanout_sync_loop', () => {
  for (;;) madrpc.callSync('sum_squares', [3]);
});
