// expect: fuel_exhausted
// A comparator that never returns, called from inside a builtin.
madrpc.register('loop_in_sort_comparator', () => [3, 1, 2].sort(() => {
  for (;;) {}
}));
