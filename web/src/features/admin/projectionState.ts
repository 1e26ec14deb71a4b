/** A projection's `state` string (`live`, `rebuilding N%`, `failed at P: error`), taken apart. */

export type ProjectionPhase =
  | { kind: 'live' }
  | { kind: 'rebuilding'; percent: number | null }
  | { kind: 'failed'; position: number | null; error: string }
  | { kind: 'other'; text: string }

export function parseProjectionState(state: string | null | undefined): ProjectionPhase {
  const s = (state ?? '').trim()
  if (s === 'live') return { kind: 'live' }
  const rebuilding = /^rebuilding\b\s*(\d+(?:\.\d+)?)?\s*%?/i.exec(s)
  if (rebuilding) return { kind: 'rebuilding', percent: rebuilding[1] !== undefined ? Number(rebuilding[1]) : null }
  const failed = /^failed(?:\s+at\s+(\d+))?\s*:?\s*(.*)$/is.exec(s)
  if (failed) return { kind: 'failed', position: failed[1] !== undefined ? Number(failed[1]) : null, error: failed[2] ?? '' }
  return { kind: 'other', text: s }
}

/** True once every projection is live and caught up (after an erasure, a rebuild). */
export function allCaughtUp(projections: readonly { state: string; lag_events: number }[]): boolean {
  return projections.length > 0 && projections.every((p) => p.state === 'live' && p.lag_events === 0)
}
