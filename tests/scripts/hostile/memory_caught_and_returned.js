// expect: memory_exceeded
// Catches the out-of-memory error and returns as if nothing happened: the
// breach still ends the call.
madrpc.register('memory_caught_and_returned', () => {
  const hoard = [];
  try {
    for (;;) hoard.push(new Array(1 << 16).fill(1.5));
  } catch (error) {
    hoard.length = 0;
    return 'survived';
  }
});
