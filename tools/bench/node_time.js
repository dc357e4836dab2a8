'use strict';
// Times one function of a madrpc script in plain Node and prints
// {"median_ms", "median_cpu_ms", "result"}: the median wall-clock and CPU
// time of RUNS calls, and the last result.
//
//   node --jitless tools/bench/node_time.js SCRIPT METHOD PARAMS_JSON RUNS
const path = require('node:path');
const [script, method, paramsJson = '{}', runsText = '5'] = process.argv.slice(2);
const fn = require('./madrpc_shim')(path.resolve(script))[method];
if (typeof fn !== 'function') {
  console.error(`${script} registers no function '${method}'`);
  process.exit(1);
}
const params = JSON.parse(paramsJson);
const times = [];
const cpuTimes = [];
let result;
for (let run = 0; run < Number(runsText); run++) {
  const started = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  result = Array.isArray(params) ? fn(...params) : fn(params);
  const used = process.cpuUsage(cpu);
  times.push(Number(process.hrtime.bigint() - started) / 1e6);
  cpuTimes.push((used.user + used.system) / 1e3);
}
const median = (values) => values.sort((a, b) => a - b)[values.length >> 1];
console.log(JSON.stringify({ median_ms: median(times), median_cpu_ms: median(cpuTimes), result }));
