import { describe, expect, it } from 'vitest'
import { withQuery } from '@/api/client'
import { auditEventsQuery, auditExportUrl, EMPTY_FILTERS, localToIso } from './auditQuery'

describe('audit filters → query', () => {
  it('empty filters ask for the first page only', () => {
    expect(withQuery('/api/audit/events', auditEventsQuery(EMPTY_FILTERS))).toBe('/api/audit/events?limit=50')
  })
  it('sends trimmed text filters and leaves blank ones out', () => {
    const q = auditEventsQuery({ ...EMPTY_FILTERS, type: ' MessagePosted ', actor: 'u-1', session: '  ' })
    expect(q).toMatchObject({ type: 'MessagePosted', actor: 'u-1', limit: 50 })
    expect(q['session']).toBeUndefined()
  })
  it('turns datetime-local values (local time) into ISO instants', () => {
    const since = '2026-12-01T09:30'
    const q = auditEventsQuery({ ...EMPTY_FILTERS, since, until: '2026-12-01T10:00:15' })
    expect(q['since']).toBe(new Date(since).toISOString())
    expect(q['until']).toBe(new Date('2026-12-01T10:00:15').toISOString())
    expect(localToIso('not a date')).toBeUndefined()
    expect(localToIso('')).toBeUndefined()
  })
  it('"Next page" continues after next_after', () => {
    const url = withQuery('/api/audit/events', auditEventsQuery({ ...EMPTY_FILTERS, type: 'UserErased' }, 120, 25))
    expect(url).toBe('/api/audit/events?type=UserErased&after=120&limit=25')
  })
  it('the export URL carries the session and the time range, not type or actor', () => {
    expect(auditExportUrl({ session: 's-1', since: '', until: '' })).toBe('/api/audit/export?session=s-1')
    const url = auditExportUrl({ session: '', since: '2026-12-01T00:00', until: '' })
    expect(url).toBe(`/api/audit/export?since=${encodeURIComponent(new Date('2026-12-01T00:00').toISOString())}`)
    expect(auditExportUrl({ session: '', since: '', until: '' })).toBe('/api/audit/export')
  })
})
