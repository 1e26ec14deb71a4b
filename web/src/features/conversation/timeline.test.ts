import { describe, expect, it } from 'vitest'
import { ConversationTimeline, type ChatMessage } from './timeline'
import type { MessageView } from '@/api/models'
import type { Frame } from '@/api/frames'

const ME = 'me'
const OTHER = 'ann'

function view(position: number, extra: Partial<MessageView> = {}): MessageView {
  return {
    id: `m${position}`,
    session_id: 's',
    author_id: OTHER,
    role: 'user',
    content: `text ${position}`,
    created_at: '2026-01-01T00:00:00Z',
    position,
    client_message_id: null,
    version: 1,
    edited_at: null,
    deleted: false,
    ...extra,
  }
}

function posted(position: number, extra: Partial<MessageView> = {}): Frame {
  const v = view(position, extra)
  return {
    position,
    type: 'message.posted',
    session_id: 's',
    data: {
      id: v.id,
      session_id: 's',
      author_id: v.author_id,
      role: v.role,
      content: v.content,
      created_at: v.created_at,
      position,
      client_message_id: v.client_message_id ?? null,
      version: 1,
    },
  }
}

function edited(position: number, id: string, version: number, content: string): Frame {
  return { position, type: 'message.edited', session_id: 's', data: { id, content, version, edited_at: '2026-01-01T01:00:00Z' } }
}

function deleted(position: number, id: string): Frame {
  return { position, type: 'message.deleted', session_id: 's', data: { id } }
}

const texts = (items: ChatMessage[]) => items.map((m) => (m.deleted ? '(deleted)' : m.content))
const positions = (items: ChatMessage[]) => items.map((m) => m.position)

describe('merging pages and frames by position', () => {
  it('shows a page newest-first from the API in chronological order', () => {
    const t = new ConversationTimeline(ME)
    t.addPage([view(30), view(20), view(10)])
    expect(positions(t.items)).toEqual([10, 20, 30])
  })

  it('never shows a message twice when the stream replays what the page already had', () => {
    const t = new ConversationTimeline(ME)
    t.addPage([view(20), view(10)])
    t.applyFrame(posted(20))
    t.applyFrame(posted(30))
    t.applyFrame(posted(30))
    expect(positions(t.items)).toEqual([10, 20, 30])
  })

  it('puts frames that arrive out of order in their place', () => {
    const t = new ConversationTimeline(ME)
    t.applyFrame(posted(40))
    t.applyFrame(posted(10))
    t.applyFrame(posted(25))
    t.addPage([view(5)])
    expect(positions(t.items)).toEqual([5, 10, 25, 40])
  })

  it('applies an edit that arrives before its message, and ignores an older version afterwards', () => {
    const t = new ConversationTimeline(ME)
    t.applyFrame(edited(12, 'm10', 3, 'third'))
    t.applyFrame(posted(10))
    expect(texts(t.items)).toEqual(['third'])
    t.applyFrame(edited(11, 'm10', 2, 'second'))
    expect(texts(t.items)).toEqual(['third'])
    expect(t.items[0]!.editedAt).not.toBeNull()
  })

  it('does not undo a newer edit when an older page is read afterwards', () => {
    const t = new ConversationTimeline(ME)
    t.applyFrame(posted(10))
    t.applyFrame(edited(11, 'm10', 2, 'fixed'))
    t.addPage([view(10, { content: 'original', version: 1 })])
    expect(texts(t.items)).toEqual(['fixed'])
  })

  it('turns a deleted message into a tombstone, whether the delete comes first or last', () => {
    const t = new ConversationTimeline(ME)
    t.applyFrame(posted(10))
    t.applyFrame(deleted(11, 'm10'))
    t.applyFrame(deleted(21, 'm20'))
    t.applyFrame(posted(20))
    expect(texts(t.items)).toEqual(['(deleted)', '(deleted)'])
    expect(t.items.every((m) => m.content === null)).toBe(true)
    // A later edit frame (replayed) cannot bring the content back.
    t.applyFrame(edited(12, 'm10', 2, 'back?'))
    expect(texts(t.items)).toEqual(['(deleted)', '(deleted)'])
  })

  it('replaces a changed item with a new object and keeps the others (cheap re-render)', () => {
    const t = new ConversationTimeline(ME)
    t.addPage([view(20), view(10)])
    const before = t.items
    t.applyFrame(edited(21, 'm20', 2, 'new'))
    const after = t.items
    expect(after[0]).toBe(before[0])
    expect(after[1]).not.toBe(before[1])
  })

  it('reports session changes from the stream', () => {
    const seen: string[] = []
    const t = new ConversationTimeline(ME, {
      renamed: (title) => seen.push(`renamed ${title}`),
      memberRemoved: (u) => seen.push(`removed ${u}`),
      archived: () => seen.push('archived'),
    })
    t.applyFrame({ position: 1, type: 'session.renamed', session_id: 's', data: { title: 'Launch' } })
    t.applyFrame({ position: 2, type: 'member.removed', session_id: 's', data: { user_id: ME } })
    t.applyFrame({ position: 3, type: 'session.archived', session_id: 's', data: {} })
    expect(seen).toEqual(['renamed Launch', `removed ${ME}`, 'archived'])
  })
})

describe('optimistic send', () => {
  const mine = (position: number, cid: string) => view(position, { author_id: ME, client_message_id: cid, content: 'hi there' })

  it('shows the message at once as pending', () => {
    const t = new ConversationTimeline(ME)
    t.addPage([view(10)])
    t.addPending('c1', 'hi there', '2026-01-01T00:00:01Z')
    expect(t.items.map((m) => [m.content, m.sendState])).toEqual([
      ['text 10', 'sent'],
      ['hi there', 'pending'],
    ])
  })

  it('201 first, then the frame: one message, sent, same row key', () => {
    const t = new ConversationTimeline(ME)
    const pending = t.addPending('c1', 'hi there', 'now')
    t.confirmSent(mine(11, 'c1'))
    t.applyFrame(posted(11, { author_id: ME, client_message_id: 'c1', content: 'hi there' }))
    expect(t.items).toHaveLength(1)
    expect(t.items[0]).toMatchObject({ id: 'm11', sendState: 'sent', position: 11, key: pending.key })
  })

  it('frame first, then the 201: one message, sent, same row key', () => {
    const t = new ConversationTimeline(ME)
    const pending = t.addPending('c1', 'hi there', 'now')
    t.applyFrame(posted(11, { author_id: ME, client_message_id: 'c1', content: 'hi there' }))
    t.confirmSent(mine(11, 'c1'))
    expect(t.items).toHaveLength(1)
    expect(t.items[0]).toMatchObject({ id: 'm11', sendState: 'sent', key: pending.key })
  })

  it('a pending message moves into position order once confirmed, before later pending ones', () => {
    const t = new ConversationTimeline(ME)
    t.addPending('c1', 'first', 'now')
    t.addPending('c2', 'second', 'now')
    t.applyFrame(posted(12))
    t.confirmSent(mine(11, 'c1'))
    expect(t.items.map((m) => [m.position, m.sendState])).toEqual([
      [11, 'sent'],
      [12, 'sent'],
      [null, 'pending'],
    ])
  })

  it('a failed send stays visible as failed, and a retry that the server dedupes ends as one message', () => {
    const t = new ConversationTimeline(ME)
    t.addPending('c1', 'hi there', 'now')
    t.markSendFailed('c1')
    expect(t.items[0]!.sendState).toBe('failed')
    t.markRetrying('c1')
    expect(t.items[0]!.sendState).toBe('pending')
    // The first attempt had reached the server after all: its frame and the retry's 200 both arrive.
    t.applyFrame(posted(11, { author_id: ME, client_message_id: 'c1', content: 'hi there' }))
    t.confirmSent(mine(11, 'c1'))
    expect(t.items).toHaveLength(1)
    expect(t.items[0]!.sendState).toBe('sent')
  })

  it("someone else's message with the same client_message_id does not replace mine", () => {
    const t = new ConversationTimeline(ME)
    t.addPending('c1', 'mine', 'now')
    t.applyFrame(posted(11, { author_id: OTHER, client_message_id: 'c1', content: 'theirs' }))
    expect(t.items.map((m) => [m.content, m.sendState])).toEqual([
      ['theirs', 'sent'],
      ['mine', 'pending'],
    ])
  })
})

describe('assistant replies', () => {
  function completed(position: number, replyId: string, content: string, status: 'completed' | 'cancelled' = 'completed'): Frame {
    return {
      position,
      type: 'reply.completed',
      session_id: 's',
      data: {
        id: `a${position}`,
        reply_id: replyId,
        session_id: 's',
        reply_to: 'm10',
        author_id: 'assistant',
        role: 'assistant',
        content,
        status,
        provider: 'local',
        model: 'm',
        prompt_tokens: 1,
        completion_tokens: 1,
        latency_ms: 1,
        sources: [{ kind: 'message', session_id: 's', message_id: 'm10' }],
        created_at: 'now',
        position,
      },
    }
  }

  it('streams deltas token by token, ignoring repeats, then becomes the stored reply in the same row', () => {
    const t = new ConversationTimeline(ME)
    t.applyFrame(posted(10))
    t.applyFrame({ type: 'reply.started', session_id: 's', reply_id: 'r1', reply_to: 'm10' })
    t.applyFrame({ type: 'reply.delta', session_id: 's', reply_id: 'r1', seq: 1, delta: 'We ' })
    t.applyFrame({ type: 'reply.delta', session_id: 's', reply_id: 'r1', seq: 2, delta: 'ship' })
    t.applyFrame({ type: 'reply.delta', session_id: 's', reply_id: 'r1', seq: 2, delta: 'ship' })
    expect(t.items[1]).toMatchObject({ content: 'We ship', replyState: 'streaming' })
    const key = t.items[1]!.key
    t.applyFrame(completed(12, 'r1', 'We ship Friday.'))
    expect(t.items).toHaveLength(2)
    expect(t.items[1]).toMatchObject({ content: 'We ship Friday.', replyState: 'completed', position: 12, key })
    expect(t.items[1]!.sources).toHaveLength(1)
    // A late delta changes nothing.
    t.applyFrame({ type: 'reply.delta', session_id: 's', reply_id: 'r1', seq: 3, delta: '!!' })
    expect(t.items[1]!.content).toBe('We ship Friday.')
  })

  it('a cancelled reply keeps its partial text and is marked cancelled', () => {
    const t = new ConversationTimeline(ME)
    t.applyFrame({ type: 'reply.started', session_id: 's', reply_id: 'r1', reply_to: 'm10' })
    t.applyFrame({ type: 'reply.delta', session_id: 's', reply_id: 'r1', seq: 1, delta: 'Partial' })
    t.applyFrame(completed(12, 'r1', 'Partial', 'cancelled'))
    expect(t.items[0]).toMatchObject({ content: 'Partial', replyState: 'cancelled' })
  })

  it('a failed reply shows its reason', () => {
    const t = new ConversationTimeline(ME)
    t.applyFrame({ type: 'reply.started', session_id: 's', reply_id: 'r1', reply_to: 'm10' })
    t.applyFrame({
      position: 12,
      type: 'reply.failed',
      session_id: 's',
      data: { reply_id: 'r1', reply_to: 'm10', reason: 'timeout', detail: 'after 60 s' },
    })
    expect(t.items).toHaveLength(1)
    expect(t.items[0]).toMatchObject({ replyState: 'failed', failure: { reason: 'timeout', detail: 'after 60 s' } })
  })
})

describe('an erasure', () => {
  it("turns the erased person's words into [erased] and takes the server's text for replies that quoted them", () => {
    const t = new ConversationTimeline(ME)
    t.addPage([
      view(10, { content: 'the vault code is 4711' }),
      view(20, { author_id: ME, content: 'mine stays' }),
      view(30, { id: 'r30', author_id: 'assistant', role: 'assistant', content: '> the vault code is 4711' }),
    ])
    t.eraseAuthor(OTHER)
    t.refresh([view(30, { id: 'r30', author_id: 'assistant', role: 'assistant', content: '[erased]' })])
    expect(t.items.map((m) => m.content)).toEqual(['[erased]', 'mine stays', '[erased]'])
  })
})
