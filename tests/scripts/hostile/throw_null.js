// expect: guest_threw
// A thrown null has no message at all.
madrpc.register('throw_null', () => {
  throw null;
});
