/**
 * One open conversation: the session, its members, the message timeline (newest page first,
 * older pages on demand), live frames from the session stream, optimistic sends, edits,
 * deletions, typing indicators and the read marker.
 */
import { computed, onScopeDispose, ref, shallowRef, watch } from 'vue'
import { api, ProblemError } from '@/api/client'
import type { MessageVersion, MessageView, Page, SessionDetail, UserLookup } from '@/api/models'
import type { Frame } from '@/api/frames'
import { useStream } from '@/stream/useStream'
import { useAccountStore } from '@/features/account/accountStore'
import { useSessionsStore } from '@/features/sessions/sessionsStore'
import { usePeopleStore } from '@/features/sessions/peopleStore'
import { ConversationTimeline, type ChatMessage } from './timeline'

export const PAGE_SIZE = 50
export const TYPING_SEND_INTERVAL_MS = 3_000
export const TYPING_SHOW_MS = 5_000
export const READ_MARKER_DELAY_MS = 2_000

export type ConversationState = 'loading' | 'ready' | 'not-found' | 'removed' | 'error'

function newClientMessageId(): string {
  return crypto.randomUUID()
}

export function useConversation(sessionId: string) {
  const account = useAccountStore()
  const sessions = useSessionsStore()
  const people = usePeopleStore()
  const myId = account.me?.id ?? ''

  const state = ref<ConversationState>('loading')
  const session = ref<SessionDetail | null>(null)
  const members = ref<{ user_id: string; role: string }[]>([])
  const items = shallowRef<ChatMessage[]>([])
  const olderCursor = ref<string | null>(null)
  const reachedStart = ref(false)
  const loadingOlder = ref(false)
  const typing = ref(new Map<string, { name: string; until: number }>())
  const now = ref(Date.now())
  /** Bumped by document.attached/detached frames, so a documents panel re-reads its list. */
  const documentChanges = ref(0)

  const timeline = new ConversationTimeline(myId, {
    renamed: (title) => {
      if (session.value) session.value = { ...session.value, title }
    },
    archived: () => {
      if (session.value) session.value = { ...session.value, archived: true }
    },
    assistantChanged: (assistant) => {
      if (session.value) session.value = { ...session.value, assistant }
    },
    memberAdded: (userId) => {
      if (!members.value.some((m) => m.user_id === userId)) members.value = [...members.value, { user_id: userId, role: 'member' }]
    },
    documentsChanged: () => {
      documentChanges.value += 1
    },
    memberRemoved: (userId) => {
      members.value = members.value.filter((m) => m.user_id !== userId)
      if (userId === myId) state.value = 'removed'
    },
  })

  function publish(): void {
    items.value = timeline.items
  }

  const stream = useStream({
    path: `/api/sessions/${sessionId}/stream`,
    storageKey: `session.${sessionId}`,
    onFrame: (frame) => onFrame(frame),
  })

  watch(stream.status, async (status) => {
    if (status === 'forbidden') state.value = 'removed'
    if (status === 'signed-out' && (await account.recheck())) stream.start()
  })

  function onFrame(frame: Frame): void {
    if (frame.type === 'user.erased') {
      timeline.eraseAuthor(frame.user_id)
      publish()
      void newestPage(0).then((page) => {
        timeline.refresh(page.items) // replies that quoted the erased person read "[erased]" too
        publish()
      })
      return
    }
    if (frame.type === 'typing') {
      if (frame.user_id === myId) return
      people.learn(frame.user_id, frame.display_name)
      const next = new Map(typing.value)
      next.set(frame.user_id, { name: frame.display_name, until: Date.now() + TYPING_SHOW_MS })
      typing.value = next
      now.value = Date.now()
      return
    }
    timeline.applyFrame(frame)
    if (frame.type === 'message.posted') {
      typing.value.delete(frame.data.author_id)
      sessions.noteMessage(sessionId, frame.data.content, frame.data.created_at)
    }
    if (frame.type === 'reply.completed') sessions.noteMessage(sessionId, frame.data.content, frame.data.created_at)
    publish()
  }

  const typingNames = computed(() => {
    const t = now.value
    return [...typing.value.values()].filter((v) => v.until > t).map((v) => v.name)
  })
  const typingTicker = window.setInterval(() => {
    if (typing.value.size > 0) {
      now.value = Date.now()
      const alive = new Map([...typing.value].filter(([, v]) => v.until > now.value))
      if (alive.size !== typing.value.size) typing.value = alive
    }
  }, 1_000)

  function newestPage(afterPosition: number): Promise<Page<MessageView>> {
    return api.get<Page<MessageView>>(`/api/sessions/${sessionId}/messages`, {
      query: { dir: 'b', limit: PAGE_SIZE, after_position: afterPosition || undefined },
    })
  }

  async function open(): Promise<void> {
    state.value = 'loading'
    let stored = stream.connection.lastPosition
    // A session this browser has just made may not have reached the read models yet: read at
    // least at the position its creation answered with, or the server says it does not exist.
    const made = sessions.byId.get(sessionId)?.position ?? 0
    try {
      let page: Page<MessageView>
      try {
        page = await newestPage(Math.max(stored, made))
      } catch (error) {
        // A stored position the server has never reached (its data was reset): start afresh.
        if (!(stored > 0 && error instanceof ProblemError && error.status === 409)) throw error
        stored = 0
        page = await newestPage(0)
      }
      timeline.addPage(page.items)
      olderCursor.value = page.next_cursor
      reachedStart.value = page.next_cursor === null
      const newest = timeline.newestPosition
      // The detail read waits for the page's newest position: both reflect everything up to it.
      const detail = await api.get<SessionDetail>(`/api/sessions/${sessionId}`, {
        query: { after_position: Math.max(stored, newest, made) || undefined },
      })
      session.value = detail
      members.value = (detail.members ?? []).map((m) => ({ user_id: m.user_id, role: m.role }))
      // Members carry their display names (newer servers): authors show by name.
      for (const m of (detail.members ?? []) as { user_id: string; display_name?: string | null }[]) {
        if (m.display_name) people.learn(m.user_id, m.display_name)
      }
      publish()
      state.value = 'ready'
      stream.start(Math.max(stored, newest))
    } catch (error) {
      if (error instanceof ProblemError && (error.status === 404 || error.status === 403)) {
        state.value = sessions.removed.has(sessionId) ? 'removed' : 'not-found'
      } else {
        state.value = 'error'
      }
    }
  }

  /** Older messages, page by page (the log is scrolled to its top). */
  async function loadOlder(limit = PAGE_SIZE): Promise<number> {
    if (loadingOlder.value || reachedStart.value || !olderCursor.value) return 0
    loadingOlder.value = true
    try {
      const page = await api.get<Page<MessageView>>(`/api/sessions/${sessionId}/messages`, {
        query: { dir: 'b', limit, cursor: olderCursor.value },
      })
      const before = timeline.size
      timeline.addPage(page.items)
      olderCursor.value = page.next_cursor
      reachedStart.value = page.next_cursor === null
      publish()
      return timeline.size - before
    } finally {
      loadingOlder.value = false
    }
  }

  /** Make sure a message is loaded (for a citation or a search hit): page back until it is. */
  async function ensureLoaded(messageId: string): Promise<boolean> {
    while (!timeline.find(messageId) && !reachedStart.value) {
      const added = await loadOlder(500)
      if (added === 0 && loadingOlder.value === false && !olderCursor.value) break
    }
    return timeline.find(messageId) !== undefined
  }

  async function post(clientMessageId: string, content: string): Promise<void> {
    try {
      const view = await api.post<MessageView>(`/api/sessions/${sessionId}/messages`, {
        content,
        client_message_id: clientMessageId,
      })
      timeline.confirmSent(view)
      sessions.noteMessage(sessionId, view.content, view.created_at)
    } catch {
      timeline.markSendFailed(clientMessageId)
    }
    publish()
  }

  function send(content: string): Promise<void> {
    const text = content.trim()
    if (!text) return Promise.resolve()
    const cid = newClientMessageId()
    timeline.addPending(cid, text, new Date().toISOString())
    publish()
    return post(cid, text)
  }

  /** Re-send a failed message with the same client_message_id: the server answers a repeat with the first. */
  function retry(clientMessageId: string): Promise<void> {
    const message = timeline.items.find((m) => m.clientMessageId === clientMessageId && m.sendState === 'failed')
    if (!message) return Promise.resolve()
    timeline.markRetrying(clientMessageId)
    publish()
    return post(clientMessageId, message.content ?? '')
  }

  async function edit(messageId: string, content: string): Promise<void> {
    const change = await api.patch<{ version: number; content: string | null; position: number }>(
      `/api/sessions/${sessionId}/messages/${messageId}`,
      { content },
    )
    timeline.applyFrame({
      type: 'message.edited',
      position: change.position,
      session_id: sessionId,
      data: { id: messageId, content: change.content, version: change.version, edited_at: new Date().toISOString() },
    })
    publish()
  }

  async function remove(messageId: string): Promise<void> {
    const change = await api.delete<{ position: number } | undefined>(`/api/sessions/${sessionId}/messages/${messageId}`)
    timeline.applyFrame({ type: 'message.deleted', position: change?.position ?? 0, session_id: sessionId, data: { id: messageId } })
    publish()
  }

  function history(messageId: string, cursor: string | null = null): Promise<Page<MessageVersion>> {
    return api.get<Page<MessageVersion>>(`/api/sessions/${sessionId}/messages/${messageId}/history`, {
      query: cursor === null ? {} : { cursor },
    })
  }

  async function cancelReply(replyId: string): Promise<void> {
    try {
      await api.post<unknown>(`/api/sessions/${sessionId}/replies/${replyId}/cancel`)
    } catch (error) {
      // 409: it already finished; its outcome arrives on the stream.
      if (!(error instanceof ProblemError && error.status === 409)) throw error
    }
  }

  let lastTypingSent = 0
  function noteTyping(): void {
    const t = Date.now()
    if (t - lastTypingSent < TYPING_SEND_INTERVAL_MS) return
    if (stream.connection.send({ type: 'typing' })) lastTypingSent = t
  }

  // Read marker: sent ~2 s after the newest visible message changes, and only while the page is
  // seen (a background tab reads nothing; its newest position is sent when it comes back).
  let readTimer: number | null = null
  let lastReadSent = 0
  let unsentRead: number | null = null
  function noteVisible(position: number | null): void {
    if (position === null || position <= lastReadSent) return
    if (document.visibilityState === 'hidden') {
      unsentRead = Math.max(unsentRead ?? 0, position)
      return
    }
    if (readTimer !== null) window.clearTimeout(readTimer)
    readTimer = window.setTimeout(() => {
      readTimer = null
      lastReadSent = position
      void api
        .put<unknown>(`/api/sessions/${sessionId}/read`, { position })
        .then(() => sessions.markRead(sessionId))
        .catch(() => undefined)
    }, READ_MARKER_DELAY_MS)
  }
  const onVisibility = () => {
    if (document.visibilityState === 'visible' && unsentRead !== null) {
      const position = unsentRead
      unsentRead = null
      noteVisible(position)
    }
  }
  document.addEventListener('visibilitychange', onVisibility)

  async function invite(email: string): Promise<UserLookup> {
    const user = await api.get<UserLookup>('/api/users/lookup', { query: { email } })
    await api.post<unknown>(`/api/sessions/${sessionId}/members`, { user_id: user.id })
    people.learn(user.id, user.display_name)
    timeline.applyFrame({ type: 'member.added', position: 0, session_id: sessionId, data: { user_id: user.id } })
    return user
  }

  async function removeMember(userId: string): Promise<void> {
    await api.delete<unknown>(`/api/sessions/${sessionId}/members/${userId}`)
    if (userId !== myId) members.value = members.value.filter((m) => m.user_id !== userId)
  }

  onScopeDispose(() => {
    document.removeEventListener('visibilitychange', onVisibility)
    window.clearInterval(typingTicker)
    if (readTimer !== null) window.clearTimeout(readTimer)
  })

  return {
    state,
    session,
    members,
    items,
    reachedStart,
    loadingOlder,
    typingNames,
    documentChanges,
    streamStatus: stream.status,
    timeline,
    open,
    loadOlder,
    ensureLoaded,
    send,
    retry,
    edit,
    remove,
    history,
    cancelReply,
    noteTyping,
    noteVisible,
    invite,
    removeMember,
  }
}

export type Conversation = ReturnType<typeof useConversation>
