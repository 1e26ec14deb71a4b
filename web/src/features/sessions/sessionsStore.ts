/**
 * My sessions for the sidebar: read with `GET /api/sessions`, kept live by the user stream
 * (new sessions, invitations, renames, archiving, my removal, read markers).
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api, ProblemError } from '@/api/client'
import type { Page, SessionDetail, SessionSummary, SessionView } from '@/api/models'
import type { StoredFrame } from '@/api/frames'

export const useSessionsStore = defineStore('sessions', () => {
  const byId = ref(new Map<string, SessionSummary>())
  const loaded = ref(false)
  const loadError = ref<unknown>(null)
  /** Sessions I was removed from while I had them open: the conversation explains it. */
  const removed = ref(new Set<string>())

  const sessions = computed(() =>
    [...byId.value.values()].sort((a, b) =>
      (b.last_message_at ?? b.updated_at ?? b.created_at).localeCompare(a.last_message_at ?? a.updated_at ?? a.created_at),
    ),
  )

  const highestPosition = computed(() => {
    let max = 0
    for (const s of byId.value.values()) if (s.position > max) max = s.position
    return max
  })

  function put(session: SessionSummary): void {
    const next = new Map(byId.value)
    next.set(session.id, session)
    byId.value = next
  }

  function patch(id: string, change: Partial<SessionSummary>): void {
    const current = byId.value.get(id)
    if (current) put({ ...current, ...change })
  }

  function drop(id: string): void {
    if (!byId.value.has(id)) return
    const next = new Map(byId.value)
    next.delete(id)
    byId.value = next
  }

  async function load(afterPosition?: number): Promise<void> {
    try {
      const all: SessionSummary[] = []
      let cursor: string | null = null
      do {
        const page: Page<SessionSummary> = await api.get<Page<SessionSummary>>('/api/sessions', {
          query: { cursor, limit: 200, after_position: afterPosition },
        })
        all.push(...page.items)
        cursor = page.next_cursor
      } while (cursor)
      byId.value = new Map(all.map((s) => [s.id, s]))
      loaded.value = true
      loadError.value = null
    } catch (error) {
      loadError.value = error
      throw error
    }
  }

  async function refreshOne(id: string, afterPosition?: number): Promise<void> {
    try {
      const detail = await api.get<SessionDetail>(`/api/sessions/${id}`, { query: { after_position: afterPosition } })
      const known = byId.value.get(id)
      put({ ...detail, unread: known?.unread ?? detail.message_count ?? 0 })
    } catch (error) {
      if (error instanceof ProblemError && error.status === 404) drop(id)
      else throw error
    }
  }

  let refreshTimer: ReturnType<typeof setTimeout> | null = null
  /** Re-read the list soon (coalesced), e.g. after a read marker moved somewhere else. */
  function refreshSoon(afterPosition?: number): void {
    if (refreshTimer) clearTimeout(refreshTimer)
    refreshTimer = setTimeout(() => {
      refreshTimer = null
      void load(afterPosition).catch(() => undefined)
    }, 300)
  }

  async function create(title: string, assistant: boolean): Promise<SessionView> {
    const session = await api.post<SessionView>('/api/sessions', { title, assistant })
    const now = session.created_at
    put({
      ...session,
      updated_at: now,
      message_count: 0,
      last_message_preview: null,
      last_message_at: null,
      unread: 0,
    })
    return session
  }

  async function rename(id: string, title: string): Promise<void> {
    await api.patch<unknown>(`/api/sessions/${id}`, { title })
    patch(id, { title })
  }

  async function archive(id: string): Promise<void> {
    await api.delete<unknown>(`/api/sessions/${id}`)
    patch(id, { archived: true })
  }

  /** What the open conversation saw: keeps the sidebar's preview current without a re-read. */
  function noteMessage(id: string, preview: string | null, at: string): void {
    patch(id, { last_message_preview: preview, last_message_at: at })
  }

  function markRead(id: string): void {
    patch(id, { unread: 0 })
  }

  function applyUserFrame(frame: StoredFrame, myUserId: string): void {
    const sid = frame.session_id
    switch (frame.type) {
      case 'session.started':
        if (sid && !byId.value.has(sid)) void refreshOne(sid, frame.position).catch(() => undefined)
        return
      case 'member.added':
        if (sid && frame.data.user_id === myUserId) {
          removed.value.delete(sid)
          void refreshOne(sid, frame.position).catch(() => undefined)
        }
        return
      case 'member.removed':
        if (sid && frame.data.user_id === myUserId) {
          drop(sid)
          const next = new Set(removed.value)
          next.add(sid)
          removed.value = next
        }
        return
      case 'session.renamed':
        if (sid) patch(sid, { title: frame.data.title })
        return
      case 'session.archived':
        if (sid) patch(sid, { archived: true })
        return
      case 'session.assistant_changed':
        if (sid) patch(sid, { assistant: frame.data.assistant })
        return
      case 'session.read':
        refreshSoon(frame.position)
        return
      default:
        return
    }
  }

  function reset(): void {
    byId.value = new Map()
    loaded.value = false
    removed.value = new Set()
  }

  return {
    sessions,
    byId,
    loaded,
    loadError,
    removed,
    highestPosition,
    load,
    refreshOne,
    refreshSoon,
    create,
    rename,
    archive,
    noteMessage,
    markRead,
    applyUserFrame,
    reset,
  }
})
