// expect: result_too_large
// Many small values that together are over --max-result.
madrpc.register('huge_result_of_small_parts', () => Array.from({ length: 20000 }, (_, i) => i));
