/** Who is signed in: the cookie session, found out with `GET /api/me`. */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api, NetworkError, ProblemError } from '@/api/client'
import type { UserView } from '@/api/models'
import { clearStoredPositions } from '@/stream/connection'
import { en } from '@/i18n/en'

export type AuthState = 'unknown' | 'signed-in' | 'signed-out'

/** A refusal of an account request, worded for the person at the keyboard. */
export function describeAccountError(error: unknown, context: 'sign-in' | 'sign-up' | 'password' | 'other' = 'other'): string {
  if (error instanceof NetworkError) return en.app.offline
  if (!(error instanceof ProblemError)) return en.app.unexpected
  if (error.status === 429) return en.account.rateLimited(error.retryAfter ?? 60)
  if (context === 'sign-in' && error.status === 401) return en.account.wrongCredentials
  if (context === 'password' && (error.status === 401 || error.status === 403)) return en.account.wrongCurrentPassword
  if (error.status === 403 && context === 'sign-in') return en.account.disabled
  if (context === 'sign-up' && error.status === 409) return en.account.emailTaken
  if (error.fieldErrors.length > 0) return error.fieldErrors.map((e) => en.account.fieldError(e.field, e.message)).join(' ')
  return error.detail ?? error.title
}

/** A read that met a lagging read model (503 with Retry-After) is tried again, a few times. */
async function withRetryOn503<T>(read: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await read()
    } catch (error) {
      if (!(error instanceof ProblemError && error.status === 503) || attempt >= attempts) throw error
      await new Promise((resolve) => setTimeout(resolve, (error.retryAfter ?? 1) * 1000))
    }
  }
}

export const useAccountStore = defineStore('account', () => {
  const me = ref<UserView | null>(null)
  const state = ref<AuthState>('unknown')
  const signedOutNotice = ref(false)
  let loading: Promise<void> | null = null

  const isSignedIn = computed(() => state.value === 'signed-in')
  const isStaff = computed(() => me.value?.role === 'admin' || me.value?.role === 'auditor')

  /** `GET /api/auth/session` answers 200 whether or not this browser is signed in, so a page
   *  that starts signed out reports no failed request. */
  async function load(): Promise<void> {
    const session = await withRetryOn503(() =>
      api.get<{ signed_in: boolean; user: UserView | null }>('/api/auth/session'),
    )
    me.value = session.signed_in ? session.user : null
    state.value = session.signed_in ? 'signed-in' : 'signed-out'
  }

  /** Know whether someone is signed in (once per page load). */
  function ensureLoaded(): Promise<void> {
    if (state.value !== 'unknown') return Promise.resolve()
    loading ??= load().finally(() => {
      loading = null
    })
    return loading
  }

  async function signIn(email: string, password: string): Promise<void> {
    me.value = await api.post<UserView>('/api/auth/session', { email, password }, { quiet401: true })
    state.value = 'signed-in'
    signedOutNotice.value = false
  }

  async function register(displayName: string, email: string, password: string): Promise<void> {
    await api.post<UserView>('/api/auth/register', { email, password, display_name: displayName }, { quiet401: true })
    await signIn(email, password)
  }

  async function signOut(): Promise<void> {
    try {
      await api.delete<void>('/api/auth/session', { quiet401: true })
    } finally {
      forget()
    }
  }

  /** The server says the session is gone (a 401, or a stream closed with 4401). */
  function expired(): void {
    if (state.value !== 'signed-in') return
    forget()
    signedOutNotice.value = true
  }

  /**
   * A stream closed with 4401. That also happens to the streams of a token that a password
   * change replaced (the response set a new cookie): only a refused `GET /api/me` means signed out.
   * Resolves true when still signed in (the caller reconnects).
   */
  async function recheck(): Promise<boolean> {
    try {
      await load()
    } catch {
      return true // network trouble is not a sign-out; the stream's own retry handles it
    }
    if (state.value === 'signed-out') {
      clearStoredPositions()
      signedOutNotice.value = true
      return false
    }
    return true
  }

  function forget(): void {
    me.value = null
    state.value = 'signed-out'
    clearStoredPositions()
  }

  async function changePassword(currentPassword: string, newPassword: string): Promise<void> {
    await api.post<unknown>(
      '/api/me/password',
      { current_password: currentPassword, new_password: newPassword },
      { quiet401: true },
    )
  }

  return {
    me,
    state,
    signedOutNotice,
    isSignedIn,
    isStaff,
    ensureLoaded,
    load,
    signIn,
    register,
    signOut,
    expired,
    recheck,
    changePassword,
  }
})
