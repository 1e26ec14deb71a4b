import { beforeEach, describe, expect, it } from 'vitest'
import {
  backoffDelay,
  POSITION_KEY_PREFIX,
  StreamConnection,
  type SocketLike,
  type StreamEnvironment,
  type StreamStatus,
} from './connection'
import type { Frame } from '@/api/frames'

class FakeSocket implements SocketLike {
  readyState = 0
  onopen: ((ev: Event) => void) | null = null
  onmessage: ((ev: MessageEvent) => void) | null = null
  onclose: ((ev: CloseEvent) => void) | null = null
  onerror: ((ev: Event) => void) | null = null
  sent: string[] = []
  closed = false
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(data)
  }
  close() {
    this.closed = true
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

interface Timer {
  id: number
  at: number
  fn: () => void
  every: number | null
}

function fakeEnv(random = () => 1) {
  let now = 0
  let nextId = 1
  const timers = new Map<number, Timer>()
  const sockets: FakeSocket[] = []
  const store = new Map<string, string>()
  const env: StreamEnvironment = {
    createSocket: (url) => {
      const s = new FakeSocket(url)
      sockets.push(s)
      return s
    },
    setTimeout: (fn, ms) => {
      const id = nextId++
      timers.set(id, { id, at: now + ms, fn, every: null })
      return id
    },
    clearTimeout: (h) => void timers.delete(h as number),
    setInterval: (fn, ms) => {
      const id = nextId++
      timers.set(id, { id, at: now + ms, fn, every: ms })
      return id
    },
    clearInterval: (h) => void timers.delete(h as number),
    random,
    storage: {
      getItem: (k) => store.get(k) ?? null,
      setItem: (k, v) => void store.set(k, v),
      removeItem: (k) => void store.delete(k),
    },
    location: { protocol: 'http:', host: 'chat.example:8000' },
  }
  /** Advance the clock, firing due timers in order. */
  function advance(ms: number) {
    const end = now + ms
    for (;;) {
      const due = [...timers.values()].filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0]
      if (!due) break
      now = due.at
      if (due.every !== null) due.at += due.every
      else timers.delete(due.id)
      due.fn()
    }
    now = end
  }
  /** Delay until the next pending one-shot timer. */
  function nextDelay(): number | null {
    const oneShots = [...timers.values()].filter((t) => t.every === null)
    return oneShots.length ? Math.min(...oneShots.map((t) => t.at)) - now : null
  }
  return { env, sockets, store, advance, nextDelay, last: () => sockets[sockets.length - 1]! }
}

function posted(position: number, id = `m${position}`): Frame {
  return {
    position,
    type: 'message.posted',
    session_id: 's1',
    data: {
      id,
      session_id: 's1',
      author_id: 'u1',
      role: 'user',
      content: `hello ${position}`,
      created_at: '2026-01-01T00:00:00Z',
      position,
      client_message_id: null,
      version: 1,
    },
  }
}

describe('StreamConnection', () => {
  let fake: ReturnType<typeof fakeEnv>
  let frames: Frame[]
  let statuses: StreamStatus[]
  let conn: StreamConnection

  beforeEach(() => {
    fake = fakeEnv()
    frames = []
    statuses = []
    conn = new StreamConnection({
      path: '/api/sessions/s1/stream',
      storageKey: 'session.s1',
      onFrame: (f) => frames.push(f),
      onStatus: (s) => statuses.push(s),
      env: fake.env,
    })
  })

  it('builds the URL from the page location, with the position to resume after and no token', () => {
    conn.start(7)
    expect(fake.last().url).toBe('ws://chat.example:8000/api/sessions/s1/stream?after=7')
    const secure = new StreamConnection({
      path: '/api/stream',
      storageKey: 'user',
      onFrame: () => undefined,
      env: { ...fake.env, location: { protocol: 'https:', host: 'chat.example' } },
    })
    secure.start(0)
    expect(fake.last().url).toBe('wss://chat.example/api/stream?after=0')
  })

  it('delivers each positioned frame once, even when it is sent again', () => {
    conn.start(0)
    fake.last().open()
    fake.last().frame(posted(5))
    fake.last().frame(posted(6))
    fake.last().frame(posted(5))
    expect(frames.map((f) => ('position' in f ? f.position : null))).toEqual([5, 6])
    expect(conn.lastPosition).toBe(6)
  })

  it('reconnects after a drop with after= the last position seen, and delivers only what is new', () => {
    conn.start(0)
    fake.last().open()
    fake.last().frame(posted(3))
    fake.last().frame(posted(4))
    fake.last().drop(1006)
    expect(statuses.at(-1)).toBe('reconnecting')
    fake.advance(500)
    expect(fake.last().url).toMatch(/after=4$/)
    fake.last().open()
    fake.last().frame(posted(4)) // overlap: ignored
    fake.last().frame(posted(9))
    expect(frames.map((f) => ('position' in f ? f.position : null))).toEqual([3, 4, 9])
    expect(statuses.at(-1)).toBe('open')
  })

  it('backs off 0.5 s doubling to 15 s, and starts again from 0.5 s after a successful open', () => {
    conn.start(0)
    const delays: number[] = []
    for (let i = 0; i < 8; i++) {
      fake.last().drop(1006)
      delays.push(fake.nextDelay()!)
      fake.advance(delays[delays.length - 1]!)
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 15000, 15000, 15000])
    fake.last().open()
    fake.last().drop(1006)
    expect(fake.nextDelay()).toBe(500)
  })

  it('adds jitter within [d/2, d]', () => {
    expect(backoffDelay(0, () => 0)).toBe(250)
    expect(backoffDelay(3, () => 0.5)).toBe(3000)
    expect(backoffDelay(20, () => 0)).toBe(7500)
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(2)
      expect(d).toBeGreaterThanOrEqual(1000)
      expect(d).toBeLessThanOrEqual(2000)
    }
  })

  it('on 4429 reconnects at once with the after= given in the close reason', () => {
    conn.start(0)
    fake.last().open()
    fake.last().frame(posted(10))
    fake.last().drop(4429, 'too slow: reconnect with after=10')
    expect(fake.nextDelay()).toBe(0)
    fake.advance(0)
    expect(fake.sockets).toHaveLength(2)
    expect(fake.last().url).toMatch(/after=10$/)
  })

  it('on 4403 stops for good (removed from the session)', () => {
    conn.start(0)
    fake.last().open()
    fake.last().drop(4403, 'not a member')
    expect(statuses.at(-1)).toBe('forbidden')
    fake.advance(60_000)
    expect(fake.sockets).toHaveLength(1)
  })

  it('on 4401 reports signed out and does not retry', () => {
    conn.start(0)
    fake.last().open()
    fake.last().drop(4401, 'expired')
    expect(statuses.at(-1)).toBe('signed-out')
    fake.advance(60_000)
    expect(fake.sockets).toHaveLength(1)
  })

  it('on 4400 gives up (a bug, not a network problem)', () => {
    conn.start(0)
    fake.last().drop(4400, 'bad after')
    expect(statuses.at(-1)).toBe('failed')
    fake.advance(60_000)
    expect(fake.sockets).toHaveLength(1)
  })

  it('keeps the last position in sessionStorage so a reload resumes there', () => {
    conn.start(0)
    fake.last().open()
    fake.last().frame(posted(42))
    expect(fake.store.get(`${POSITION_KEY_PREFIX}session.s1`)).toBe('42')
    const afterReload = new StreamConnection({
      path: '/api/sessions/s1/stream',
      storageKey: 'session.s1',
      onFrame: () => undefined,
      env: fake.env,
    })
    expect(afterReload.lastPosition).toBe(42)
    afterReload.start()
    expect(fake.last().url).toMatch(/after=42$/)
  })

  it('pings every 25 s while open and ignores pongs', () => {
    conn.start(0)
    fake.last().open()
    fake.advance(25_000)
    fake.advance(25_000)
    expect(fake.last().sent).toEqual(['{"type":"ping"}', '{"type":"ping"}'])
    fake.last().frame({ type: 'pong' })
    expect(frames).toHaveLength(0)
  })

  it('passes ephemeral frames (no position) through without touching the position', () => {
    conn.start(3)
    fake.last().open()
    fake.last().frame({ type: 'reply.delta', session_id: 's1', reply_id: 'r', seq: 1, delta: 'Hi' })
    fake.last().frame({ type: 'reply.delta', session_id: 's1', reply_id: 'r', seq: 2, delta: '!' })
    expect(frames).toHaveLength(2)
    expect(conn.lastPosition).toBe(3)
  })

  it('stop() closes the socket and cancels a pending reconnect', () => {
    conn.start(0)
    fake.last().drop(1006)
    conn.stop()
    fake.advance(60_000)
    expect(fake.sockets).toHaveLength(1)
    expect(statuses.at(-1)).toBe('stopped')
  })
})
