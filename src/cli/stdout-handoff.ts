import {closeSync, openSync} from 'node:fs'

/**
 * Makes what was written to stdout complete for its reader before a long wait: flushed and, when stdout is a
 * pipe or a file, closed, so that `ksctl member join … --wait | kubectl apply -f -` sees the end of the
 * manifest and applies it while ksctl waits (kubectl reads to the end before it applies anything). Node never
 * closes fd 1 itself (`process.stdout.end()` leaves it open), so it is closed here and /dev/null takes its
 * place: open() returns the lowest free descriptor, 1, and a stray later write goes nowhere instead of failing.
 * Returns whether stdout was closed (then results go to stderr).
 */
export async function handOffStdout(): Promise<boolean> {
  // A stdout whose writes this process captures (the in-process command tests replace `write`) is not the
  // command's to close.
  if (Object.hasOwn(process.stdout, 'write')) return false
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()))
  if (process.stdout.isTTY) return false
  closeSync(1)
  openSync('/dev/null', 'w')
  return true
}
