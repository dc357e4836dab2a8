// Functions for the job tests.
// Busy for `ms` milliseconds of wall-clock time, then returns `tag`.
madrpc.register('busy', (ms, tag) => {
  const end = Date.now() + ms;
  while (Date.now() < end);
  return tag === undefined ? ms : tag;
});
// Fans out `count` busy sub-calls of `ms` each.
madrpc.register('spread', async (count, ms) => {
  const parts = await Promise.all(Array.from({ length: count }, (_, i) => madrpc.call('busy', [ms, i])));
  return parts.reduce((a, b) => a + b, 0);
});
madrpc.register('fail', () => {
  throw new Error('no luck');
});
madrpc.register('add', (a, b) => a + b);
// `rounds` rounds, one after the other, of `width` busy sub-calls of `ms`
// each; returns how many ran.
madrpc.register('relay', async (rounds, width, ms) => {
  let ran = 0;
  for (let r = 0; r < rounds; r++) {
    const parts = await Promise.all(Array.from({ length: width }, () => madrpc.call('busy', [ms, 1])));
    ran += parts.reduce((a, b) => a + b, 0);
  }
  return ran;
});
