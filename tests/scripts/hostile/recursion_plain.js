// expect: stack_overflow
// Recursion without a base case.
madrpc.register('recursion_plain', () => {
  const dive = (n) => dive(n + 1) + 1;
  return dive(0);
});
