import { afterEach, describe, expect, it, vi } from 'vitest'
import { uploadFile } from './upload'
import { ProblemError } from './client'

class FakeXHR {
  static last: FakeXHR
  headers: Record<string, string> = {}
  method = ''
  url = ''
  status = 0
  statusText = ''
  responseText = ''
  body: FormData | null = null
  responseHeaders: Record<string, string> = {}
  upload: { onprogress: ((e: { lengthComputable: boolean; loaded: number; total: number }) => void) | null } = { onprogress: null }
  onload: (() => void) | null = null
  onerror: (() => void) | null = null
  onabort: (() => void) | null = null
  withCredentials = false
  constructor() {
    FakeXHR.last = this
  }
  open(method: string, url: string) {
    this.method = method
    this.url = url
  }
  setRequestHeader(name: string, value: string) {
    this.headers[name] = value
  }
  getResponseHeader(name: string) {
    return this.responseHeaders[name] ?? null
  }
  send(body: FormData) {
    this.body = body
  }
  abort() {
    this.onabort?.()
  }
  respond(status: number, body: object, headers: Record<string, string> = {}) {
    this.status = status
    this.responseText = JSON.stringify(body)
    this.responseHeaders = headers
    this.onload?.()
  }
}

afterEach(() => {
  vi.unstubAllGlobals()
  document.cookie = 'csrftoken=; expires=Thu, 01 Jan 1970 00:00:00 GMT'
})

describe('uploadFile', () => {
  it('posts multipart with the CSRF header, reports progress, resolves with the document', async () => {
    vi.stubGlobal('XMLHttpRequest', FakeXHR)
    document.cookie = 'csrftoken=abc'
    const progress: number[] = []
    const file = new File(['hello'], 'hello.txt', { type: 'text/plain' })
    const handle = uploadFile<{ id: string }>('/api/documents', { file, session_id: 's1' }, (loaded) => progress.push(loaded))
    await vi.waitFor(() => expect(FakeXHR.last?.body).not.toBeNull())
    const xhr = FakeXHR.last
    expect([xhr.method, xhr.url, xhr.headers['x-csrftoken']]).toEqual(['POST', '/api/documents', 'abc'])
    expect((xhr.body!.get('file') as File).name).toBe('hello.txt')
    expect(xhr.body!.get('session_id')).toBe('s1')
    xhr.upload.onprogress!({ lengthComputable: true, loaded: 2, total: 5 })
    xhr.upload.onprogress!({ lengthComputable: true, loaded: 5, total: 5 })
    xhr.respond(201, { id: 'd1' })
    await expect(handle.done).resolves.toEqual({ id: 'd1' })
    expect(progress).toEqual([2, 5])
  })

  it('a refused upload (413) rejects with the problem details', async () => {
    vi.stubGlobal('XMLHttpRequest', FakeXHR)
    document.cookie = 'csrftoken=abc'
    const handle = uploadFile('/api/documents', { file: new File(['x'], 'big.bin') }, () => undefined)
    await vi.waitFor(() => expect(FakeXHR.last?.body).not.toBeNull())
    FakeXHR.last.respond(413, { title: 'Request Entity Too Large', status: 413, detail: 'over 50 MB' })
    const error = await handle.done.catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ProblemError)
    expect((error as ProblemError).status).toBe(413)
    expect((error as ProblemError).detail).toBe('over 50 MB')
  })
})
