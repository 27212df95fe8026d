import {spawn, type ChildProcess, type SpawnOptions} from 'node:child_process'
import {readdirSync, readFileSync} from 'node:fs'
import net from 'node:net'
import {setTimeout as sleep} from 'node:timers/promises'

/** Kept so that a failed start can say what the process printed. */
const outputTailBytes = 8192

export class ManagedProcess {
  private tail = ''
  private readonly exited: Promise<number | null>

  constructor(
    readonly label: string,
    private readonly child: ChildProcess,
  ) {
    const keep = (chunk: Buffer): void => {
      this.tail = (this.tail + chunk.toString('utf8')).slice(-outputTailBytes)
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve(signal === null ? code : null))
      child.once('error', (error) => {
        keep(Buffer.from(`${error.message}\n`))
        resolve(null)
      })
    })
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.label} did not start: ${this.output()}`)
    return this.child.pid
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  output(): string {
    return this.tail.trim()
  }

  waitForExit(): Promise<number | null> {
    return this.exited
  }

  /** SIGKILL, as a crash or an OOM kill would end it: nothing gets to say goodbye. */
  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL')
    await this.exited
  }

  /** SIGTERM, then SIGKILL if it has not exited within the grace time. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return
    this.child.kill('SIGTERM')
    const exitedInTime = await Promise.race([this.exited.then(() => true), sleep(graceMs, false)])
    if (!exitedInTime) await this.kill()
  }
}

export function startProcess(
  label: string,
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): ManagedProcess {
  return new ManagedProcess(label, spawn(command, args, {stdio: ['ignore', 'pipe', 'pipe'], ...options}))
}

/** Runs a command to completion; resolves with its exit code and output, never rejects. */
export async function runCommand(
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): Promise<{code: number | null; output: string}> {
  const process = startProcess(command, command, args, options)
  const code = await process.waitForExit()
  return {code, output: process.output()}
}

export async function waitUntil(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await sleep(intervalMs)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

/** Whether something accepts TCP connections on the loopback port now. */
export function acceptsConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** A port the kernel just handed out on loopback; the small race until it is bound again is accepted. */
export async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no port from the kernel')
  return address.port
}

interface ProcStat {
  pid: number
  parentPid: number
  cpuTicks: number
  rssPages: number
}

// Linux reports times in clock ticks (USER_HZ) and RSS in pages; both are 100 Hz and 4 KiB on every
// platform Node supports on Linux/x86-64 and arm64.
const ticksPerSecond = 100
const pageBytes = 4096

function readProcStat(pid: number): ProcStat | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name in parentheses may contain spaces; every field after it is positional.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const field = (index: number): number => Number(fields[index - 3])
  return {pid, parentPid: field(4), cpuTicks: field(14) + field(15), rssPages: field(24)}
}

/** The process and all its descendants: sshd forks per connection, and the figures must include them. */
function processTree(rootPid: number): ProcStat[] {
  const all = readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => readProcStat(Number(name)))
    .filter((stat) => stat !== undefined)
  const tree: ProcStat[] = []
  const pending = [rootPid]
  for (let pid = pending.pop(); pid !== undefined; pid = pending.pop()) {
    const stat = all.find((candidate) => candidate.pid === pid)
    if (stat === undefined) continue
    tree.push(stat)
    pending.push(...all.filter((candidate) => candidate.parentPid === pid).map((child) => child.pid))
  }
  return tree
}

export function treeRssBytes(rootPid: number): number {
  return processTree(rootPid).reduce((sum, stat) => sum + stat.rssPages * pageBytes, 0)
}

export function treeCpuSeconds(rootPid: number): number {
  return processTree(rootPid).reduce((sum, stat) => sum + stat.cpuTicks / ticksPerSecond, 0)
}
