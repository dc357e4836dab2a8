// expect: call_depth_exceeded
// message: call depth limit of 4 reached
// Each call calls itself again: a chain with no end.
madrpc.register('fanout_deep', async (n = 0) => madrpc.call('fanout_deep', [n + 1]));
