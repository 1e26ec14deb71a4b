/**
 * The only way untrusted text becomes HTML in this client: markdown-it with raw HTML disabled,
 * then DOMPurify with an allow-list; links keep only http(s)/mailto targets and always get
 * rel="noopener noreferrer" and target="_blank". `v-html` may only ever receive this output.
 */
import MarkdownIt from 'markdown-it'
import DOMPurify from 'dompurify'

const md = new MarkdownIt({ html: false, linkify: true, breaks: true, typographer: false })

// markdown-it's own link validation also refuses javascript:/vbscript:/data: — keep only the safe ones.
const SAFE_HREF = /^(https?:|mailto:)/i
md.validateLink = (url: string) => SAFE_HREF.test(url.trim())

const ALLOWED_TAGS = [
  'a', 'p', 'br', 'hr', 'em', 'strong', 's', 'del', 'code', 'pre', 'blockquote',
  'ul', 'ol', 'li', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'mark',
]
const ALLOWED_ATTR = ['href', 'title', 'rel', 'target', 'start', 'align']

let hooked = false
function purifier(): typeof DOMPurify {
  if (!hooked) {
    DOMPurify.addHook('afterSanitizeAttributes', (node) => {
      if (node.tagName === 'A') {
        const href = node.getAttribute('href') ?? ''
        if (!SAFE_HREF.test(href.trim())) node.removeAttribute('href')
        node.setAttribute('rel', 'noopener noreferrer')
        node.setAttribute('target', '_blank')
      }
    })
    hooked = true
  }
  return DOMPurify
}

export function sanitizeHtml(html: string): string {
  return purifier().sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOW_DATA_ATTR: false,
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  })
}

// Rendering and sanitising costs ~1 ms a message: scrolling back and forth through a long
// conversation re-renders the same rows, so keep the most recent results.
const CACHE_LIMIT = 2_000
const cache = new Map<string, string>()

/** Markdown (or plain text) to sanitised HTML. */
export function renderMarkdown(source: string): string {
  const hit = cache.get(source)
  if (hit !== undefined) return hit
  const html = sanitizeHtml(md.render(source))
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!)
  cache.set(source, html)
  return html
}

/** Plain text to sanitised HTML that shows it verbatim (paragraphs kept, nothing interpreted). */
export function renderPlainText(source: string): string {
  const escaped = source.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  return sanitizeHtml(`<pre>${escaped}</pre>`)
}
