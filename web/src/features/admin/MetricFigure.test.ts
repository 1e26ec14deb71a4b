import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import MetricFigure from './MetricFigure.vue'
import { levelOf } from './thresholds'

describe('MetricFigure', () => {
  it('says a crossed threshold in words, not only in colour', () => {
    const warning = mount(MetricFigure, { props: { label: 'Response time p99', value: '812 ms', level: levelOf('p99_ms', 812) } })
    expect(warning.classes()).toContain('level-warning')
    expect(warning.text()).toContain('warning')
    const critical = mount(MetricFigure, { props: { label: 'Error rate', value: '2.00 %', level: levelOf('error_rate', 0.02) } })
    expect(critical.text()).toContain('critical')
    const ok = mount(MetricFigure, { props: { label: 'CPU', value: '12 %', level: levelOf('cpu_percent', 12) } })
    expect(ok.text()).not.toMatch(/warning|critical|normal/)
  })
})
