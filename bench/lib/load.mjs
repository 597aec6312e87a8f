// The bench's load generator: autocannon at a fixed concurrency, with what a run needs to know
// about the answers that were not 2xx and the requests that got none.
import autocannon from 'autocannon';
import { ownChildren, untilQuiet } from '../../scripts/lib/runtime.mjs';

/**
 * `load(url, requests, seconds?, conns?)` runs autocannon and returns req/s and latency
 * percentiles; `pass(url, requests, amount)` sends `amount` requests and waits for every answer
 * (a warm-up pass); `measure(url, requests)` is `warmup` seconds of load, then `duration`;
 * `pairedRounds` measures a scenario against another in back-to-back rounds.
 */
export function loadGenerator({ connections, duration, warmup }) {
  function load(url, requests, seconds = duration, conns = connections) {
    return new Promise((resolve, reject) => {
      const failures = new Map();
      const instance = autocannon({ url, connections: conns, duration: seconds, requests }, (error, result) => {
        if (error) return reject(error);
        resolve({
          rps: Math.round(result.requests.average),
          p50: result.latency.p50,
          p99: result.latency.p99,
          p999: result.latency.p99_9 ?? result.latency.p999 ?? result.latency.p99,
          non2xx: result.non2xx,
          // Which statuses the non-2xx answers were, for the log.
          codes: Object.keys(result.statusCodeStats ?? {}).filter((code) => !code.startsWith('2')).map((code) => `${code}×${result.statusCodeStats[code].count}`).join(' '),
          // autocannon counts a timeout (no answer within its 10 s) as an error too.
          errors: result.errors,
          // What they were, by error code ('request timed out' for the timeouts).
          failures: [...failures].map(([what, n]) => `${what}×${n}`).join(' '),
          total: result.requests.total,
        });
      });
      instance.on('reqError', (error) => {
        const what = error.code ?? error.message;
        failures.set(what, (failures.get(what) ?? 0) + 1);
      });
    });
  }

  function pass(url, requests, amount) {
    return new Promise((resolve, reject) => {
      autocannon({ url, connections, amount, requests }, (error, result) => (error ? reject(error) : resolve(result)));
    });
  }

  async function measure(url, requests) {
    await load(url, requests, warmup);
    return load(url, requests);
  }

  /**
   * The median ratio of `scenario` to `against` (each a URL and its requests) over `pairs`
   * pairs of back-to-back rounds; each pair's order alternates (`against` first, then the scenario
   * first), so that a drift of the machine's speed during a pair counts against each side as
   * often. Every round starts with the machine quiet. `against` gets a second of uncounted load
   * first: it has been idle since its own window, and the runtime evicts Durable Objects idle
   * for 10 s, so its first round would otherwise start every object cold.
   */
  async function pairedRounds(scenario, against, pairs, pairSeconds) {
    const { url: base, requests } = scenario;
    const ratios = [];
    /** Each pair's two rates (req/s), `against` first: a ratio alone cannot say which side moved. */
    const rates = [];
    /** How long the machine stayed busy after each of the scenario's rounds. */
    const settled = [];
    /** Requests answered per second of the round plus the time the machine then stayed busy. */
    const round = async (url, reqs) => {
      const { total } = await load(url, reqs, pairSeconds);
      // Both runtimes and the mock: what the round left behind runs in any of them.
      const { busyMs } = await untilQuiet(ownChildren());
      if (reqs === requests) settled.push(busyMs);
      return total / (pairSeconds + busyMs / 1000);
    };
    await load(against.url, against.requests, 1);
    await untilQuiet(ownChildren());
    for (let i = 0; i < pairs; i++) {
      const againstFirst = i % 2 === 0;
      const first = againstFirst ? await round(against.url, against.requests) : await round(base, requests);
      const second = againstFirst ? await round(base, requests) : await round(against.url, against.requests);
      const [againstRate, scenarioRate] = againstFirst ? [first, second] : [second, first];
      ratios.push(Math.round((scenarioRate / againstRate) * 100) / 100);
      rates.push([Math.round(againstRate), Math.round(scenarioRate)]);
    }
    const sorted = [...ratios].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    const median = sorted.length % 2 ? sorted[mid] : Math.round(((sorted[mid - 1] + sorted[mid]) / 2) * 100) / 100;
    return { pairedWith: against.scenario, pairedRatio: median, pairedRatios: ratios, pairedRates: rates, settledMs: settled };
  }

  return { load, pass, measure, pairedRounds };
}
