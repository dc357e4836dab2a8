// expect: fuel_exhausted
// A loop in `finally` runs after the function has already decided to return.
madrpc.register('loop_in_finally', () => {
  try {
    return 'done';
  } finally {
    for (;;) {}
  }
});
