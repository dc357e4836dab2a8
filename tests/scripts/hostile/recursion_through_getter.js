// expect: stack_overflow
// A getter that reads itself.
madrpc.register('recursion_through_getter', () => {
  const o = {
    get self() {
      return this.self;
    },
  };
  return o.self;
});
