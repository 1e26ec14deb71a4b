/** My documents, their conversions (live from the user stream) and uploads in progress. */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api } from '@/api/client'
import { uploadFile } from '@/api/upload'
import type { ConversionTarget, ConversionView, DocumentView, Page } from '@/api/models'
import type { StoredFrame } from '@/api/frames'

export interface Upload {
  key: string
  filename: string
  loaded: number
  total: number
  error: unknown
  abort: () => void
}

let uploadCounter = 0

export const useDocumentsStore = defineStore('documents', () => {
  const byId = ref(new Map<string, DocumentView>())
  /** conversions by document id, then by conversion id */
  const conversions = ref(new Map<string, Map<string, ConversionView>>())
  const uploads = ref<Upload[]>([])
  const loaded = ref(false)

  const documents = computed(() => [...byId.value.values()].sort((a, b) => b.created_at.localeCompare(a.created_at)))

  const highestPosition = computed(() => {
    let max = 0
    for (const d of byId.value.values()) if (d.position > max) max = d.position
    return max
  })

  function putDocument(doc: DocumentView): void {
    const next = new Map(byId.value)
    next.set(doc.id, doc)
    byId.value = next
  }

  function dropDocument(id: string): void {
    const next = new Map(byId.value)
    next.delete(id)
    byId.value = next
  }

  function putConversion(conversion: ConversionView): void {
    const next = new Map(conversions.value)
    const forDoc = new Map(next.get(conversion.document_id) ?? [])
    const known = forDoc.get(conversion.id)
    forDoc.set(conversion.id, { ...known, ...conversion })
    next.set(conversion.document_id, forDoc)
    conversions.value = next
  }

  function conversionsOf(documentId: string): ConversionView[] {
    return [...(conversions.value.get(documentId)?.values() ?? [])]
  }

  async function load(afterPosition?: number): Promise<void> {
    const all: DocumentView[] = []
    let cursor: string | null = null
    do {
      const page: Page<DocumentView> = await api.get<Page<DocumentView>>('/api/documents', {
        query: { cursor, limit: 200, after_position: afterPosition },
      })
      all.push(...page.items)
      cursor = page.next_cursor
    } while (cursor)
    byId.value = new Map(all.map((d) => [d.id, d]))
    loaded.value = true
  }

  async function loadOne(id: string): Promise<DocumentView> {
    const doc = await api.get<DocumentView>(`/api/documents/${id}`)
    return doc
  }

  async function loadConversions(documentId: string): Promise<void> {
    const page = await api.get<Page<ConversionView> | ConversionView[]>(`/api/documents/${documentId}/conversions`)
    const items = Array.isArray(page) ? page : page.items
    for (const c of items) putConversion(c)
  }

  async function requestConversion(documentId: string, target: ConversionTarget): Promise<void> {
    const conversion = await api.post<ConversionView>(`/api/documents/${documentId}/conversions`, { target })
    putConversion(conversion)
  }

  async function remove(id: string): Promise<void> {
    await api.delete<unknown>(`/api/documents/${id}`)
    dropDocument(id)
  }

  function upload(file: File, sessionId?: string): Promise<DocumentView> {
    const key = `u${++uploadCounter}`
    const fields: Record<string, string | Blob> = { file }
    if (sessionId) fields['session_id'] = sessionId
    const handle = uploadFile<DocumentView>('/api/documents', fields, (loaded, total) => {
      uploads.value = uploads.value.map((u) => (u.key === key ? { ...u, loaded, total } : u))
    })
    uploads.value = [...uploads.value, { key, filename: file.name, loaded: 0, total: file.size, error: null, abort: handle.abort }]
    return handle.done.then(
      (doc) => {
        uploads.value = uploads.value.filter((u) => u.key !== key)
        putDocument(doc)
        return doc
      },
      (error: unknown) => {
        uploads.value = uploads.value.map((u) => (u.key === key ? { ...u, error } : u))
        throw error
      },
    )
  }

  function dismissUpload(key: string): void {
    uploads.value = uploads.value.filter((u) => u.key !== key)
  }

  function applyUserFrame(frame: StoredFrame): void {
    switch (frame.type) {
      case 'document.uploaded':
        putDocument({ ...frame.data, position: frame.position })
        return
      case 'document.deleted':
        dropDocument(frame.data.id)
        return
      case 'conversion.pending':
      case 'conversion.running':
        putConversion({
          id: frame.data.id,
          document_id: frame.data.document_id,
          target: frame.data.target,
          status: frame.type === 'conversion.pending' ? 'pending' : 'running',
          created_at: conversions.value.get(frame.data.document_id)?.get(frame.data.id)?.created_at ?? '',
          reason: null,
          detail: null,
          position: frame.position,
        })
        return
      case 'conversion.completed':
        putConversion({
          ...frame.data,
          status: 'completed',
          created_at: conversions.value.get(frame.data.document_id)?.get(frame.data.id)?.created_at ?? '',
          reason: null,
          detail: null,
          position: frame.position,
        })
        return
      case 'conversion.failed':
        putConversion({
          ...frame.data,
          status: 'failed',
          created_at: conversions.value.get(frame.data.document_id)?.get(frame.data.id)?.created_at ?? '',
          position: frame.position,
        })
        return
      default:
        return
    }
  }

  function reset(): void {
    byId.value = new Map()
    conversions.value = new Map()
    uploads.value = []
    loaded.value = false
  }

  return {
    documents,
    byId,
    uploads,
    loaded,
    highestPosition,
    conversionsOf,
    load,
    loadOne,
    loadConversions,
    requestConversion,
    remove,
    upload,
    dismissUpload,
    applyUserFrame,
    reset,
  }
})
