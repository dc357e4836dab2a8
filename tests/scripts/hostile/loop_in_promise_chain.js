// expect: fuel_exhausted
// An endless chain of microtasks: each `then` schedules the next.
madrpc.register('loop_in_promise_chain', () => {
  const step = (n) => Promise.resolve(n + 1).then(step);
  return step(0);
});
