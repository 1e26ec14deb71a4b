/**
 * One WebSocket stream of Chronicle frames: connects with `after=<last position seen>`, drops
 * frames it has already delivered, remembers the last position in sessionStorage (positions only),
 * pings every 25 s, and reconnects with exponential backoff after a drop. Framework-free so the
 * reconnect rules can be tested with a fake socket and fake timers; `useStream` wraps it for Vue.
 */
import { isStored, parseFrame, type ClientMessage, type Frame } from '@/api/frames'

export type StreamStatus =
  | 'idle'
  | 'connecting'
  | 'open'
  | 'reconnecting'
  | 'signed-out' // 4401
  | 'forbidden' // 4403
  | 'failed' // 4400: a bug in the URL, not retried
  | 'stopped'

/** The subset of the browser WebSocket this module uses. */
export interface SocketLike {
  readonly readyState: number
  onopen: ((ev: Event) => void) | null
  onmessage: ((ev: MessageEvent) => void) | null
  onclose: ((ev: CloseEvent) => void) | null
  onerror: ((ev: Event) => void) | null
  send(data: string): void
  close(code?: number, reason?: string): void
}

export interface StreamEnvironment {
  createSocket(url: string): SocketLike
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
  setInterval(fn: () => void, ms: number): unknown
  clearInterval(handle: unknown): void
  random(): number
  storage: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null
  location: { protocol: string; host: string }
}

export const PING_INTERVAL_MS = 25_000
export const BACKOFF_BASE_MS = 500
export const BACKOFF_MAX_MS = 15_000
const SEEN_LIMIT = 5_000
const OPEN = 1

export const CLOSE_SIGNED_OUT = 4401
export const CLOSE_FORBIDDEN = 4403
export const CLOSE_TOO_SLOW = 4429
export const CLOSE_BAD_REQUEST = 4400

/** Delay before reconnect attempt `attempt` (0-based): 0.5 s doubling to 15 s, with jitter in [d/2, d]. */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt))
  return Math.round(ceiling / 2 + random() * (ceiling / 2))
}

/** The position a 4429 close reason tells the client to resume from ("reconnect with after=N"). */
export function resumePositionFromReason(reason: string): number | null {
  const match = /after=(\d+)/.exec(reason)
  return match ? Number(match[1]) : null
}

export const POSITION_KEY_PREFIX = 'chronicle.position.'

export function browserEnvironment(): StreamEnvironment {
  let storage: StreamEnvironment['storage'] = null
  try {
    storage = window.sessionStorage
  } catch {
    storage = null
  }
  return {
    createSocket: (url) => new WebSocket(url),
    setTimeout: (fn, ms) => window.setTimeout(fn, ms),
    clearTimeout: (h) => window.clearTimeout(h as number),
    setInterval: (fn, ms) => window.setInterval(fn, ms),
    clearInterval: (h) => window.clearInterval(h as number),
    random: Math.random,
    storage,
    location: window.location,
  }
}

/** Forget every stored stream position (on sign-out). */
export function clearStoredPositions(storage: Storage | null = safeSessionStorage()): void {
  if (!storage) return
  const keys: string[] = []
  for (let i = 0; i < storage.length; i++) {
    const key = storage.key(i)
    if (key?.startsWith(POSITION_KEY_PREFIX)) keys.push(key)
  }
  for (const key of keys) storage.removeItem(key)
}

function safeSessionStorage(): Storage | null {
  try {
    return window.sessionStorage
  } catch {
    return null
  }
}

export interface StreamOptions {
  /** `/api/stream` or `/api/sessions/{id}/stream`. */
  path: string
  /** Name under which the last position is kept in sessionStorage. */
  storageKey: string
  onFrame: (frame: Frame) => void
  onStatus?: (status: StreamStatus) => void
  env?: StreamEnvironment
}

export class StreamConnection {
  readonly path: string
  private readonly env: StreamEnvironment
  private readonly options: StreamOptions
  private socket: SocketLike | null = null
  private reconnectTimer: unknown = null
  private pingTimer: unknown = null
  private attempt = 0
  private seen = new Set<number>()
  private _lastPosition = 0
  private _status: StreamStatus = 'idle'

  constructor(options: StreamOptions) {
    this.options = options
    this.path = options.path
    this.env = options.env ?? browserEnvironment()
    const stored = Number(this.env.storage?.getItem(this.storageName) ?? '')
    if (Number.isInteger(stored) && stored > 0) this._lastPosition = stored
  }

  get status(): StreamStatus {
    return this._status
  }

  /** The highest position delivered (the `after=` of the next connection). */
  get lastPosition(): number {
    return this._lastPosition
  }

  private get storageName(): string {
    return POSITION_KEY_PREFIX + this.options.storageKey
  }

  /** Start streaming after `after`: the position the caller's state reflects (default: the stored one). */
  start(after: number = this._lastPosition): void {
    this.setLastPosition(after)
    this.stopTimers()
    this.attempt = 0
    this.connect()
  }

  stop(): void {
    this.stopTimers()
    const socket = this.socket
    this.socket = null
    if (socket) {
      this.detach(socket)
      try {
        socket.close(1000, 'client closed')
      } catch {
        // already closed
      }
    }
    this.setStatus('stopped')
  }

  send(message: ClientMessage): boolean {
    if (!this.socket || this.socket.readyState !== OPEN) return false
    this.socket.send(JSON.stringify(message))
    return true
  }

  url(): string {
    const scheme = this.env.location.protocol === 'https:' ? 'wss:' : 'ws:'
    return `${scheme}//${this.env.location.host}${this.path}?after=${this._lastPosition}`
  }

  private connect(): void {
    this.setStatus(this.attempt === 0 ? 'connecting' : 'reconnecting')
    let socket: SocketLike
    try {
      socket = this.env.createSocket(this.url())
    } catch {
      this.scheduleReconnect()
      return
    }
    this.socket = socket
    socket.onopen = () => {
      if (this.socket !== socket) return
      this.attempt = 0
      this.setStatus('open')
      this.pingTimer = this.env.setInterval(() => this.send({ type: 'ping' }), PING_INTERVAL_MS)
    }
    socket.onmessage = (event: MessageEvent) => {
      if (this.socket !== socket || typeof event.data !== 'string') return
      this.receive(event.data)
    }
    socket.onerror = () => {
      // A close event always follows; it decides what to do.
    }
    socket.onclose = (event: CloseEvent) => {
      if (this.socket !== socket) return
      this.socket = null
      this.detach(socket)
      this.handleClose(event.code, event.reason)
    }
  }

  private receive(text: string): void {
    const frame = parseFrame(text)
    if (!frame || frame.type === 'pong') return
    if (isStored(frame)) {
      if (this.seen.has(frame.position)) return // a duplicate (e.g. replayed after a reconnect)
      this.remember(frame.position)
      if (frame.position > this._lastPosition) this.setLastPosition(frame.position)
    }
    this.options.onFrame(frame)
  }

  private remember(position: number): void {
    this.seen.add(position)
    if (this.seen.size > SEEN_LIMIT) {
      const first = this.seen.values().next()
      if (!first.done) this.seen.delete(first.value)
    }
  }

  private setLastPosition(position: number): void {
    this._lastPosition = position
    try {
      this.env.storage?.setItem(this.storageName, String(position))
    } catch {
      // storage full or disabled: resume works within this page anyway
    }
  }

  private handleClose(code: number, reason: string): void {
    this.stopTimers()
    switch (code) {
      case CLOSE_SIGNED_OUT:
        this.setStatus('signed-out')
        return
      case CLOSE_FORBIDDEN:
        this.setStatus('forbidden')
        return
      case CLOSE_BAD_REQUEST:
        this.setStatus('failed')
        return
      case CLOSE_TOO_SLOW: {
        const after = resumePositionFromReason(reason)
        if (after !== null) this.setLastPosition(after)
        // Not a network problem: resume at once, without backing off.
        this.setStatus('reconnecting')
        this.reconnectTimer = this.env.setTimeout(() => this.connect(), 0)
        return
      }
      default:
        this.scheduleReconnect()
    }
  }

  private scheduleReconnect(): void {
    const delay = backoffDelay(this.attempt, this.env.random)
    this.attempt += 1
    this.setStatus('reconnecting')
    this.reconnectTimer = this.env.setTimeout(() => this.connect(), delay)
  }

  /** Reconnect now (e.g. the browser came back online) instead of waiting out the backoff. */
  reconnectNow(): void {
    if (this._status !== 'reconnecting') return
    this.stopTimers()
    this.connect()
  }

  private stopTimers(): void {
    if (this.reconnectTimer !== null) this.env.clearTimeout(this.reconnectTimer)
    if (this.pingTimer !== null) this.env.clearInterval(this.pingTimer)
    this.reconnectTimer = null
    this.pingTimer = null
  }

  private detach(socket: SocketLike): void {
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null
  }

  private setStatus(status: StreamStatus): void {
    if (this._status === status) return
    this._status = status
    this.options.onStatus?.(status)
  }
}
