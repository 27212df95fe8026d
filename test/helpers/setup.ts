// Loaded first by both test tiers (the mocharc files' `require`).
import {ChildProcess} from 'node:child_process'
import {rmSync} from 'node:fs'
import {Server, Socket} from 'node:net'
import {setTimeout as sleep} from 'node:timers/promises'

import {beginTest, endTest, leftoversAfterRun, startRunTempDir} from './temp-dir.js'

// Output assertions must not depend on whether the test run has a terminal.
process.env.NO_COLOR = '1'
process.env.FORCE_COLOR = '0'

const runTempDir = startRunTempDir()

/**
 * Warnings the process emitted since the last test ended. Node prints them and goes on, so without this a
 * listener added per operation (MaxListenersExceededWarning) or a deprecated call would pass every test.
 */
const warnings: Error[] = []
process.on('warning', (warning) => warnings.push(warning))

export const mochaHooks = {
  beforeEach: beginTest,
  afterEach(): void {
    endTest()
    const emitted = warnings.splice(0)
    if (emitted.length > 0) {
      throw new Error(
        `the process warned during this test: ${emitted.map((warning) => `${warning.name}: ${warning.message}`).join('; ')}; ` +
          'a warning is a defect in the code under test (a MaxListenersExceededWarning usually means a listener added per operation where one per object would do)',
      )
    }
  },
}

/**
 * After every test and root hook (the test bed's stop included): the run must leave nothing behind, in the
 * temp dir or in the event loop. Either failure fails the run.
 */
export async function mochaGlobalTeardown(): Promise<void> {
  const problems: string[] = []
  // KSCTL_TESTBED_KEEP=1 keeps the test bed's directory on purpose, and with it the run's directory.
  const kept = process.env.KSCTL_TESTBED_KEEP === '1' ? /^ksctl-testbed-/ : undefined
  const leftovers = leftoversAfterRun(runTempDir).filter((name) => !kept?.test(name))
  if (leftovers.length > 0) {
    problems.push(
      `the tests left ${leftovers.length === 1 ? 'this' : 'these'} in the temp dir ${runTempDir}: ${leftovers.join(', ')}; ` +
        'take temporary directories from tempDir() in test/helpers/temp-dir.ts, and remove what the code under test writes',
    )
  } else if (kept === undefined) {
    rmSync(runTempDir, {recursive: true, force: true, maxRetries: 3})
  }
  const alive = await lingeringResources()
  if (alive.length > 0) {
    problems.push(
      `the process would stay alive after the last test, held by: ${alive.join('; ')}; ` +
        "close what the test opened (a server's open connections, a client's kept sockets, a timer)",
    )
  }
  if (problems.length > 0) throw new Error(problems.join('\n'))
}

/** How long sockets closed by the last test may take to go. */
const settleMs = 5000

/**
 * What keeps Node's event loop alive once mocha is done, other than the process's own stdio; empty when
 * nothing does. Waits up to {@link settleMs} for closes already under way.
 */
async function lingeringResources(): Promise<string[]> {
  const deadline = Date.now() + settleMs
  for (;;) {
    const alive = aliveNow()
    if (alive.length === 0 || Date.now() >= deadline) return alive
    await sleep(50)
  }
}

function aliveNow(): string[] {
  const stdio = new Set<unknown>([process.stdin, process.stdout, process.stderr])
  // Node lists only what is ref'd: what keeps the process from exiting.
  const handles = (process as unknown as {_getActiveHandles(): object[]})
    ._getActiveHandles()
    .filter((handle) => !stdio.has(handle))
  const timers = process.getActiveResourcesInfo().filter((name) => name === 'Timeout' || name === 'Immediate')
  return [...handles.map(describeHandle), ...timers.map((name) => `a ${name}`)]
}

/** Sockets, servers and children by address or command, which is how the test that left one can be found. */
function describeHandle(handle: object): string {
  if (handle instanceof Server) return `a server listening on ${JSON.stringify(handle.address())}`
  if (handle instanceof Socket) {
    return `a socket ${String(handle.localAddress)}:${String(handle.localPort)} ↔ ${String(handle.remoteAddress)}:${String(handle.remotePort)}`
  }
  if (handle instanceof ChildProcess)
    return `child process ${String(handle.pid)} (${handle.spawnargs.join(' ')})`
  return `a ${handle.constructor.name}`
}
