// expect: memory_exceeded
// An endless chain of microtasks: each `then` schedules the next, and the
// chain of Promises it builds grows until the memory limit stops it.
madrpc.register('loop_in_promise_chain', () => {
  const step = (n) => Promise.resolve(n + 1).then(step);
  return step(0);
});
