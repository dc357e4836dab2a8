'use strict';
// A data-heavy call: the params carry many small objects and the function
// adds up one field. scripts/bench-grid sends 2,500 objects (about 125 KB).
madrpc.register('sum_field', ({ items }) => {
  let total = 0;
  for (const item of items) total += item.qty;
  return total;
});
