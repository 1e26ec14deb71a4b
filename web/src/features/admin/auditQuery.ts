/** The audit feed's filters, as the query of `GET /api/audit/events` and of the export URL. */
import { withQuery, type Query } from '@/api/client'

export interface AuditFilters {
  type: string
  actor: string
  session: string
  /** `datetime-local` values (local time, no zone), or '' */
  since: string
  until: string
}

export const EMPTY_FILTERS: AuditFilters = { type: '', actor: '', session: '', since: '', until: '' }

/** A `datetime-local` value (the reader's local time) as an ISO-8601 instant, or undefined. */
export function localToIso(value: string): string | undefined {
  if (!value.trim()) return undefined
  const date = new Date(value)
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString()
}

const text = (v: string) => (v.trim() ? v.trim() : undefined)

export function auditEventsQuery(filters: AuditFilters, after: number | null = null, limit = 50): Query {
  return {
    type: text(filters.type),
    actor: text(filters.actor),
    session: text(filters.session),
    since: localToIso(filters.since),
    until: localToIso(filters.until),
    after: after ?? undefined,
    limit,
  }
}

/** The JSONL export of the filtered session and/or time range (type and actor do not apply). */
export function auditExportUrl(filters: Pick<AuditFilters, 'session' | 'since' | 'until'>): string {
  return withQuery('/api/audit/export', {
    session: text(filters.session),
    since: localToIso(filters.since),
    until: localToIso(filters.until),
  })
}
