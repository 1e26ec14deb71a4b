import { describe, expect, it } from 'vitest'
import { describeAccountError } from './accountStore'
import { NetworkError, ProblemError } from '@/api/client'

describe('describeAccountError: what a refused sign-in tells the person', () => {
  it('wrong email or password', () => {
    expect(describeAccountError(new ProblemError({ status: 401 }), 'sign-in')).toBe('Wrong email or password.')
  })
  it('disabled account', () => {
    expect(describeAccountError(new ProblemError({ status: 403 }), 'sign-in')).toBe(
      'This account is disabled. Contact an administrator.',
    )
  })
  it('rate limited, with when to retry', () => {
    expect(describeAccountError(new ProblemError({ status: 429, retryAfter: 42 }), 'sign-in')).toBe(
      'Too many attempts, try again in 42 s',
    )
  })
  it('validation errors name the field', () => {
    const error = new ProblemError({ status: 400, detail: 'Validation failed', fieldErrors: [{ field: 'password', message: 'too short' }] })
    expect(describeAccountError(error, 'sign-up')).toBe('password: too short')
  })
  it('the server cannot be reached', () => {
    expect(describeAccountError(new NetworkError(new Error('x')), 'sign-in')).toMatch(/Cannot reach the server/)
  })
})

describe('start-up', () => {
  it('asks GET /api/auth/session, and tries again after a 503 (lagging read model)', async () => {
    const { createPinia, setActivePinia } = await import('pinia')
    const { vi } = await import('vitest')
    const { useAccountStore } = await import('./accountStore')
    setActivePinia(createPinia())
    vi.useFakeTimers()
    const answers = [
      new Response(JSON.stringify({ title: 'Service Unavailable', status: 503 }), { status: 503, headers: { 'retry-after': '1' } }),
      new Response(JSON.stringify({ signed_in: true, user: { id: 'u', email: 'a@b.c', display_name: 'Ann', role: 'user', disabled: false } }), { status: 200 }),
    ]
    const urls: string[] = []
    vi.stubGlobal('fetch', vi.fn(async (url: string) => {
      urls.push(url)
      return answers.shift()!
    }))
    const account = useAccountStore()
    const loading = account.ensureLoaded()
    await vi.advanceTimersByTimeAsync(1_000)
    await loading
    expect(urls).toEqual(['/api/auth/session', '/api/auth/session'])
    expect(account.state).toBe('signed-in')
    expect(account.me?.display_name).toBe('Ann')
    vi.useRealTimers()
    vi.unstubAllGlobals()
  })
})
