/**
 * Multipart upload with progress: fetch reports none, so this uses XMLHttpRequest, with the
 * same cookie, CSRF header and problem-details errors as the fetch client.
 */
import { csrfHeaders, ensureCsrfCookie, NetworkError, ProblemError } from './client'

export interface UploadHandle<T> {
  done: Promise<T>
  abort(): void
}

export function uploadFile<T>(
  path: string,
  fields: Record<string, string | Blob>,
  onProgress: (loaded: number, total: number) => void,
): UploadHandle<T> {
  const xhr = new XMLHttpRequest()
  const done = ensureCsrfCookie().then(() => new Promise<T>((resolve, reject) => {
    xhr.open('POST', path)
    xhr.withCredentials = false // same-origin requests send cookies anyway
    xhr.setRequestHeader('accept', 'application/json')
    for (const [name, value] of Object.entries(csrfHeaders())) xhr.setRequestHeader(name, value)
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total)
    }
    xhr.onload = () => {
      let body: Record<string, unknown> = {}
      try {
        body = xhr.responseText ? (JSON.parse(xhr.responseText) as Record<string, unknown>) : {}
      } catch {
        body = {}
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body as T)
        return
      }
      const retry = Number(xhr.getResponseHeader('retry-after'))
      reject(
        new ProblemError({
          status: xhr.status,
          title: typeof body['title'] === 'string' ? body['title'] : xhr.statusText,
          detail: typeof body['detail'] === 'string' ? body['detail'] : null,
          extra: body['extra'],
          retryAfter: Number.isFinite(retry) && retry > 0 ? retry : null,
        }),
      )
    }
    xhr.onerror = () => reject(new NetworkError(new Error('upload failed')))
    xhr.onabort = () => reject(new DOMException('upload aborted', 'AbortError'))
    const form = new FormData()
    for (const [name, value] of Object.entries(fields)) form.append(name, value)
    xhr.send(form)
  }))
  return { done, abort: () => xhr.abort() }
}
