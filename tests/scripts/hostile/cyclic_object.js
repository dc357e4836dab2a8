// expect: not_serializable
// A result that refers to itself.
madrpc.register('cyclic_object', () => {
  const a = { name: 'a' };
  a.self = { parent: a };
  return a;
});
