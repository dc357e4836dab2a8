// expect: fuel_exhausted
// The plainest endless loop.
madrpc.register('loop_for', () => {
  for (;;) {}
});
