// expect: memory_exceeded
// Doubles a string and keeps every copy.
madrpc.register('memory_string_doubling', () => {
  let s = 'x';
  const keep = [];
  for (;;) {
    s = s.repeat(2);
    keep.push(s);
  }
});
