/** Who may open a route: the decision of the router's guard, kept pure so it can be tested. */
import type { RouteMeta } from 'vue-router'

export type StaffRole = 'admin' | 'auditor'

export type Access = 'allow' | 'sign-in' | 'home' | 'forbidden'

export function accessFor(meta: RouteMeta, signedIn: boolean, role: string | null | undefined, path = ''): Access {
  if (meta.public) {
    // Links from an email (invitation, password reset) open whoever is signed in.
    if (signedIn && !meta.signedInToo) return 'home'
    return 'allow'
  }
  if (!signedIn) return 'sign-in'
  // Before its routes are loaded, the console is still not for everyone.
  if (isConsolePath(path) && !adminHomeFor(role)) return 'forbidden'
  if (meta.roles && !meta.roles.includes(role as StaffRole)) return 'forbidden'
  return 'allow'
}

/** Where the "Admin" link of the header goes, or null when there is none for this role. */
export function adminHomeFor(role: string | null | undefined): string | null {
  if (role === 'admin') return '/admin'
  if (role === 'auditor') return '/admin/audit'
  return null
}

/** `/admin` and everything under it: the admin console. */
export function isConsolePath(path: string): boolean {
  return path === '/admin' || path.startsWith('/admin/')
}
