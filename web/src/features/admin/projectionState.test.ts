import { describe, expect, it } from 'vitest'
import { allCaughtUp, parseProjectionState } from './projectionState'

describe('projection state', () => {
  it('parses live, rebuilding and failed', () => {
    expect(parseProjectionState('live')).toEqual({ kind: 'live' })
    expect(parseProjectionState('rebuilding 42%')).toEqual({ kind: 'rebuilding', percent: 42 })
    expect(parseProjectionState('rebuilding')).toEqual({ kind: 'rebuilding', percent: null })
    expect(parseProjectionState('failed at 1234: KeyError: x')).toEqual({ kind: 'failed', position: 1234, error: 'KeyError: x' })
  })
  it('is caught up only when every projection is live with no lag', () => {
    expect(allCaughtUp([])).toBe(false)
    expect(allCaughtUp([{ state: 'live', lag_events: 0 }, { state: 'rebuilding 10%', lag_events: 0 }])).toBe(false)
    expect(allCaughtUp([{ state: 'live', lag_events: 3 }])).toBe(false)
    expect(allCaughtUp([{ state: 'live', lag_events: 0 }])).toBe(true)
  })
})
