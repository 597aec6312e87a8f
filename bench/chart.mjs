// A dependency-free SVG chart of a bench run: throughput bars and p99 markers per scenario.

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

/** @param {{scenario: string, rps: number, p99: number}[]} results */
export function chartSvg(results, title) {
  const rowH = 26;
  const left = 170;
  const width = 860;
  const barW = 420;
  const top = 50;
  const height = top + results.length * rowH + 40;
  const maxRps = Math.max(...results.map((r) => r.rps), 1);
  const maxP99 = Math.max(...results.map((r) => r.p99), 1);
  const rows = results
    .map((r, i) => {
      const y = top + i * rowH;
      const w = Math.max(1, (r.rps / maxRps) * barW);
      const px = left + barW + 30 + (r.p99 / maxP99) * 180;
      return [
        `<text x="${left - 8}" y="${y + 16}" text-anchor="end">${esc(r.scenario)}</text>`,
        `<rect x="${left}" y="${y + 4}" width="${w.toFixed(1)}" height="16" fill="#3b82f6"/>`,
        `<text x="${left + w + 4}" y="${y + 16}" fill="#1e3a8a">${r.rps.toLocaleString('en-US')}/s</text>`,
        `<circle cx="${px.toFixed(1)}" cy="${y + 12}" r="5" fill="#dc2626"/>`,
        `<text x="${(px + 8).toFixed(1)}" y="${y + 16}" fill="#7f1d1d">${r.p99} ms</text>`,
      ].join('');
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="12" y="22" font-size="15" font-weight="bold">${esc(title)}</text>
<text x="${left}" y="42" fill="#1e3a8a">requests per second (bars)</text>
<text x="${left + barW + 30}" y="42" fill="#7f1d1d">p99 latency (dots)</text>
${rows}
</svg>
`;
}
