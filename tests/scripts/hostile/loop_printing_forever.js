// expect: fuel_exhausted
// Unbounded console output: kept up to --max-console, the rest dropped.
madrpc.register('loop_printing_forever', () => {
  const line = 'x'.repeat(1000);
  for (;;) console.log(line);
});
