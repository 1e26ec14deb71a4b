/**
 * Search snippets mark hits with [brackets]. They are split into text parts so a template can
 * render the hits in <mark> with text interpolation — the snippet is never parsed as HTML.
 */
export interface SnippetPart {
  text: string
  hit: boolean
}

export function snippetParts(snippet: string): SnippetPart[] {
  const parts: SnippetPart[] = []
  const pattern = /\[([^\[\]]+)\]/g
  let last = 0
  for (let match = pattern.exec(snippet); match; match = pattern.exec(snippet)) {
    if (match.index > last) parts.push({ text: snippet.slice(last, match.index), hit: false })
    parts.push({ text: match[1]!, hit: true })
    last = match.index + match[0].length
  }
  if (last < snippet.length) parts.push({ text: snippet.slice(last), hit: false })
  return parts
}
