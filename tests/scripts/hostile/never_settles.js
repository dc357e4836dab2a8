// expect: never_settled
// A Promise nothing can settle.
madrpc.register('never_settles', () => new Promise(() => {}));
