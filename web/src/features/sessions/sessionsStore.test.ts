import { beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { useSessionsStore } from './sessionsStore'
import type { SessionSummary } from '@/api/models'

function session(id: string, title: string, extra: Partial<SessionSummary> = {}): SessionSummary {
  return {
    id, title, owner_id: 'me', assistant: true, archived: false, created_at: '2026-01-01T00:00:00Z',
    updated_at: '2026-01-01T00:00:00Z', message_count: 0, last_message_preview: null, last_message_at: null,
    position: 1, unread: 0, ...extra,
  }
}

beforeEach(() => {
  setActivePinia(createPinia())
})

describe('sessions sidebar, live from the user stream', () => {
  it('renames, archives, and drops a session I was removed from (and remembers why)', () => {
    const store = useSessionsStore()
    store.byId = new Map([['a', session('a', 'Alpha')], ['b', session('b', 'Beta')]])
    store.applyUserFrame({ position: 5, type: 'session.renamed', session_id: 'a', data: { title: 'Alpha 2' } }, 'me')
    store.applyUserFrame({ position: 6, type: 'session.archived', session_id: 'a', data: {} }, 'me')
    store.applyUserFrame({ position: 7, type: 'member.removed', session_id: 'b', data: { user_id: 'me' } }, 'me')
    expect(store.sessions.map((s) => [s.id, s.title, s.archived])).toEqual([['a', 'Alpha 2', true]])
    expect(store.removed.has('b')).toBe(true)
  })

  it("someone else leaving does not drop the session", () => {
    const store = useSessionsStore()
    store.byId = new Map([['a', session('a', 'Alpha')]])
    store.applyUserFrame({ position: 7, type: 'member.removed', session_id: 'a', data: { user_id: 'ann' } }, 'me')
    expect(store.sessions).toHaveLength(1)
  })

  it('an invitation fetches the session (waiting for its position) and shows it', async () => {
    const fetched: string[] = []
    vi.stubGlobal('fetch', vi.fn(async (url: string) => {
      fetched.push(url)
      return new Response(JSON.stringify(session('c', 'Gamma', { members: [] })), { status: 200, headers: { 'content-type': 'application/json' } })
    }))
    const store = useSessionsStore()
    store.applyUserFrame({ position: 9, type: 'member.added', session_id: 'c', data: { user_id: 'me' } }, 'me')
    await vi.waitFor(() => expect(store.sessions.map((s) => s.title)).toEqual(['Gamma']))
    expect(fetched).toEqual(['/api/sessions/c?after_position=9'])
    vi.unstubAllGlobals()
  })

  it('lists the most recently active session first and shows unread counts as given', () => {
    const store = useSessionsStore()
    store.byId = new Map([
      ['old', session('old', 'Old', { last_message_at: '2026-01-01T10:00:00Z', unread: 0 })],
      ['new', session('new', 'New', { last_message_at: '2026-01-02T10:00:00Z', unread: 3 })],
    ])
    expect(store.sessions.map((s) => [s.title, s.unread])).toEqual([['New', 3], ['Old', 0]])
    store.markRead('new')
    expect(store.byId.get('new')!.unread).toBe(0)
  })
})
