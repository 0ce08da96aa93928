// Earnings by period (`provider_earnings` buckets) as an SVG bar plot of the net amount per
// period, oldest on the left. Net can be negative (a slash larger than the period's pay): such
// bars hang below the zero line. Drawn here, no chart library.

import { svg } from "./ui.js";

const [W, H, PAD, LABEL_H] = [900, 180, 48, 16];
const MAX_LABELS = 12; // label every n-th bar so that labels do not overlap

/** A bucket's period as text: a UTC hour or day, or an epoch with its heights. */
export function bucketLabel(bucket) {
  if (bucket.epoch !== undefined) return `epoch ${bucket.epoch}`;
  const iso = new Date(bucket.startMs).toISOString();
  return bucket.endMs - bucket.startMs > 3600000 ? iso.slice(0, 10) : `${iso.slice(0, 13)}:00`;
}

/** The plot of `buckets` (newest first, as the RPC answers). */
export function netBars(buckets) {
  const series = [...buckets].reverse().map((b) => ({ label: bucketLabel(b),
    net: Number(BigInt(b.net)) / 1e9 }));
  const top = Math.max(0, ...series.map((s) => s.net));
  const bottom = Math.min(0, ...series.map((s) => s.net));
  const span = top - bottom || 1;
  const plotH = H - LABEL_H - 8;
  const y = (v) => 8 + ((top - v) / span) * plotH;
  const step = (W - 2 * PAD) / Math.max(1, series.length);
  const every = Math.ceil(series.length / MAX_LABELS);
  const parts = [svg("line", { class: "axis", x1: PAD, y1: y(0), x2: W - PAD, y2: y(0) }),
    svg("text", { x: 2, y: y(top) + 4 }, `${+top.toPrecision(4)}`),
    svg("text", { x: 2, y: y(bottom) + 4 }, bottom < 0 ? `${+bottom.toPrecision(4)}` : ""),
    svg("text", { x: 2, y: y(0) + 4 }, top > 0 && bottom < 0 ? "0" : "")];
  series.forEach((s, i) => {
    const x = PAD + i * step + step * 0.15;
    const [y0, y1] = [y(Math.max(0, s.net)), y(Math.min(0, s.net))];
    parts.push(svg("rect", { class: s.net < 0 ? "bar neg" : "bar", x, y: y0,
      width: step * 0.7, height: Math.max(1, y1 - y0), "data-net": s.net },
    svg("title", {}, `${s.label}: ${s.net} OGPU net`)));
    if (i % every === 0) {
      parts.push(svg("text", { x, y: H - 2 }, s.label));
    }
  });
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img",
    "aria-label": "net earnings per period (OGPU)" }, parts);
}
