// expect: fuel_exhausted
// Catastrophic backtracking: (a+)+ against a string that almost matches.
madrpc.register('regex_nested_quantifiers', () => /^(a+)+$/.test('a'.repeat(64) + '!'));
