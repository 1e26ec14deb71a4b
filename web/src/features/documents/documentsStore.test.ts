import { beforeEach, describe, expect, it } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { useDocumentsStore } from './documentsStore'

beforeEach(() => setActivePinia(createPinia()))

describe('documents, live from the user stream', () => {
  it('follows a conversion from pending to running to failed with its reason', () => {
    const store = useDocumentsStore()
    store.applyUserFrame({ position: 3, type: 'document.uploaded', session_id: null, data: { id: 'd', filename: 'a.pdf', media_type: 'application/pdf', size: 10, sha256: 'x', created_at: 'now' } })
    store.applyUserFrame({ position: 4, type: 'conversion.pending', session_id: null, data: { id: 'c', document_id: 'd', target: 'text' } })
    expect(store.conversionsOf('d').map((c) => c.status)).toEqual(['pending'])
    store.applyUserFrame({ position: 5, type: 'conversion.running', session_id: null, data: { id: 'c', document_id: 'd', target: 'text' } })
    store.applyUserFrame({ position: 6, type: 'conversion.failed', session_id: null, data: { id: 'c', document_id: 'd', target: 'text', reason: 'encrypted', detail: 'password protected' } })
    expect(store.conversionsOf('d')).toMatchObject([{ status: 'failed', reason: 'encrypted', detail: 'password protected' }])
    expect(store.documents.map((d) => d.filename)).toEqual(['a.pdf'])
  })

  it('a completed conversion carries its size; a deleted document leaves the list', () => {
    const store = useDocumentsStore()
    store.applyUserFrame({ position: 3, type: 'document.uploaded', session_id: null, data: { id: 'd', filename: 'a.md', media_type: 'text/markdown', size: 10, sha256: 'x', created_at: 'now' } })
    store.applyUserFrame({ position: 7, type: 'conversion.completed', session_id: null, data: { id: 'c', document_id: 'd', target: 'markdown', size: 5, pages: null, characters: 5, duration_ms: 3 } })
    expect(store.conversionsOf('d')).toMatchObject([{ status: 'completed', size: 5 }])
    store.applyUserFrame({ position: 8, type: 'document.deleted', session_id: null, data: { id: 'd' } })
    expect(store.documents).toEqual([])
  })
})
