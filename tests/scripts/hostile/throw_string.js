// expect: guest_threw
// A thrown string is not an Error.
madrpc.register('throw_string', () => {
  throw 'plain string';
});
