import {Chalk, type ChalkInstance} from 'chalk'

/**
 * Colour only for a terminal, never when NO_COLOR is set (https://no-color.org), so that piped output and
 * logs stay plain text. FORCE_COLOR still wins for people who want colour in a pager.
 */
export function colorEnabled(stream: NodeJS.WriteStream): boolean {
  const force = process.env.FORCE_COLOR
  if (force !== undefined && force !== '' && force !== '0') return true
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false
  if (force === '0') return false
  return stream.isTTY
}

export function styleFor(stream: NodeJS.WriteStream): ChalkInstance {
  return new Chalk({level: colorEnabled(stream) ? 1 : 0})
}
