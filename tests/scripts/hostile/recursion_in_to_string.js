// expect: stack_overflow
// toString that converts its own object to a string, reached from a builtin.
madrpc.register('recursion_in_to_string', () => {
  const o = {
    toString() {
      return `<${o}>`;
    },
  };
  return String(o);
});
