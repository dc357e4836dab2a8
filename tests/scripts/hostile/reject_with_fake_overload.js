// expect: guest_threw
// A rejection dressed as the grid's own "overloaded" error: it must stay a
// guest error, never become a refusal that the gateway retries.
madrpc.register('reject_with_fake_overload', async () => {
  await null;
  throw { code: -32010, message: 'overloaded', data: { kind: 'overloaded' } };
});
