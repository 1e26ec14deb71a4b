/** HTML5-history routes; every view is its own chunk so the first screen stays small. */
import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { useAccountStore } from '@/features/account/accountStore'

declare module 'vue-router' {
  interface RouteMeta {
    /** Reachable signed out (sign in, sign up). */
    public?: boolean
  }
}

export const routes: RouteRecordRaw[] = [
  { path: '/sign-in', name: 'sign-in', component: () => import('@/features/account/SignInView.vue'), meta: { public: true } },
  { path: '/sign-up', name: 'sign-up', component: () => import('@/features/account/SignUpView.vue'), meta: { public: true } },
  { path: '/', name: 'home', component: () => import('@/features/sessions/SessionsHomeView.vue') },
  { path: '/sessions/:id', name: 'conversation', component: () => import('@/features/conversation/ConversationView.vue'), props: true },
  { path: '/sessions/:id/history', name: 'history', component: () => import('@/features/history/HistoryView.vue'), props: true },
  { path: '/documents', name: 'documents', component: () => import('@/features/documents/DocumentsView.vue') },
  { path: '/documents/:id', name: 'document', component: () => import('@/features/documents/DocumentPreviewView.vue'), props: true },
  { path: '/search', name: 'search', component: () => import('@/features/search/SearchView.vue') },
  { path: '/account', name: 'account', component: () => import('@/features/account/AccountView.vue') },
  { path: '/usage', name: 'usage', component: () => import('@/features/usage/UsageView.vue') },
  // The admin console will be a bundle of its own; for now a placeholder.
  { path: '/admin', name: 'admin', component: () => import('@/features/admin/AdminView.vue') },
  { path: '/:rest(.*)*', name: 'not-found', component: () => import('@/features/sessions/NotFoundView.vue') },
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
    if (!to.meta.public && !account.isSignedIn) {
      return { name: 'sign-in', query: to.fullPath !== '/' ? { redirect: to.fullPath } : {} }
    }
    if (to.meta.public && account.isSignedIn) return { name: 'home' }
    return true
  })
  return router
}
