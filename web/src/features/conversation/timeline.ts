/**
 * The messages of one conversation as the client knows them: pages read over HTTP, frames from
 * the session stream, messages being sent and replies being written, merged into one list
 * ordered by log position. Every input is idempotent — a frame seen twice, a page overlapping the
 * stream, an edit older than what is shown, or a change arriving before its message changes
 * nothing twice and loses nothing. Items are immutable: a change replaces the item, so a
 * `shallowRef` of `items` re-renders exactly the rows that changed.
 */
import type { MessageView } from '@/api/models'
import type { Frame, ReplyFailureReason, Source, StoredFrame } from '@/api/frames'
import { citationsOf, type WireSource } from '@/api/sources'

export type SendState = 'pending' | 'failed' | 'sent'
export type ReplyState = 'streaming' | 'completed' | 'cancelled' | 'failed'

export interface ChatMessage {
  /** Stable key for rendering: survives pending → sent and streaming → stored. */
  key: string
  id: string | null
  clientMessageId: string | null
  authorId: string
  role: string
  content: string | null
  createdAt: string
  /** Log position of the post; null while pending or streaming. */
  position: number | null
  version: number
  editedAt: string | null
  deleted: boolean
  replyTo: string | null
  replyId: string | null
  replyState: ReplyState | null
  failure: { reason: ReplyFailureReason | string; detail: string | null } | null
  sources: Source[]
  sendState: SendState
  /** Last reply.delta seq applied (streaming replies). */
  seq: number
}

interface PendingChange {
  edit?: { content: string | null; version: number; editedAt: string }
  deleted?: boolean
}

export interface SessionEvents {
  renamed?(title: string): void
  archived?(): void
  memberAdded?(userId: string): void
  memberRemoved?(userId: string): void
  assistantChanged?(assistant: boolean): void
  documentsChanged?(): void
}

export const ERASED = '[erased]'

function fromView(view: MessageView): ChatMessage {
  const status = view.reply_status ?? null
  return {
    key: view.id,
    id: view.id,
    clientMessageId: view.client_message_id ?? null,
    authorId: view.author_id,
    role: view.role,
    content: view.deleted ? null : view.content,
    createdAt: view.created_at,
    position: view.position,
    version: view.version ?? 1,
    editedAt: view.edited_at ?? null,
    deleted: view.deleted ?? false,
    replyTo: view.reply_to ?? null,
    replyId: null,
    replyState:
      view.role === 'assistant'
        ? status === 'cancelled' || status === 'failed'
          ? status
          : 'completed'
        : null,
    failure: null,
    // Replies read over HTTP carry their sources too (when the server sends them).
    sources: citationsOf((view as { sources?: WireSource[] | null }).sources),
    sendState: 'sent',
    seq: 0,
  }
}

export class ConversationTimeline {
  private list: ChatMessage[] = []
  private byId = new Map<string, ChatMessage>()
  private byClientId = new Map<string, ChatMessage>()
  private byReplyId = new Map<string, ChatMessage>()
  private pendingChanges = new Map<string, PendingChange>()
  private readonly myUserId: string
  private readonly events: SessionEvents

  constructor(myUserId: string, events: SessionEvents = {}) {
    this.myUserId = myUserId
    this.events = events
  }

  /** A fresh array each call (for a shallowRef). */
  get items(): ChatMessage[] {
    return this.list.slice()
  }

  get size(): number {
    return this.list.length
  }

  /** The highest position among the stored messages. */
  get newestPosition(): number {
    let max = 0
    for (const m of this.list) if (m.position !== null && m.position > max) max = m.position
    return max
  }

  find(id: string): ChatMessage | undefined {
    return this.byId.get(id)
  }

  indexOfId(id: string): number {
    return this.list.findIndex((m) => m.id === id)
  }

  /** Messages read over HTTP (any order, any overlap with what is known). */
  addPage(views: readonly MessageView[]): void {
    for (const view of views) this.upsert(fromView(view), view.version ?? 1)
  }

  /** A person was erased: their words read "[erased]" everywhere, as the server now serves them. */
  eraseAuthor(userId: string): void {
    for (const message of [...this.byId.values()]) {
      if (message.authorId === userId && !message.deleted) this.replace(message, { ...message, content: ERASED })
    }
  }

  /** Takes the server's content for messages already shown (after an erasure changed some of it). */
  refresh(views: readonly MessageView[]): void {
    for (const view of views) {
      const existing = this.byId.get(view.id)
      if (existing && !existing.deleted && view.content !== existing.content) {
        this.replace(existing, { ...existing, content: view.content ?? null })
      }
    }
  }

  /** Show a message at once while it is being sent. */
  addPending(clientMessageId: string, content: string, createdAt: string): ChatMessage {
    const message: ChatMessage = {
      key: `c:${clientMessageId}`,
      id: null,
      clientMessageId,
      authorId: this.myUserId,
      role: 'user',
      content,
      createdAt,
      position: null,
      version: 1,
      editedAt: null,
      deleted: false,
      replyTo: null,
      replyId: null,
      replyState: null,
      failure: null,
      sources: [],
      sendState: 'pending',
      seq: 0,
    }
    this.byClientId.set(clientMessageId, message)
    this.list.push(message)
    return message
  }

  /** The send failed: the message stays, marked failed, to be retried with the same id. */
  markSendFailed(clientMessageId: string): void {
    const message = this.byClientId.get(clientMessageId)
    if (message && message.sendState === 'pending') this.replace(message, { ...message, sendState: 'failed' })
  }

  markRetrying(clientMessageId: string): void {
    const message = this.byClientId.get(clientMessageId)
    if (message && message.sendState === 'failed') this.replace(message, { ...message, sendState: 'pending' })
  }

  /** The 201 (or the 200 of a repeated client_message_id) for a message we sent. */
  confirmSent(view: MessageView): void {
    this.upsert(fromView(view), view.version ?? 1)
  }

  applyFrame(frame: Frame): void {
    switch (frame.type) {
      case 'message.posted': {
        const d = frame.data
        this.upsert(
          fromView({
            id: d.id,
            session_id: d.session_id,
            author_id: d.author_id,
            role: d.role,
            content: d.content,
            created_at: d.created_at,
            position: d.position ?? frame.position,
            client_message_id: d.client_message_id,
            version: d.version ?? 1,
            deleted: d.content === null,
          }),
          d.version ?? 1,
        )
        return
      }
      case 'message.edited':
        this.applyEdit(frame.data.id, { content: frame.data.content, version: frame.data.version, editedAt: frame.data.edited_at })
        return
      case 'message.deleted':
        this.applyDelete(frame.data.id)
        return
      case 'reply.started':
        this.replyStarted(frame.reply_id, frame.reply_to)
        return
      case 'reply.delta':
        this.replyDelta(frame.reply_id, frame.seq, frame.delta)
        return
      case 'reply.completed':
        this.replyCompleted(frame)
        return
      case 'reply.failed':
        this.replyFailed(frame)
        return
      case 'session.renamed':
        this.events.renamed?.(frame.data.title)
        return
      case 'session.archived':
        this.events.archived?.()
        return
      case 'member.added':
        this.events.memberAdded?.(frame.data.user_id)
        return
      case 'member.removed':
        this.events.memberRemoved?.(frame.data.user_id)
        return
      case 'session.assistant_changed':
        this.events.assistantChanged?.(frame.data.assistant)
        return
      case 'document.attached':
      case 'document.detached':
        this.events.documentsChanged?.()
        return
      default:
        return
    }
  }

  // ---- internals ----

  private upsert(incoming: ChatMessage, version: number): void {
    const id = incoming.id!
    const existing = this.byId.get(id)
    if (existing) {
      // Known already: only a newer version changes it (a page read later than a frame, or v.v.).
      if (!existing.deleted && incoming.deleted) {
        this.replace(existing, { ...existing, deleted: true, content: null })
      } else if (version > existing.version && !existing.deleted) {
        this.replace(existing, { ...existing, content: incoming.content, version, editedAt: incoming.editedAt })
      }
      this.settleClientId(existing, incoming)
      return
    }
    // One of ours, shown while pending: it becomes the stored message in place.
    const pending = incoming.clientMessageId ? this.byClientId.get(incoming.clientMessageId) : undefined
    if (pending && pending.id === null && incoming.authorId === this.myUserId) {
      this.byClientId.delete(incoming.clientMessageId!)
      this.removeAt(this.list.indexOf(pending))
      this.insertSorted({ ...incoming, key: pending.key })
    } else {
      // A reply being streamed becomes its stored message (completed frames take this path too).
      this.insertSorted(incoming)
    }
    this.applyPendingChanges(id)
  }

  private settleClientId(existing: ChatMessage, incoming: ChatMessage): void {
    const cid = incoming.clientMessageId
    if (!cid) return
    const pending = this.byClientId.get(cid)
    if (pending && pending !== existing && pending.id === null && incoming.authorId === this.myUserId) {
      this.byClientId.delete(cid)
      this.removeAt(this.list.indexOf(pending))
    }
  }

  private applyEdit(id: string, edit: { content: string | null; version: number; editedAt: string }): void {
    const message = this.byId.get(id)
    if (!message) {
      const change = this.pendingChanges.get(id) ?? {}
      if (!change.edit || change.edit.version < edit.version) change.edit = edit
      this.pendingChanges.set(id, change)
      return
    }
    if (message.deleted || edit.version <= message.version) return
    this.replace(message, { ...message, content: edit.content, version: edit.version, editedAt: edit.editedAt })
  }

  private applyDelete(id: string): void {
    const message = this.byId.get(id)
    if (!message) {
      const change = this.pendingChanges.get(id) ?? {}
      change.deleted = true
      this.pendingChanges.set(id, change)
      return
    }
    if (!message.deleted) this.replace(message, { ...message, deleted: true, content: null })
  }

  private applyPendingChanges(id: string): void {
    const change = this.pendingChanges.get(id)
    if (!change) return
    this.pendingChanges.delete(id)
    if (change.edit) this.applyEdit(id, change.edit)
    if (change.deleted) this.applyDelete(id)
  }

  private replyStarted(replyId: string, replyTo: string): void {
    if (this.byReplyId.has(replyId)) return
    const message: ChatMessage = {
      key: `r:${replyId}`,
      id: null,
      clientMessageId: null,
      authorId: 'assistant',
      role: 'assistant',
      content: '',
      createdAt: new Date().toISOString(),
      position: null,
      version: 1,
      editedAt: null,
      deleted: false,
      replyTo,
      replyId,
      replyState: 'streaming',
      failure: null,
      sources: [],
      sendState: 'sent',
      seq: 0,
    }
    this.byReplyId.set(replyId, message)
    this.list.push(message)
  }

  private replyDelta(replyId: string, seq: number, delta: string): void {
    let message = this.byReplyId.get(replyId)
    if (!message) {
      // Joined mid-reply: the start frame was before we subscribed.
      this.replyStarted(replyId, '')
      message = this.byReplyId.get(replyId)!
    }
    if (message.replyState !== 'streaming' || seq <= message.seq) return
    this.replace(message, { ...message, content: (message.content ?? '') + delta, seq })
  }

  private replyCompleted(frame: Extract<StoredFrame, { type: 'reply.completed' }>): void {
    const d = frame.data
    if (this.byId.has(d.id)) {
      // Already known from a page: add what only the frame carries.
      const existing = this.byId.get(d.id)!
      this.replace(existing, { ...existing, replyId: d.reply_id, sources: citationsOf(d.sources), replyState: d.status })
      this.dropStreaming(d.reply_id, existing)
      return
    }
    const streaming = this.byReplyId.get(d.reply_id)
    const stored: ChatMessage = {
      key: streaming?.key ?? d.id,
      id: d.id,
      clientMessageId: null,
      authorId: 'assistant',
      role: 'assistant',
      content: d.content,
      createdAt: d.created_at,
      position: d.position ?? frame.position,
      version: 1,
      editedAt: null,
      deleted: d.content === null && d.status === 'completed',
      replyTo: d.reply_to,
      replyId: d.reply_id,
      replyState: d.status,
      failure: null,
      sources: citationsOf(d.sources),
      sendState: 'sent',
      seq: streaming?.seq ?? 0,
    }
    if (streaming) this.removeAt(this.list.indexOf(streaming))
    this.byReplyId.set(d.reply_id, stored)
    this.insertSorted(stored)
    this.applyPendingChanges(d.id)
  }

  private dropStreaming(replyId: string, keep: ChatMessage): void {
    const streaming = this.byReplyId.get(replyId)
    if (streaming && streaming !== keep && streaming.id === null) this.removeAt(this.list.indexOf(streaming))
    this.byReplyId.set(replyId, this.byId.get(keep.id!)!)
  }

  private replyFailed(frame: Extract<StoredFrame, { type: 'reply.failed' }>): void {
    const d = frame.data
    const failure = { reason: d.reason, detail: d.detail ?? null }
    const streaming = this.byReplyId.get(d.reply_id)
    if (streaming && streaming.id !== null) return // a stored reply never fails afterwards
    const failed: ChatMessage = {
      key: streaming?.key ?? `r:${d.reply_id}`,
      id: null,
      clientMessageId: null,
      authorId: 'assistant',
      role: 'assistant',
      content: streaming?.content ?? null,
      createdAt: streaming?.createdAt ?? new Date().toISOString(),
      position: frame.position,
      version: 1,
      editedAt: null,
      deleted: false,
      replyTo: d.reply_to,
      replyId: d.reply_id,
      replyState: 'failed',
      failure,
      sources: [],
      sendState: 'sent',
      seq: streaming?.seq ?? 0,
    }
    if (streaming) {
      if (streaming.replyState === 'failed') return
      this.removeAt(this.list.indexOf(streaming))
    }
    this.byReplyId.set(d.reply_id, failed)
    this.insertSorted(failed)
  }

  /** Insert by position; items without one (pending, streaming) stay at the end. */
  private insertSorted(message: ChatMessage): void {
    if (message.id) this.byId.set(message.id, message)
    if (message.clientMessageId && message.sendState !== 'sent') this.byClientId.set(message.clientMessageId, message)
    const position = message.position
    if (position === null) {
      this.list.push(message)
      return
    }
    // Binary search among the positioned prefix.
    let lo = 0
    let hi = this.list.length
    while (hi > 0 && this.list[hi - 1]!.position === null) hi--
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.list[mid]!.position! < position) lo = mid + 1
      else hi = mid
    }
    this.list.splice(lo, 0, message)
  }

  private replace(old: ChatMessage, next: ChatMessage): void {
    const index = this.list.indexOf(old)
    if (index >= 0) this.list[index] = next
    if (next.id) this.byId.set(next.id, next)
    if (next.clientMessageId && this.byClientId.get(next.clientMessageId) === old) this.byClientId.set(next.clientMessageId, next)
    if (next.replyId && this.byReplyId.get(next.replyId) === old) this.byReplyId.set(next.replyId, next)
  }

  private removeAt(index: number): void {
    if (index >= 0) this.list.splice(index, 1)
  }
}
