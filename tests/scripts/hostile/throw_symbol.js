// expect: guest_threw
// A symbol cannot even be turned into a string implicitly.
madrpc.register('throw_symbol', () => {
  throw Symbol('secret');
});
