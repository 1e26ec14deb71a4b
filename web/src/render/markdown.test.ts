import { describe, expect, it } from 'vitest'
import { renderMarkdown, renderPlainText, sanitizeHtml } from './markdown'
import { snippetParts } from './snippet'

function dom(html: string): HTMLElement {
  const div = document.createElement('div')
  div.innerHTML = html
  return div
}

describe('renderMarkdown (untrusted message text)', () => {
  it('renders Markdown', () => {
    const el = dom(renderMarkdown('**We ship** on _Friday_.\n\n> quoted'))
    expect(el.querySelector('strong')?.textContent).toBe('We ship')
    expect(el.querySelector('em')?.textContent).toBe('Friday')
    expect(el.querySelector('blockquote')).not.toBeNull()
  })

  it('shows an <img onerror> as text and creates no element that could run it', () => {
    const el = dom(renderMarkdown('<img src=x onerror="alert(1)">'))
    expect(el.querySelector('img')).toBeNull()
    expect(el.querySelector('[onerror]')).toBeNull()
    expect(el.textContent).toContain('<img src=x onerror="alert(1)">')
  })

  it('shows a <script> as text', () => {
    const html = renderMarkdown('<script>alert(1)</script>')
    const el = dom(html)
    expect(el.querySelector('script')).toBeNull()
    expect(el.textContent).toContain('<script>alert(1)</script>')
  })

  it('makes no link of javascript:, data: or vbscript: targets', () => {
    for (const src of ['[click](javascript:alert(1))', '[x](JaVaScRiPt:alert(1))', '[d](data:text/html,<script>alert(1)</script>)', '<javascript:alert(1)>', '[v](vbscript:msgbox)']) {
      const el = dom(renderMarkdown(src))
      for (const a of el.querySelectorAll('a')) {
        expect(a.getAttribute('href') ?? '').not.toMatch(/^(javascript|data|vbscript):/i)
      }
    }
  })

  it('keeps http(s) and mailto links, opened safely', () => {
    const el = dom(renderMarkdown('[site](https://example.org) and [mail](mailto:ann@example.org) and http://plain.example'))
    const links = [...el.querySelectorAll('a')]
    expect(links.map((a) => a.getAttribute('href'))).toEqual(['https://example.org', 'mailto:ann@example.org', 'http://plain.example'])
    for (const a of links) {
      expect(a.getAttribute('rel')).toBe('noopener noreferrer')
      expect(a.getAttribute('target')).toBe('_blank')
    }
  })
})

describe('sanitizeHtml (converted HTML documents)', () => {
  it('removes scripts, event handlers, iframes, styles and unsafe links', () => {
    const el = dom(
      sanitizeHtml(
        '<p onclick="alert(1)" style="color:red">ok</p><script>alert(1)</script><iframe src="https://evil"></iframe>' +
          '<a href="javascript:alert(1)">bad</a><a href="https://good.example">good</a><img src=x onerror=alert(1)><svg onload=alert(1)></svg>' +
          '<form action="https://evil"><input name=x></form><style>body{}</style>',
      ),
    )
    expect(el.querySelector('script, iframe, img, svg, form, input, style')).toBeNull()
    expect(el.querySelector('[onclick], [style], [onerror], [onload]')).toBeNull()
    const links = [...el.querySelectorAll('a')]
    expect(links.find((a) => a.textContent === 'bad')?.hasAttribute('href')).toBe(false)
    expect(links.find((a) => a.textContent === 'good')?.getAttribute('rel')).toBe('noopener noreferrer')
    expect(el.querySelector('p')?.textContent).toBe('ok')
  })
})

describe('renderPlainText', () => {
  it('shows text verbatim, markup included, as text', () => {
    const el = dom(renderPlainText('a < b & <b>not bold</b>'))
    expect(el.querySelector('b')).toBeNull()
    expect(el.textContent).toBe('a < b & <b>not bold</b>')
  })
})

describe('snippetParts (search highlights)', () => {
  it('splits [bracketed] hits from the text around them', () => {
    expect(snippetParts('We [ship] on [Friday].')).toEqual([
      { text: 'We ', hit: false },
      { text: 'ship', hit: true },
      { text: ' on ', hit: false },
      { text: 'Friday', hit: true },
      { text: '.', hit: false },
    ])
  })

  it('keeps markup in a snippet as plain text parts', () => {
    const parts = snippetParts('<img src=x onerror=alert(1)> [hit]')
    expect(parts[0]).toEqual({ text: '<img src=x onerror=alert(1)> ', hit: false })
    expect(parts[1]).toEqual({ text: 'hit', hit: true })
  })
})
