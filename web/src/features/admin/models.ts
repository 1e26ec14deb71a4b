/**
 * Admin and audit wire types, typed by hand from the backend contract until `openapi.json`
 * (produced on main) describes them. Fields the server may not send yet are optional: the views
 * show "—" for them.
 */

export interface ProjectionStatus {
  name: string
  position: number
  head: number
  lag_events: number
  lag_seconds: number
  /** `live`, `rebuilding N%`, or `failed at P: error`. */
  state: string
  events_per_second?: number | null
}

export interface DashboardPoint {
  at: string
  requests_per_second?: number | null
  p99_ms?: number | null
  error_rate?: number | null
  events_per_second?: number | null
  cpu_percent?: number | null
  memory_percent?: number | null
  open_websockets?: number | null
}

export interface Dashboard {
  at: string
  head?: number | null
  requests_per_second?: number | null
  response_ms?: { p50?: number | null; p95?: number | null; p99?: number | null } | null
  error_rate?: number | null
  open_websockets?: number | null
  active_users?: number | null
  events_per_second?: number | null
  projections?: ProjectionStatus[] | null
  replies?: { in_flight?: number | null; failed?: number | null } | null
  conversions?: { in_flight?: number | null; failed?: number | null } | null
  process?: { cpu_percent?: number | null; memory_bytes?: number | null; memory_percent?: number | null } | null
  series?: DashboardPoint[] | null
}

export type Role = 'user' | 'admin' | 'auditor'
export const ROLES: Role[] = ['user', 'auditor', 'admin']

export interface AdminUser {
  id: string
  email: string
  display_name: string
  role: string
  disabled: boolean
  created_at?: string
  position?: number
}

export interface UserPage {
  items: AdminUser[]
  next_cursor: string | null
}

export interface Quotas {
  messages_per_day: number | null
  replies_per_day: number | null
  storage_bytes: number | null
}

export interface UserDetail {
  user: AdminUser
  sessions?: number | null
  usage?: {
    day?: string
    resets_at?: string
    messages_today?: number | null
    replies_today?: number | null
    storage_bytes?: number | null
    quotas?: Partial<Quotas> | null
  } | null
}

/** A one-time link: an invitation (with email and role) or a password reset. */
export interface OneTimeLink {
  token: string
  url: string
  expires_at: string
  email?: string
  role?: string
}

export interface AuditEvent {
  position: number
  type: string
  aggregate_id: string
  version: number
  at: string
  actor_id: string | null
  correlation_id: string | null
  data: unknown
}

export interface EventPage {
  items: AuditEvent[]
  next_after: number | null
}

export interface ChainHead {
  head_position: number
  head_hash: string
}

export interface Verification {
  id: string
  state: 'running' | 'intact' | 'broken'
  checked?: number | null
  first_broken_position?: number | null
  detail?: string | null
  started_at?: string | null
  finished_at?: string | null
}

export interface StorageReport {
  blob_bytes?: number | null
  blob_count?: number | null
  unreferenced_count?: number | null
  unreferenced_bytes?: number | null
  retention_default_days?: number | null
  sessions_with_retention?: { session_id: string; title: string | null; retention_days: number }[] | null
  next_retention_run_at?: string | null
}

export interface CollectResult {
  removed: number
  bytes: number
}
