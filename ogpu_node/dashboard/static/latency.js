// Finality latency as this browser sees it: a block's timestamp (its proposer's clock) to the
// moment its `blocks` notification arrives here. The node records no finality time of its own,
// so the page measures it; the proposer's and this computer's clock offsets are part of it.

import { svg } from "./ui.js";

export const BUCKETS_MS = [250, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000];
const MAX_SAMPLES = 1000;

export class LatencyHistogram {
  constructor() {
    this.samples = [];
  }

  add(ms) {
    this.samples.push(Math.max(0, ms));
    if (this.samples.length > MAX_SAMPLES) this.samples.shift();
  }

  median() {
    if (!this.samples.length) return null;
    const sorted = [...this.samples].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  }

  counts() {
    const counts = new Array(BUCKETS_MS.length + 1).fill(0);
    for (const ms of this.samples) {
      const i = BUCKETS_MS.findIndex((edge) => ms < edge);
      counts[i === -1 ? BUCKETS_MS.length : i] += 1;
    }
    return counts;
  }

  /** An SVG bar chart, one bar per bucket, labelled with its upper edge. */
  draw() {
    const counts = this.counts();
    const width = 520;
    const height = 180;
    const barW = width / counts.length;
    const top = Math.max(1, ...counts);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height + 34}`, width: "100%",
      role: "img", "aria-label": "finality latency histogram" });
    chart.append(svg("line", { class: "axis", x1: 0, y1: height, x2: width, y2: height }));
    counts.forEach((count, i) => {
      const h = (count / top) * (height - 16);
      const x = i * barW + 4;
      chart.append(svg("rect", { class: "bar", x, y: height - h, width: barW - 8, height: h }));
      if (count) chart.append(svg("text", { x: x + 2, y: height - h - 3 }, count));
      const label = i < BUCKETS_MS.length ? `<${BUCKETS_MS[i]}` : `≥${BUCKETS_MS.at(-1)}`;
      chart.append(svg("text", { x: x, y: height + 16 }, label));
    });
    chart.append(svg("text", { x: 0, y: height + 32 }, "latency, ms"));
    return chart;
  }
}

export function formatMs(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(ms % 1000 ? 1 : 0)} s` : `${Math.round(ms)} ms`;
}
