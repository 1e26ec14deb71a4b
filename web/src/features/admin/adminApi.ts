/** Calls of the admin console (`/api/admin/*`, `/api/audit/*`), typed by `models.ts`. */
import { api, NetworkError, ProblemError, type Query } from '@/api/client'
import { en } from '@/i18n/en'
import { enAdmin } from '@/i18n/en-admin'
import type {
  AdminUser,
  ChainHead,
  CollectResult,
  Dashboard,
  EventPage,
  OneTimeLink,
  ProjectionStatus,
  Quotas,
  StorageReport,
  UserDetail,
  UserPage,
  Verification,
} from './models'

const id = (value: string) => encodeURIComponent(value)

export const adminApi = {
  dashboard: () => api.get<Dashboard>('/api/admin/dashboard'),

  users: (q: string, cursor: string | null, limit = 25) =>
    api.get<UserPage>('/api/admin/users', { query: { q: q.trim() || undefined, cursor: cursor ?? undefined, limit } }),
  user: (userId: string) => api.get<UserDetail>(`/api/admin/users/${id(userId)}`),
  changeUser: (userId: string, change: { role: string } | { disabled: boolean }) =>
    api.patch<AdminUser | undefined>(`/api/admin/users/${id(userId)}`, change),
  setQuotas: (userId: string, quotas: Quotas) => api.put<unknown>(`/api/admin/users/${id(userId)}/quotas`, quotas),
  erase: (userId: string) => api.post<unknown>(`/api/admin/users/${id(userId)}/erase`),
  resetPassword: (userId: string) => api.post<OneTimeLink>(`/api/admin/users/${id(userId)}/password-reset`),
  invite: (email: string, role: string) => api.post<OneTimeLink>('/api/admin/invitations', { email, role }),

  projections: () => api.get<ProjectionStatus[]>('/api/admin/projections'),
  rebuild: (name: string) => api.post<unknown>(`/api/admin/projections/${id(name)}/rebuild`),
  retry: (name: string) => api.post<unknown>(`/api/admin/projections/${id(name)}/retry`),

  events: (query: Query) => api.get<EventPage>('/api/audit/events', { query }),
  chain: () => api.get<ChainHead>('/api/audit/chain'),
  verify: () => api.post<Verification>('/api/audit/verifications'),
  latestVerification: () => api.get<Verification>('/api/audit/verifications/latest'),

  storage: () => api.get<StorageReport>('/api/admin/storage'),
  collect: () => api.post<CollectResult>('/api/admin/storage/collect'),
}

/** A refusal or failure of an admin call, in words. */
export function describeProblem(error: unknown): string {
  if (error instanceof NetworkError) return en.app.offline
  if (!(error instanceof ProblemError)) return en.app.unexpected
  if (error.status === 403) return enAdmin.forbidden
  if (error.fieldErrors.length > 0) return error.fieldErrors.map((e) => en.account.fieldError(e.field, e.message)).join(' ')
  return error.detail ?? error.title
}
