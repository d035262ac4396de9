/** Display helpers for times (UNIX microseconds, shown in the browser's local zone) and rates. */

const pad = (n: number, w = 2): string => String(n).padStart(w, '0')

/** "YYYY-MM-DD HH:mm:ss" in local time. */
export function fmtDateTime(us: number | null | undefined): string {
  if (us === null || us === undefined || us <= 0) return '—'
  const d = new Date(us / 1000)
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtClock(us)}`
}

/** "HH:mm:ss" in local time. */
export function fmtClock(us: number): string {
  const d = new Date(us / 1000)
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}

/** "1h 02m 03s" style duration; compact and language-neutral. */
export function fmtDuration(us: number): string {
  let s = Math.max(0, Math.round(us / 1e6))
  const h = Math.floor(s / 3600)
  s -= h * 3600
  const m = Math.floor(s / 60)
  s -= m * 60
  if (h) return `${h}h ${pad(m)}m ${pad(s)}s`
  if (m) return `${m}m ${pad(s)}s`
  return `${s}s`
}

export function fmtBitrate(bps: number | null | undefined): string {
  if (!bps) return '—'
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbps`
  return `${Math.round(bps / 1e3)} kbps`
}

export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`
}

export function fmtResolution(w: number | null | undefined, h: number | null | undefined): string {
  return w && h ? `${w}×${h}` : '—'
}

/** Local-midnight bounds [start, end) of the day containing `date`, in µs (DST-safe: next midnight, not +24 h). */
export function dayBoundsUs(date: Date): { from: number; to: number } {
  const start = new Date(date.getFullYear(), date.getMonth(), date.getDate())
  const end = new Date(date.getFullYear(), date.getMonth(), date.getDate() + 1)
  return { from: start.getTime() * 1000, to: end.getTime() * 1000 }
}
