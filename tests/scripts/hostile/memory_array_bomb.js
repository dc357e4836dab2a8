// expect: memory_exceeded
// Keeps every array it makes.
madrpc.register('memory_array_bomb', () => {
  const hoard = [];
  for (;;) hoard.push(new Array(1 << 16).fill(1.5));
});
