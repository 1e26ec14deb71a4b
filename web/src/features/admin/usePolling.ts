/**
 * Call `tick` now and then every `intervalMs` (or what the function says each time: the pace may change) until the component
 * unmounts or `stop()`. The next call is scheduled after the previous one settles, so slow answers
 * never pile up; a failed tick is reported through `error` and polling goes on.
 */
import { onBeforeUnmount, ref } from 'vue'

export function usePolling(tick: () => Promise<void>, intervalMs: number | (() => number)) {
  const error = ref<unknown>(null)
  let timer: ReturnType<typeof setTimeout> | null = null
  let running = false
  let stopped = false

  async function run(): Promise<void> {
    if (stopped || running) return
    running = true
    if (timer) clearTimeout(timer)
    timer = null
    try {
      await tick()
      error.value = null
    } catch (e) {
      error.value = e
    } finally {
      running = false
      if (!stopped) timer = setTimeout(() => void run(), typeof intervalMs === 'function' ? intervalMs() : intervalMs)
    }
  }

  function start(): void {
    stopped = false
    void run()
  }

  function stop(): void {
    stopped = true
    if (timer) clearTimeout(timer)
    timer = null
  }

  onBeforeUnmount(stop)
  return { error, start, stop, refresh: run }
}
