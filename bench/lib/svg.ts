/** A hand-rolled SVG chart (no dependency): log-scale line panels and grouped bar panels. */

export interface Series {
  name: string
  color: string
  points: readonly { x: number | string; y: number }[]
}

export interface Panel {
  title: string
  kind: 'line' | 'bar'
  yLabel: string
  /** Log scale (values <= 0 or NaN are skipped). */
  log?: boolean
  series: readonly Series[]
  /** Horizontal dashed line (a target), with its label. */
  target?: { y: number; label: string }
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const fmt = (v: number): string => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toPrecision(2))

function panel(p: Panel, x0: number, y0: number, w: number, h: number): string {
  const padL = 58
  const padB = 36
  const padT = 26
  const iw = w - padL - 12
  const ih = h - padT - padB
  const cats = [...new Set(p.series.flatMap((s) => s.points.map((pt) => String(pt.x))))]
  const ys = p.series
    .flatMap((s) => s.points.map((pt) => pt.y))
    .concat(p.target ? [p.target.y] : [])
    .filter((v) => Number.isFinite(v) && (!p.log || v > 0))
  let lo = p.log ? Math.min(...ys) / 1.5 : 0
  let hi = Math.max(...ys) * (p.log ? 1.5 : 1.1)
  if (ys.length === 0) [lo, hi] = [p.log ? 0.1 : 0, 1]
  const ty = (v: number): number => {
    const f = p.log ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : (v - lo) / (hi - lo || 1)
    return y0 + padT + ih - f * ih
  }
  const out: string[] = [`<text x="${x0 + w / 2}" y="${y0 + 16}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`]
  out.push(`<rect x="${x0 + padL}" y="${y0 + padT}" width="${iw}" height="${ih}" fill="none" stroke="#999"/>`)
  const ticks: number[] = []
  if (p.log) for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) ticks.push(10 ** e)
  else for (let i = 0; i <= 4; i++) ticks.push(lo + ((hi - lo) * i) / 4)
  for (const t of ticks) {
    if (t < lo || t > hi) continue
    out.push(`<line x1="${x0 + padL}" x2="${x0 + padL + iw}" y1="${ty(t)}" y2="${ty(t)}" stroke="#eee"/>`)
    out.push(`<text x="${x0 + padL - 4}" y="${ty(t) + 4}" text-anchor="end" font-size="10">${fmt(t)}</text>`)
  }
  out.push(
    `<text x="${x0 + 12}" y="${y0 + padT + ih / 2}" font-size="10" transform="rotate(-90 ${x0 + 12} ${y0 + padT + ih / 2})" text-anchor="middle">${esc(p.yLabel)}</text>`,
  )
  const slot = iw / Math.max(1, cats.length)
  cats.forEach((c, i) => out.push(`<text x="${x0 + padL + slot * (i + 0.5)}" y="${y0 + padT + ih + 14}" text-anchor="middle" font-size="10">${esc(c)}</text>`))
  if (p.target && Number.isFinite(p.target.y)) {
    out.push(`<line x1="${x0 + padL}" x2="${x0 + padL + iw}" y1="${ty(p.target.y)}" y2="${ty(p.target.y)}" stroke="#c00" stroke-dasharray="5,4"/>`)
    out.push(`<text x="${x0 + padL + iw - 4}" y="${ty(p.target.y) - 4}" text-anchor="end" font-size="10" fill="#c00">${esc(p.target.label)}</text>`)
  }
  const ok = (v: number): boolean => Number.isFinite(v) && (!p.log || v > 0)
  p.series.forEach((s, si) => {
    if (p.kind === 'line') {
      const pts = s.points.filter((pt) => ok(pt.y)).map((pt) => [x0 + padL + slot * (cats.indexOf(String(pt.x)) + 0.5), ty(pt.y)] as const)
      if (pts.length > 1)
        out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' ')}"/>`)
      for (const [a, b] of pts) out.push(`<circle cx="${a.toFixed(1)}" cy="${b.toFixed(1)}" r="3" fill="${s.color}"/>`)
    } else {
      const bw = (slot * 0.8) / p.series.length
      for (const pt of s.points) {
        if (!ok(pt.y)) continue
        const bx = x0 + padL + slot * cats.indexOf(String(pt.x)) + slot * 0.1 + bw * si
        const by = ty(pt.y)
        const base = p.log ? y0 + padT + ih : ty(0)
        out.push(
          `<rect x="${bx.toFixed(1)}" y="${by.toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${Math.max(0.5, base - by).toFixed(1)}" fill="${s.color}"><title>${esc(`${s.name} ${pt.x}: ${fmt(pt.y)}`)}</title></rect>`,
        )
        out.push(`<text x="${(bx + bw / 2).toFixed(1)}" y="${(by - 2).toFixed(1)}" text-anchor="middle" font-size="8">${fmt(pt.y)}</text>`)
      }
    }
  })
  p.series.forEach((s, si) => {
    const ly = y0 + padT + 6 + si * 13
    out.push(
      `<rect x="${x0 + padL + 6}" y="${ly}" width="10" height="8" fill="${s.color}"/><text x="${x0 + padL + 20}" y="${ly + 8}" font-size="10">${esc(s.name)}</text>`,
    )
  })
  return out.join('\n')
}

/** Panels laid out two per row. */
export function renderSvg(title: string, subtitle: string, panels: readonly Panel[]): string {
  const w = 480
  const h = 300
  const rows = Math.ceil(panels.length / 2)
  const W = w * 2
  const H = 50 + rows * h
  const body = panels.map((p, i) => panel(p, (i % 2) * w, 50 + Math.floor(i / 2) * h, w, h)).join('\n')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>
<text x="${W / 2}" y="38" text-anchor="middle" font-size="11" fill="#555">${esc(subtitle)}</text>
${body}
</svg>
`
}
