// expect: fuel_exhausted
// toJSON runs while the host waits for the result document.
madrpc.register('loop_in_to_json', () => ({ nested: { toJSON() { for (;;) {} } } }));
