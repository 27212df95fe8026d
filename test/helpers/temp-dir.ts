import {mkdtempSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

/**
 * Where a test run keeps its temporary files: a directory of its own in the OS temp dir, which
 * `test/helpers/setup.ts` points TMPDIR at, so that `os.tmpdir()` in the tests, in the code under test and
 * in every process they start lands there, and nothing another run does on the machine is counted.
 */
export function startRunTempDir(): string {
  const runDir = mkdtempSync(path.join(tmpdir(), 'ksctl-test-run-'))
  process.env.TMPDIR = runDir
  return runDir
}

// Shared through globalThis: a module reached through two module graphs (see docs/notes.md, tsx under
// mocha) must not end up with two lists, one of which nobody empties.
const registry = Symbol.for('ksctl.test.tempDirs')
interface Registry {
  inTest: boolean
  /** Made during a test (its beforeEach and afterEach hooks included): removed after it. */
  test: string[]
  /** Made outside a test (a before or after hook, a helper at import): removed at the end of the run. */
  run: string[]
}
const state = ((globalThis as Record<symbol, Registry | undefined>)[registry] ??= {
  inTest: false,
  test: [],
  run: [],
})

/**
 * A new empty directory, removed with everything in it after the current test, or at the end of the run
 * when made outside a test. Tests take their temporary directories from here and never remove them.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  ;(state.inTest ? state.test : state.run).push(dir)
  return dir
}

function removeAll(dirs: string[]): void {
  for (const dir of dirs.splice(0)) rmSync(dir, {recursive: true, force: true, maxRetries: 3})
}

export function beginTest(): void {
  state.inTest = true
}

export function endTest(): void {
  state.inTest = false
  removeAll(state.test)
}

/** Caches of the tools the tests start (tsx compiles TypeScript for child processes into TMPDIR/tsx-UID). */
const toolCaches = /^tsx-/

/**
 * Removes what the run made through {@link tempDir}, then reports anything else left in the run's directory:
 * entries a test or the code under test wrote and did not remove.
 */
export function leftoversAfterRun(runDir: string): string[] {
  removeAll(state.test)
  removeAll(state.run)
  return readdirSync(runDir).filter((name) => !toolCaches.test(name))
}
