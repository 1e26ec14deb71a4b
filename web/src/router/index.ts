/** HTML5-history routes; every view is its own chunk so the first screen stays small. */
import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { useAccountStore } from '@/features/account/accountStore'
import { accessFor, adminHomeFor, isConsolePath, type StaffRole } from './access'

declare module 'vue-router' {
  interface RouteMeta {
    /** Reachable signed out (sign in, sign up, the links of invitations and password resets). */
    public?: boolean
    /** A public page that someone signed in may open too. */
    signedInToo?: boolean
    /** Only these roles may open it; anyone else gets the 403 page at the same address. */
    roles?: StaffRole[]
  }
}

export const routes: RouteRecordRaw[] = [
  { path: '/sign-in', name: 'sign-in', component: () => import('@/features/account/SignInView.vue'), meta: { public: true } },
  { path: '/sign-up', name: 'sign-up', component: () => import('@/features/account/SignUpView.vue'), meta: { public: true } },
  { path: '/invite/:token', name: 'invitation', component: () => import('@/features/account/InvitationView.vue'), props: true, meta: { public: true, signedInToo: true } },
  { path: '/reset/:token', name: 'password-reset', component: () => import('@/features/account/PasswordResetView.vue'), props: true, meta: { public: true, signedInToo: true } },
  { path: '/', name: 'home', component: () => import('@/features/sessions/SessionsHomeView.vue') },
  { path: '/sessions/:id', name: 'conversation', component: () => import('@/features/conversation/ConversationView.vue'), props: true },
  { path: '/sessions/:id/history', name: 'history', component: () => import('@/features/history/HistoryView.vue'), props: true },
  { path: '/documents', name: 'documents', component: () => import('@/features/documents/DocumentsView.vue') },
  { path: '/documents/:id', name: 'document', component: () => import('@/features/documents/DocumentPreviewView.vue'), props: true },
  { path: '/search', name: 'search', component: () => import('@/features/search/SearchView.vue') },
  { path: '/account', name: 'account', component: () => import('@/features/account/AccountView.vue') },
  { path: '/usage', name: 'usage', component: () => import('@/features/usage/UsageView.vue') },
  { path: '/:rest(.*)*', name: 'not-found', component: () => import('@/features/sessions/NotFoundView.vue') },
  // Reached by name only (the guard), so the address typed stays in the bar.
  { path: '/:rest(.*)*', name: 'forbidden', component: () => import('@/features/sessions/ForbiddenView.vue') },
]

export function createAppRouter() {
  const router = createRouter({
    history: createWebHistory(),
    routes,
    scrollBehavior: () => ({ top: 0 }),
  })
  router.beforeEach(async (to) => {
    const account = useAccountStore()
    try {
      await account.ensureLoaded()
    } catch {
      // Server unreachable: let the view show its own error; treat as signed out for routing.
    }
    const role = account.me?.role
    // The admin console's routes come with its own chunk, loaded the first time staff open it.
    if (isConsolePath(to.path) && !router.hasRoute('admin')) {
      if (account.isSignedIn && adminHomeFor(role)) {
        const { adminRoute } = await import('@/features/admin/routes')
        if (!router.hasRoute('admin')) router.addRoute(adminRoute)
        return to.fullPath
      }
    }
    // The 403 page keeps the refused address: do not judge that address again.
    if (to.name === 'forbidden' && account.isSignedIn) return true
    // An auditor's console starts at the audit pages.
    if (to.name === 'admin-dashboard' && role === 'auditor') return { name: 'admin-audit' }
    switch (accessFor(to.meta, account.isSignedIn, role, to.path)) {
      case 'sign-in':
        return { name: 'sign-in', query: to.fullPath !== '/' ? { redirect: to.fullPath } : {} }
      case 'home':
        return { name: 'home' }
      case 'forbidden':
        return { name: 'forbidden', params: { rest: to.path.slice(1).split('/') }, query: to.query, hash: to.hash, replace: true }
      default:
        return true
    }
  })
  return router
}
