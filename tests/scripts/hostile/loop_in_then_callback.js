// expect: fuel_exhausted
// The loop starts only once the function has returned its Promise.
madrpc.register('loop_in_then_callback', () => Promise.resolve().then(() => {
  while (true) {}
}));
