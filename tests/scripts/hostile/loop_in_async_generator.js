// expect: fuel_exhausted
// An async generator that never finishes, consumed with for await.
madrpc.register('loop_in_async_generator', async () => {
  async function* forever() {
    for (let i = 0; ; i++) yield i;
  }
  let last = 0;
  for await (const value of forever()) last = value;
  return last;
});
