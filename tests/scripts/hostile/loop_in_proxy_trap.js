// expect: fuel_exhausted
// A Proxy whose `ownKeys` trap never returns, reached by serializing it.
madrpc.register('loop_in_proxy_trap', () => new Proxy({}, {
  ownKeys() {
    for (;;) {}
  },
}));
