// expect: not_serializable
// An array that contains itself.
madrpc.register('cyclic_array', () => {
  const list = [1, 2];
  list.push(list);
  return list;
});
