/**
 * The admin console's routes, added to the router the first time an admin or auditor opens
 * `/admin…` (see `router/index.ts`), so the chat app's first screen carries none of them.
 */
import type { RouteRecordRaw } from 'vue-router'
import type { StaffRole } from '@/router/access'

const ADMIN: StaffRole[] = ['admin']
const STAFF: StaffRole[] = ['admin', 'auditor']

export const adminRoute: RouteRecordRaw = {
  path: '/admin',
  name: 'admin',
  component: () => import('./AdminLayout.vue'),
  meta: { roles: STAFF },
  children: [
    { path: '', name: 'admin-dashboard', component: () => import('./dashboard/DashboardView.vue'), meta: { roles: ADMIN } },
    { path: 'people', name: 'admin-people', component: () => import('./people/PeopleView.vue'), meta: { roles: ADMIN } },
    { path: 'people/:id', name: 'admin-person', component: () => import('./people/PersonDetailView.vue'), props: true, meta: { roles: ADMIN } },
    { path: 'projections', name: 'admin-projections', component: () => import('./projections/ProjectionsView.vue'), meta: { roles: ADMIN } },
    { path: 'audit', name: 'admin-audit', component: () => import('./audit/AuditView.vue'), meta: { roles: STAFF } },
    { path: 'audit/sessions/:id', name: 'admin-audit-session', component: () => import('./audit/AuditSessionView.vue'), props: true, meta: { roles: STAFF } },
    { path: 'storage', name: 'admin-storage', component: () => import('./storage/StorageView.vue'), meta: { roles: ADMIN } },
  ],
}
