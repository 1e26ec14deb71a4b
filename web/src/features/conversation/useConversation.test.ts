import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { effectScope, nextTick } from 'vue'
import { createPinia, setActivePinia } from 'pinia'
import { useConversation } from './useConversation'
import { useAccountStore } from '@/features/account/accountStore'
import type { MessageView } from '@/api/models'

class FakeWebSocket {
  static instances: FakeWebSocket[] = []
  readyState = 0
  onopen: ((ev: Event) => void) | null = null
  onmessage: ((ev: MessageEvent) => void) | null = null
  onclose: ((ev: CloseEvent) => void) | null = null
  onerror: ((ev: Event) => void) | null = null
  sent: string[] = []
  constructor(readonly url: string) {
    FakeWebSocket.instances.push(this)
  }
  send(data: string) {
    this.sent.push(data)
  }
  close() {
    this.readyState = 3
  }
  open() {
    this.readyState = 1
    this.onopen?.(new Event('open'))
  }
  frame(value: object) {
    this.onmessage?.({ data: JSON.stringify(value) } as MessageEvent)
  }
  drop(code: number, reason = '') {
    this.readyState = 3
    this.onclose?.({ code, reason } as CloseEvent)
  }
}

function message(position: number, extra: Partial<MessageView> = {}): MessageView {
  return {
    id: `m${position}`,
    session_id: 's1',
    author_id: 'ann',
    role: 'user',
    content: `text ${position}`,
    created_at: '2026-01-01T00:00:00Z',
    position,
    client_message_id: null,
    version: 1,
    deleted: false,
    ...extra,
  }
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })

let posts: { client_message_id: string; content: string }[]
let postResponses: (() => Response | Promise<Response>)[]
let requested: string[]

beforeEach(() => {
  FakeWebSocket.instances = []
  posts = []
  postResponses = []
  requested = []
  sessionStorage.clear()
  document.cookie = 'csrftoken=t0k3n'
  vi.stubGlobal('WebSocket', FakeWebSocket)
  vi.stubGlobal(
    'fetch',
    vi.fn(async (url: string, init: RequestInit) => {
      requested.push(`${init.method} ${url}`)
      if (init.method === 'GET' && url.startsWith('/api/sessions/s1/messages')) {
        return json(200, { items: [message(30), message(20)], next_cursor: 'older' })
      }
      if (init.method === 'GET' && url.startsWith('/api/sessions/s1')) {
        return json(200, {
          id: 's1', title: 'Launch', owner_id: 'me', assistant: true, archived: false, created_at: 'x', updated_at: 'x',
          message_count: 2, last_message_preview: null, last_message_at: null, position: 1,
          members: [{ user_id: 'me', role: 'owner', added_at: 'x' }],
        })
      }
      if (init.method === 'POST' && url === '/api/sessions/s1/messages') {
        posts.push(JSON.parse(String(init.body)))
        const next = postResponses.shift()
        if (!next) throw new Error('no response scripted')
        return next()
      }
      return json(404, { title: 'Not Found' })
    }),
  )
  setActivePinia(createPinia())
  const account = useAccountStore()
  account.me = { id: 'me', email: 'me@example.org', display_name: 'Me', role: 'user', disabled: false }
  account.state = 'signed-in'
})

afterEach(() => {
  vi.unstubAllGlobals()
  vi.useRealTimers()
})

async function openConversation() {
  const scope = effectScope()
  const c = scope.run(() => useConversation('s1'))!
  await c.open()
  const socket = FakeWebSocket.instances.at(-1)!
  socket.open()
  return { c, scope, socket }
}

describe('useConversation', () => {
  it('opens at the newest page (dir=b) and streams from its newest position', async () => {
    const { c, socket } = await openConversation()
    expect(requested[0]).toMatch(/^GET \/api\/sessions\/s1\/messages\?dir=b&limit=50/)
    expect(c.items.value.map((m) => m.position)).toEqual([20, 30])
    expect(socket.url).toMatch(/\/api\/sessions\/s1\/stream\?after=30$/)
    expect(socket.url).not.toMatch(/token/)
  })

  it('a failed send shows Retry state; Retry re-sends the same client_message_id and ends as one message', async () => {
    const { c } = await openConversation()
    postResponses.push(() => Promise.reject(new TypeError('network down')))
    await c.send('We ship Friday')
    const failed = c.items.value.at(-1)!
    expect(failed).toMatchObject({ content: 'We ship Friday', sendState: 'failed' })

    postResponses.push(() => json(200, message(31, { author_id: 'me', content: 'We ship Friday', client_message_id: posts[0]!.client_message_id })))
    await c.retry(failed.clientMessageId!)
    expect(posts).toHaveLength(2)
    expect(posts[1]!.client_message_id).toBe(posts[0]!.client_message_id)
    const mine = c.items.value.filter((m) => m.content === 'We ship Friday')
    expect(mine).toHaveLength(1)
    expect(mine[0]).toMatchObject({ sendState: 'sent', position: 31 })
  })

  it('the frame of my message arriving before the 201 still leaves one message', async () => {
    const { c, socket } = await openConversation()
    let release!: () => void
    postResponses.push(
      () =>
        new Promise<Response>((resolve) => {
          release = () => resolve(json(201, message(31, { author_id: 'me', content: 'hi', client_message_id: posts[0]!.client_message_id })))
        }),
    )
    const sending = c.send('hi')
    await vi.waitFor(() => expect(posts).toHaveLength(1))
    expect(c.items.value.at(-1)!.sendState).toBe('pending')
    socket.frame({
      position: 31, type: 'message.posted', session_id: 's1',
      data: { ...message(31, { author_id: 'me', content: 'hi', client_message_id: posts[0]!.client_message_id }) },
    })
    release()
    await sending
    expect(c.items.value.filter((m) => m.content === 'hi')).toHaveLength(1)
    expect(c.items.value.map((m) => m.position)).toEqual([20, 30, 31])
  })

  it('closing with 4403 tells the reader they were removed', async () => {
    const { c, socket } = await openConversation()
    socket.drop(4403, 'removed')
    await nextTick()
    expect(c.state.value).toBe('removed')
  })

  it('shows who is typing for 5 s after their last typing frame', async () => {
    vi.useFakeTimers()
    const { c, socket } = await openConversation()
    socket.frame({ type: 'typing', session_id: 's1', user_id: 'ann', display_name: 'Ann' })
    expect(c.typingNames.value).toEqual(['Ann'])
    vi.advanceTimersByTime(3_000)
    expect(c.typingNames.value).toEqual(['Ann'])
    vi.advanceTimersByTime(3_000)
    expect(c.typingNames.value).toEqual([])
  })

  it('sends a typing frame at most every 3 s', async () => {
    vi.useFakeTimers()
    const { c, socket } = await openConversation()
    c.noteTyping()
    c.noteTyping()
    vi.advanceTimersByTime(1_000)
    c.noteTyping()
    vi.advanceTimersByTime(2_500)
    c.noteTyping()
    expect(socket.sent.filter((s) => s.includes('typing'))).toHaveLength(2)
  })
})

describe('useConversation after a reload', () => {
  it('resumes the stream from the position stored by the previous page load, reading at least that far', async () => {
    sessionStorage.setItem('chronicle.position.session.s1', '35')
    const { socket } = await openConversation()
    expect(requested[0]).toMatch(/after_position=35/)
    expect(socket.url).toMatch(/after=35$/)
  })

  it('starts afresh when the stored position is one the server never reached (409)', async () => {
    sessionStorage.setItem('chronicle.position.session.s1', '999999')
    const plain = globalThis.fetch as unknown as (url: string, init: RequestInit) => Promise<Response>
    vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit) =>
      url.includes('after_position=999999') ? json(409, { title: 'Conflict', detail: 'after_position beyond the head' }) : plain(url, init)))
    const { c, socket } = await openConversation()
    expect(c.state.value).toBe('ready')
    expect(socket.url).toMatch(/after=30$/)
  })
})

describe('read marker', () => {
  it('is sent once, ~2 s after the newest visible message changes', async () => {
    vi.useFakeTimers()
    const puts: string[] = []
    const plain = globalThis.fetch as unknown as (url: string, init: RequestInit) => Promise<Response>
    vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit) => {
      if (init.method === 'PUT') {
        puts.push(`${url} ${String(init.body)}`)
        return json(200, { session_id: 's1', read_position: 31, recorded: true, position: 40 })
      }
      return plain(url, init)
    }))
    const { c } = await openConversation()
    c.noteVisible(30)
    vi.advanceTimersByTime(1_000)
    c.noteVisible(31)
    vi.advanceTimersByTime(1_900)
    expect(puts).toEqual([])
    await vi.advanceTimersByTimeAsync(200)
    expect(puts).toEqual(['/api/sessions/s1/read {"position":31}'])
    c.noteVisible(31)
    await vi.advanceTimersByTimeAsync(5_000)
    expect(puts).toHaveLength(1)
  })
})
