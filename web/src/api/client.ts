/**
 * The typed HTTP client: same-origin fetch with the session cookie, the CSRF header on every
 * unsafe request, and RFC 7807 problem details turned into `ProblemError`.
 */

export interface FieldError {
  field: string
  message: string
}

export class ProblemError extends Error {
  readonly status: number
  readonly title: string
  readonly detail: string | null
  readonly extra: unknown
  readonly fieldErrors: FieldError[]
  /** Seconds from a `Retry-After` header, when the server sent one. */
  readonly retryAfter: number | null

  constructor(init: {
    status: number
    title?: string | null
    detail?: string | null
    extra?: unknown
    fieldErrors?: FieldError[]
    retryAfter?: number | null
  }) {
    super(init.detail ?? init.title ?? `HTTP ${init.status}`)
    this.name = 'ProblemError'
    this.status = init.status
    this.title = init.title ?? `HTTP ${init.status}`
    this.detail = init.detail ?? null
    this.extra = init.extra ?? null
    this.fieldErrors = init.fieldErrors ?? []
    this.retryAfter = init.retryAfter ?? null
  }
}

/** Thrown when the network itself failed (offline, server down). */
export class NetworkError extends Error {
  constructor(cause: unknown) {
    super('network error', { cause })
    this.name = 'NetworkError'
  }
}

export const CSRF_COOKIE = 'csrftoken'
export const CSRF_HEADER = 'x-csrftoken'

export function readCookie(name: string, cookies: string = document.cookie): string | null {
  for (const part of cookies.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim())
  }
  return null
}

/** Headers an unsafe (state-changing) request must carry; read fresh each time, it can change. */
export function csrfHeaders(): Record<string, string> {
  const token = readCookie(CSRF_COOKIE)
  return token ? { [CSRF_HEADER]: token } : {}
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS'])

/** Called on any 401 from a request that expected a signed-in user. */
let onUnauthorized: (() => void) | null = null
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  onUnauthorized = handler
}

function parseRetryAfter(value: string | null): number | null {
  if (!value) return null
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds))
  const date = Date.parse(value)
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000))
}

function fieldErrorsOf(body: Record<string, unknown>): FieldError[] {
  const out: FieldError[] = []
  const lists = [body['errors'], body['extra']]
  for (const list of lists) {
    if (!Array.isArray(list)) continue
    for (const item of list) {
      if (item && typeof item === 'object') {
        const rec = item as Record<string, unknown>
        const field = rec['field'] ?? rec['key']
        const message = rec['message']
        if (typeof field === 'string' && typeof message === 'string') out.push({ field, message })
      }
    }
  }
  return out
}

export async function problemFrom(response: Response): Promise<ProblemError> {
  let body: Record<string, unknown> = {}
  try {
    const text = await response.text()
    if (text) {
      const parsed: unknown = JSON.parse(text)
      if (parsed && typeof parsed === 'object') body = parsed as Record<string, unknown>
    }
  } catch {
    // Not JSON: keep the status alone.
  }
  const str = (v: unknown) => (typeof v === 'string' ? v : null)
  return new ProblemError({
    status: response.status,
    title: str(body['title']) ?? response.statusText,
    detail: str(body['detail']),
    extra: body['extra'],
    fieldErrors: fieldErrorsOf(body),
    retryAfter: parseRetryAfter(response.headers.get('retry-after')),
  })
}

export type Query = Record<string, string | number | boolean | null | undefined>

export function withQuery(path: string, query?: Query): string {
  if (!query) return path
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined) params.set(key, String(value))
  }
  const qs = params.toString()
  return qs ? `${path}?${qs}` : path
}

export interface RequestOptions {
  query?: Query
  body?: unknown
  signal?: AbortSignal
  /** Do not treat a 401 as "signed out" (the sign-in form itself, `GET /api/me` at start-up). */
  quiet401?: boolean
}

/**
 * The CSRF cookie comes with any successful safe response (loading the page does it). A page
 * served from elsewhere (the dev server), or whose only request so far was refused (a 401 from
 * `GET /api/me` carries no cookie), fetches it once from `/health` before its first write.
 */
export async function ensureCsrfCookie(): Promise<void> {
  if (readCookie(CSRF_COOKIE)) return
  try {
    await fetch('/health', { credentials: 'same-origin', headers: { accept: 'application/json' } })
  } catch {
    // The write that follows reports the network problem.
  }
}

export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (!SAFE.has(method)) {
    await ensureCsrfCookie()
    Object.assign(headers, csrfHeaders())
  }
  let body: BodyInit | undefined
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json'
    body = JSON.stringify(options.body)
  }
  let response: Response
  try {
    response = await fetch(withQuery(path, options.query), {
      method,
      headers,
      body,
      credentials: 'same-origin',
      signal: options.signal,
    })
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error
    throw new NetworkError(error)
  }
  if (!response.ok) {
    const problem = await problemFrom(response)
    if (problem.status === 401 && !options.quiet401) onUnauthorized?.()
    throw problem
  }
  if (response.status === 204) return undefined as T
  const text = await response.text()
  return (text ? JSON.parse(text) : undefined) as T
}

export async function requestText(path: string, signal?: AbortSignal): Promise<{ text: string; mediaType: string }> {
  let response: Response
  try {
    response = await fetch(path, { credentials: 'same-origin', signal })
  } catch (error) {
    throw new NetworkError(error)
  }
  if (!response.ok) throw await problemFrom(response)
  const mediaType = (response.headers.get('content-type') ?? 'text/plain').split(';')[0]!.trim()
  return { text: await response.text(), mediaType }
}

export const api = {
  get: <T>(path: string, options?: RequestOptions) => request<T>('GET', path, options),
  post: <T>(path: string, body?: unknown, options?: RequestOptions) => request<T>('POST', path, { ...options, body }),
  put: <T>(path: string, body?: unknown, options?: RequestOptions) => request<T>('PUT', path, { ...options, body }),
  patch: <T>(path: string, body?: unknown, options?: RequestOptions) => request<T>('PATCH', path, { ...options, body }),
  delete: <T>(path: string, options?: RequestOptions) => request<T>('DELETE', path, options),
}
