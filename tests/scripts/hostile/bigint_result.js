// expect: not_serializable
// A BigInt has no JSON form.
madrpc.register('bigint_result', () => ({ value: 2n ** 64n }));
