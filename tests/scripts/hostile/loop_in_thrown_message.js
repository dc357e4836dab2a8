// expect: fuel_exhausted
// A thrown object whose `message` getter never returns: reading the error
// must not hang the host.
madrpc.register('loop_in_thrown_message', () => {
  throw {
    get message() {
      for (;;) {}
    },
  };
});
