/**
 * Vue wrapper of `StreamConnection`: reactive status, reported to the connection banner,
 * stopped with the component (or effect scope) that owns it, and reconnecting at once when the
 * browser comes back online.
 */
import { getCurrentScope, onScopeDispose, ref, type Ref } from 'vue'
import type { Frame } from '@/api/frames'
import { StreamConnection, type StreamEnvironment, type StreamStatus } from './connection'
import { reportStreamStatus } from './status'

export interface UseStream {
  connection: StreamConnection
  status: Ref<StreamStatus>
  start(after?: number): void
  stop(): void
}

export function useStream(options: {
  path: string
  storageKey: string
  onFrame: (frame: Frame) => void
  env?: StreamEnvironment
}): UseStream {
  const status = ref<StreamStatus>('idle')
  const name = options.storageKey
  const connection = new StreamConnection({
    ...options,
    onStatus: (next) => {
      status.value = next
      reportStreamStatus(name, next)
    },
  })
  const online = () => connection.reconnectNow()
  if (typeof window !== 'undefined') window.addEventListener('online', online)
  const stop = () => {
    connection.stop()
    reportStreamStatus(name, null)
  }
  if (getCurrentScope()) {
    onScopeDispose(() => {
      if (typeof window !== 'undefined') window.removeEventListener('online', online)
      stop()
    })
  }
  return { connection, status, start: (after?: number) => connection.start(after), stop }
}
