// expect: call_depth_exceeded
// message: call depth limit of 4 reached
// Every call spawns four more of itself.
madrpc.register('fanout_exponential', async () => {
  const children = Array.from({ length: 4 }, () => madrpc.call('fanout_exponential'));
  return (await Promise.all(children)).length;
});
