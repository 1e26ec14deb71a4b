/**
 * The backend cuts converted text into numbered passages (projections/document_search.py
 * `passages`): paragraphs gathered into passages of about 1,000 characters, a longer paragraph
 * cut at a space. The same cut here makes "passage N" of a citation or search hit point at the
 * same text in the preview.
 */
export const PASSAGE_CHARS = 1000
const PARAGRAPH_BREAK = /\n\s*\n/

export function passages(text: string, size: number = PASSAGE_CHARS): string[] {
  const result: string[] = []
  let current = ''
  for (const raw of text.split(PARAGRAPH_BREAK)) {
    let paragraph = raw.trim()
    if (paragraph.length > size && current) {
      result.push(current)
      current = ''
    }
    while (paragraph.length > size) {
      let cut = paragraph.lastIndexOf(' ', size - 1)
      cut = cut > Math.floor(size / 2) ? cut : size
      result.push(paragraph.slice(0, cut).trim())
      paragraph = paragraph.slice(cut).trim()
    }
    if (!paragraph) continue
    if (current && current.length + paragraph.length + 2 > size) {
      result.push(current)
      current = paragraph
    } else {
      current = current ? `${current}\n\n${paragraph}` : paragraph
    }
  }
  if (current) result.push(current)
  return result
}
