// expect: memory_exceeded
// Asks for typed arrays far larger than the memory limit, and keeps them.
madrpc.register('memory_huge_buffer', () => {
  const keep = [];
  for (let size = 1 << 20; ; size *= 2) keep.push(new Float64Array(size));
});
