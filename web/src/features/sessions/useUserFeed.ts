/**
 * The signed-in user's own stream (`/api/stream`), feeding the sessions and documents stores.
 * It starts after the lists are read, from a position both reads reflect (or the position a
 * previous page load of this tab reached), so nothing that happens in between is missed; frames
 * seen twice change nothing.
 */
import { onScopeDispose, watch } from 'vue'
import { ProblemError } from '@/api/client'
import { isStored } from '@/api/frames'
import { useStream } from '@/stream/useStream'
import { useAccountStore } from '@/features/account/accountStore'
import { useDocumentsStore } from '@/features/documents/documentsStore'
import { useSessionsStore } from './sessionsStore'

const REFRESH_MS = 60_000

export function useUserFeed(): void {
  const account = useAccountStore()
  const sessions = useSessionsStore()
  const documents = useDocumentsStore()
  const myId = account.me?.id ?? ''

  const stream = useStream({
    path: '/api/stream',
    storageKey: `user.${myId}`,
    onFrame(frame) {
      if (!isStored(frame)) return
      sessions.applyUserFrame(frame, myId)
      documents.applyUserFrame(frame)
    },
  })

  watch(stream.status, async (status) => {
    if (status === 'signed-out' && (await account.recheck())) stream.start()
  })

  async function begin(): Promise<void> {
    let stored = stream.connection.lastPosition
    // With a stored position, wait for the read models to reach it: then resuming there is exact.
    try {
      await Promise.all([sessions.load(stored || undefined), documents.load(stored || undefined)])
    } catch (error) {
      // A position the server never reached (its data was reset) is refused with 400: start afresh.
      if (stored > 0 && error instanceof ProblemError && error.status === 400) {
        stored = 0
        await Promise.all([sessions.load(), documents.load()]).catch(() => undefined)
      }
    }
    // Without one, resume from the lower of the two lists' positions: both reads reflect
    // everything up to it (a read at R returns items positioned ≤ R), so nothing falls between.
    stream.start(stored > 0 ? stored : Math.min(sessions.highestPosition, documents.highestPosition))
  }
  void begin()

  // Messages of other sessions are not on the user stream: keep previews and unread counts fresh.
  const refresh = () => {
    if (document.visibilityState === 'visible') sessions.refreshSoon()
  }
  const timer = window.setInterval(refresh, REFRESH_MS)
  document.addEventListener('visibilitychange', refresh)

  onScopeDispose(() => {
    window.clearInterval(timer)
    document.removeEventListener('visibilitychange', refresh)
    sessions.reset()
    documents.reset()
  })
}
