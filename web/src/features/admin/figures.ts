/** How the admin pages write numbers; a figure the server did not send is "—". */
export const DASH = '—'

type N = number | null | undefined

const has = (v: N): v is number => typeof v === 'number' && Number.isFinite(v)

export function count(v: N): string {
  return has(v) ? Math.round(v).toLocaleString('en') : DASH
}

export function decimal(v: N, digits = 1): string {
  return has(v) ? v.toFixed(digits) : DASH
}

export function ms(v: N): string {
  return has(v) ? `${Math.round(v)} ms` : DASH
}

export function percent(v: N, digits = 1): string {
  return has(v) ? `${v.toFixed(digits)} %` : DASH
}

/** A fraction 0..1 as per cent. */
export function fractionPercent(v: N, digits = 2): string {
  return has(v) ? `${(v * 100).toFixed(digits)} %` : DASH
}

export function bytes(v: N): string {
  if (!has(v)) return DASH
  const units = ['B', 'KB', 'MB', 'GB', 'TB']
  let value = v
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`
}

export function dateTime(iso: string | null | undefined): string {
  if (!iso) return DASH
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? DASH : d.toLocaleString()
}
