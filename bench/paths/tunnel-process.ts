import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {answers, unboundedAgent} from '../client.js'
import {waitUntil, type ManagedProcess} from '../processes.js'
import type {Endpoint} from './path.js'

export function temporaryDirectory(prefix: string): Promise<string> {
  return mkdtemp(path.join(tmpdir(), `ksctl-bench-${prefix}-`))
}

export function removeDirectory(directory: string): Promise<void> {
  return rm(directory, {recursive: true, force: true})
}

/** Waits until a request through the endpoint succeeds, naming the processes' output when it does not. */
export async function waitForEndpoint(
  endpoint: Endpoint,
  processes: ManagedProcess[],
  timeoutMs = 30_000,
): Promise<void> {
  const agent = unboundedAgent(endpoint)
  try {
    await waitUntil(`${endpoint.baseUrl} to answer`, timeoutMs, async () => {
      const exited = processes.find((process) => !process.running)
      if (exited !== undefined) throw new Error(`${exited.label} exited: ${exited.output()}`)
      return answers(endpoint, agent)
    })
  } catch (error) {
    const outputs = processes.map((process) => `${process.label}: ${process.output() || '(no output)'}`)
    throw new Error(`${(error as Error).message}\n${outputs.join('\n')}`, {cause: error})
  } finally {
    agent.destroy()
  }
}
