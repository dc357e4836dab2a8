// expect: stack_overflow
// Mutual recursion through Function.prototype.apply and bound functions.
madrpc.register('recursion_through_apply', () => {
  const ping = (n) => pong.apply(null, [n + 1]);
  const pong = ((n) => ping.call(null, n + 1)).bind(null);
  return ping(0);
});
