/** Every open stream's status in one place, so one banner can tell when the connection is lost. */
import { computed, reactive } from 'vue'
import type { StreamStatus } from './connection'

const statuses = reactive(new Map<string, StreamStatus>())

export function reportStreamStatus(name: string, status: StreamStatus | null): void {
  if (status === null || status === 'stopped') statuses.delete(name)
  else statuses.set(name, status)
}

/** True while any stream is waiting to reconnect after a drop. */
export const connectionLost = computed(() => [...statuses.values()].some((s) => s === 'reconnecting'))
