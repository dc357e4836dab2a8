// expect: fuel_exhausted
// The result looks harmless; serializing it calls a getter that never ends.
madrpc.register('loop_in_getter_for_stringify', () => ({
  ok: true,
  get trap() {
    for (;;) {}
  },
}));
