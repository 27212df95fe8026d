import {accessSync, closeSync, constants, fchmodSync, openSync, statSync, writeFileSync} from 'node:fs'
import {dirname} from 'node:path'

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
    throw cannotWrite(path, flag, reason)
  } finally {
    if (descriptor !== undefined) closeSync(descriptor)
  }
}

/**
 * Checks that {@link writePrivateFile} can write `path`, for commands that change clusters before they
 * write the file: run first, it turns a bad path into a usage error while nothing has changed yet. The
 * path must be a regular file this user owns and may write, or a new name in a writable directory.
 */
export function checkPrivateFilePath(path: string, flag: string): void {
  const existing = statOrUndefined(path)
  if (existing === undefined) {
    const directory = dirname(path)
    const parent = statOrUndefined(directory)
    if (parent === undefined) throw cannotWrite(path, flag, `directory ${directory} does not exist`)
    if (!parent.isDirectory()) throw cannotWrite(path, flag, `${directory} is not a directory`)
    if (!canAccess(directory, constants.W_OK | constants.X_OK)) {
      throw cannotWrite(path, flag, `directory ${directory} is not writable`)
    }
    return
  }
  if (existing.isDirectory()) throw cannotWrite(path, flag, 'it is a directory')
  if (!existing.isFile()) throw cannotWrite(path, flag, 'it is not a regular file')
  if (!canAccess(path, constants.W_OK)) throw cannotWrite(path, flag, 'it is not writable')
  const user = process.getuid?.()
  // Only the owner (or root) can make the file readable by its owner alone, as it must be.
  if (user !== undefined && user !== 0 && existing.uid !== user) {
    throw cannotWrite(path, flag, 'it belongs to another user, so it cannot be made private to you')
  }
}

function cannotWrite(path: string, flag: string, reason: string) {
  return invalidInput(`cannot write ${flag} ${path}: ${reason}`, [
    `choose a file in a directory you can write to, e.g. ${flag} ./agent.yaml`,
  ])
}

function statOrUndefined(path: string) {
  try {
    return statSync(path)
  } catch {
    return undefined
  }
}

function canAccess(path: string, mode: number): boolean {
  try {
    accessSync(path, mode)
    return true
  } catch {
    return false
  }
}
