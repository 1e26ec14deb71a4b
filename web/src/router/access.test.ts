import { describe, expect, it } from 'vitest'
import type { RouteMeta } from 'vue-router'
import { routes as chatRoutes } from './index'
import { adminRoute } from '@/features/admin/routes'
import { accessFor, adminHomeFor } from './access'

/** The meta a route gets, merged parent → child as the router does. */
const routes = [adminRoute, ...chatRoutes]

function metaOf(path: string): RouteMeta {
  for (const route of routes) {
    // A parent's own path is its '' child (the page shown there).
    for (const child of route.children ?? []) {
      const full = child.path ? `${route.path}/${child.path}` : route.path
      if (full === path) return { ...(route.meta ?? {}), ...(child.meta ?? {}) }
    }
    if (route.path === path && !route.children) return route.meta ?? {}
  }
  throw new Error(`no route ${path}`)
}

const adminOnly = ['/admin', '/admin/people', '/admin/people/:id', '/admin/projections', '/admin/storage']
const staff = ['/admin/audit', '/admin/audit/sessions/:id']

describe('role-based route guard', () => {
  it('admins may open every admin page', () => {
    for (const path of [...adminOnly, ...staff]) expect(accessFor(metaOf(path), true, 'admin'), path).toBe('allow')
  })
  it('auditors may open the audit pages only', () => {
    for (const path of staff) expect(accessFor(metaOf(path), true, 'auditor'), path).toBe('allow')
    for (const path of adminOnly) expect(accessFor(metaOf(path), true, 'auditor'), path).toBe('forbidden')
  })
  it('anyone else gets the 403 page on every admin page, and the chat app as before', () => {
    for (const path of [...adminOnly, ...staff]) expect(accessFor(metaOf(path), true, 'user'), path).toBe('forbidden')
    expect(accessFor(metaOf('/'), true, 'user')).toBe('allow')
    expect(accessFor(metaOf('/sessions/:id'), true, 'user', '/sessions/1')).toBe('allow')
    expect(accessFor(metaOf('/sessions/:id'), true, 'user')).toBe('allow')
  })
  it('before the console routes are loaded, any /admin address is refused to a plain user (the catch-all route)', () => {
    const catchAll = metaOf('/:rest(.*)*')
    expect(accessFor(catchAll, true, 'user', '/admin')).toBe('forbidden')
    expect(accessFor(catchAll, true, 'user', '/admin/people/x')).toBe('forbidden')
    expect(accessFor(catchAll, true, 'user', '/administrator')).toBe('allow')
    expect(accessFor(catchAll, false, null, '/admin')).toBe('sign-in')
  })
  it('signed out: sign in first; public pages open; invitation and reset links open signed in too', () => {
    expect(accessFor(metaOf('/admin'), false, null)).toBe('sign-in')
    expect(accessFor(metaOf('/sign-in'), false, null)).toBe('allow')
    expect(accessFor(metaOf('/sign-in'), true, 'user')).toBe('home')
    expect(accessFor(metaOf('/invite/:token'), false, null)).toBe('allow')
    expect(accessFor(metaOf('/reset/:token'), true, 'admin')).toBe('allow')
  })
  it('the header links to the console for admins and auditors only', () => {
    expect(adminHomeFor('admin')).toBe('/admin')
    expect(adminHomeFor('auditor')).toBe('/admin/audit')
    expect(adminHomeFor('user')).toBeNull()
    expect(adminHomeFor(undefined)).toBeNull()
  })
})
