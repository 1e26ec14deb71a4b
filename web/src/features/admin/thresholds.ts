/** When a dashboard figure needs attention. The level is shown in colour and said in words. */

export type Level = 'ok' | 'warning' | 'critical'

export type Watched = 'p99_ms' | 'error_rate' | 'cpu_percent' | 'memory_percent'

/** Over the limit (strictly) means the level; `error_rate` is a fraction 0..1. */
export const THRESHOLDS: Record<Watched, { above: number; level: Exclude<Level, 'ok'> }> = {
  p99_ms: { above: 500, level: 'warning' },
  error_rate: { above: 0.01, level: 'critical' },
  cpu_percent: { above: 80, level: 'warning' },
  memory_percent: { above: 90, level: 'critical' },
}

export function levelOf(metric: Watched, value: number | null | undefined): Level {
  if (value === null || value === undefined || !Number.isFinite(value)) return 'ok'
  const t = THRESHOLDS[metric]
  return value > t.above ? t.level : 'ok'
}
