import { afterEach, describe, expect, it, vi } from 'vitest'
import { api, ProblemError, readCookie } from './client'

afterEach(() => {
  vi.unstubAllGlobals()
  for (const c of document.cookie.split(';')) {
    const name = c.split('=')[0]!.trim()
    if (name) document.cookie = `${name}=; expires=Thu, 01 Jan 1970 00:00:00 GMT`
  }
})

function respond(status: number, body: unknown, headers: Record<string, string> = {}) {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json', ...headers },
  })
}

describe('api client', () => {
  it('sends the current csrftoken cookie on unsafe requests, read afresh each time, and none on GET', async () => {
    const calls: { method: string; headers: Record<string, string>; credentials?: string }[] = []
    vi.stubGlobal(
      'fetch',
      vi.fn(async (_url: string, init: RequestInit) => {
        calls.push({ method: init.method!, headers: init.headers as Record<string, string>, credentials: init.credentials })
        return respond(200, { ok: true })
      }),
    )
    document.cookie = 'csrftoken=first'
    await api.post('/api/sessions', { title: 't' })
    document.cookie = 'csrftoken=second'
    await api.delete('/api/sessions/1')
    await api.get('/api/me')
    expect(calls[0]!.headers['x-csrftoken']).toBe('first')
    expect(calls[1]!.headers['x-csrftoken']).toBe('second')
    expect(calls[2]!.headers['x-csrftoken']).toBeUndefined()
    expect(calls.every((c) => c.credentials === 'same-origin')).toBe(true)
  })

  it('turns problem details into a ProblemError with field errors and Retry-After', async () => {
    vi.stubGlobal(
      'fetch',
      vi.fn(async () =>
        respond(
          429,
          { title: 'Too Many Requests', status: 429, detail: 'slow down', errors: [{ field: 'email', message: 'bad' }] },
          { 'retry-after': '17' },
        ),
      ),
    )
    const error = await api.post('/api/auth/session', {}).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ProblemError)
    const problem = error as ProblemError
    expect(problem.status).toBe(429)
    expect(problem.detail).toBe('slow down')
    expect(problem.retryAfter).toBe(17)
    expect(problem.fieldErrors).toEqual([{ field: 'email', message: 'bad' }])
  })

  it('reads cookies by exact name', () => {
    expect(readCookie('csrftoken', 'xcsrftoken=no; csrftoken=yes; other=1')).toBe('yes')
    expect(readCookie('missing', 'a=1')).toBeNull()
  })
})
