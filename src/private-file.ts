import {closeSync, fchmodSync, openSync, writeFileSync} from 'node:fs'

import {invalidInput} from './errors.js'

/**
 * Writes text only its owner may read (mode 0600), for files that hold a secret. An existing file keeps
 * its mode when reopened, so the mode is set on the open descriptor before any of the text is written.
 */
export function writePrivateFile(path: string, text: string, flag: string): void {
  let descriptor: number | undefined
  try {
    descriptor = openSync(path, 'w', 0o600)
    fchmodSync(descriptor, 0o600)
    writeFileSync(descriptor, text)
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    throw invalidInput(`cannot write ${flag} ${path}: ${reason}`, [
      `choose a file in a directory you can write to, e.g. ${flag} ./agent.yaml`,
    ])
  } finally {
    if (descriptor !== undefined) closeSync(descriptor)
  }
}
