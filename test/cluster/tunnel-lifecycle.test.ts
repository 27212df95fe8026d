import assert from 'node:assert/strict'
import {writeFile} from 'node:fs/promises'
import http from 'node:http'
import type {Socket} from 'node:net'
import path from 'node:path'

import {ExitCode} from '../../src/errors.js'
import {startKsctl, until, type RunningKsctl} from '../helpers/ksctl-running.js'
import {tempDir} from '../helpers/temp-dir.js'
import {freePort} from '../testbed/http.js'
import {slowBody, startUpstream} from '../unit/tower/harness.js'

// The agent and proxy as processes, for what only a process shows: signals, exit codes, stderr. They need no
// API server (the member's destination is a local HTTP server reached as the kubesphere destination).

const token = 'cluster-test-lifecycle-token-0123456789'

/** A drain may take its grace period: these processes are not SIGKILLed 5 s after kill(). */
const start = (args: string[]): RunningKsctl => startKsctl(args, {drainsSlowly: true})

/** GET of /slow/MS through the proxy; resolves once the headers arrived, `body` with all of it or 'broken'. */
async function inFlight(port: number, ms: number): Promise<{body: Promise<string>}> {
  const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get(`http://127.0.0.1:${port}/slow/${ms}`, {agent: false}, resolve).on('error', reject)
  })
  assert.equal(response.statusCode, 200)
  const body = new Promise<string>((resolve) => {
    let text = ''
    response.setEncoding('utf8')
    response.on('data', (chunk: string) => (text += chunk))
    response.on('error', () => undefined)
    response.once('close', () => resolve(response.complete ? text : 'broken'))
  })
  return {body}
}

/** One plain GET without reuse: the status, or the error code when the connection failed. */
function probe(url: string): Promise<string> {
  return new Promise((resolve) => {
    http
      .get(url, {agent: false}, (response) => {
        response.resume()
        resolve(String(response.statusCode))
      })
      .on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
  })
}

describe('tower agent and proxy processes: --max-retry, SIGHUP, SIGTERM', function () {
  this.timeout(120_000)
  let dir: string
  let upstream: Awaited<ReturnType<typeof startUpstream>>
  let agentPort: number
  let kubespherePort: number
  let agent: RunningKsctl | undefined
  let proxy: RunningKsctl | undefined
  const all: RunningKsctl[] = []

  const agentArgs = (proxyPort: number, extra: string[]): string[] => [
    'tower',
    'agent',
    '--name',
    'member',
    '--token-file',
    path.join(dir, 'token'),
    '--proxy-server',
    `http://127.0.0.1:${proxyPort}`,
    // The proxy is plain too (--insecure-plain): both sides say so.
    '--insecure-plain',
    '--kubesphere-service',
    `127.0.0.1:${upstream.port}`,
    ...extra,
  ]

  /**
   * Sends SIGTERM to `stopping` while a request is in flight: `newRequest` judges what a request made during
   * the drain gets; the one in flight must finish whole, and the process exit 0 well within its grace period.
   */
  async function drainsOnSigterm(
    stopping: RunningKsctl,
    who: string,
    newRequest: (answer: string) => void,
  ): Promise<void> {
    const request = await inFlight(kubespherePort, 2000)
    const signalled = performance.now()
    stopping.process.kill('SIGTERM')
    await until(() => stopping.logged('stopping: draining open streams').length > 0, 'the drain')
    newRequest(await probe(`http://127.0.0.1:${kubespherePort}/x`))
    assert.equal(await request.body, slowBody(2000))
    const exit = await stopping.process
    const tookMs = performance.now() - signalled
    assert.equal(exit.exitCode, 0)
    assert.ok(tookMs < 15_000, `${who} took ${Math.round(tookMs)} ms to exit`)
  }

  function startProxy(): RunningKsctl {
    const running = start([
      'tower',
      'proxy',
      '--clusters',
      path.join(dir, 'clusters.yaml'),
      '--state-dir',
      path.join(dir, 'state'),
      '--listen',
      `127.0.0.1:${agentPort}`,
      '--front-end',
      '127.0.0.1:0',
      '--insecure-plain',
      '--grace-period',
      '20s',
    ])
    all.push(running)
    return running
  }

  before(async () => {
    dir = tempDir('ksctl-tunnel-lifecycle-')
    ;[agentPort, kubespherePort] = [await freePort(), await freePort()]
    await writeFile(
      path.join(dir, 'clusters.yaml'),
      `- {name: member, token: ${token}, kubespherePort: ${kubespherePort}}\n`,
    )
    await writeFile(path.join(dir, 'token'), token)
    upstream = await startUpstream()
  })

  after(async () => {
    for (const running of all) running.process.kill('SIGTERM')
    // Past the grace periods (20 s, 30 s) a process that has not exited is stuck: do not hang the run on it.
    const stuck = setTimeout(() => all.forEach((running) => running.process.kill('SIGKILL')), 40_000)
    await Promise.all(all.map((running) => running.process))
    clearTimeout(stuck)
    await upstream.close()
    assert.ok(!all.some((running) => running.output().includes(token)), 'a log line holds the token')
  })

  it('--max-retry 2 against a closed port: the first attempt and 2 retries fail, then it exits 1 saying so', async () => {
    const started = performance.now()
    const gaveUp = start(agentArgs(await freePort(), ['--max-retry', '2', '--max-retry-interval', '100ms']))
    all.push(gaveUp)
    const result = await gaveUp.process
    const tookMs = performance.now() - started
    assert.equal(result.exitCode, ExitCode.Failure)
    // With --log-format json the error that ends the process is a log line too.
    const [gaveUpLine] = gaveUp.logged(
      'gave up after 3 failed connection attempts in a row (the first and --max-retry 2 retries)',
    )
    assert.deepEqual([gaveUpLine?.level, gaveUpLine?.code], ['error', 'UNREACHABLE'], gaveUp.output())
    assert.equal(gaveUp.logged('cannot connect to the proxy').length, 3)
    assert.ok(tookMs < 15_000, `it took ${Math.round(tookMs)} ms to give up`)
  })

  it('SIGHUP ends a long wait: the agent connects as soon as it is told the proxy is back', async () => {
    // What answers the proxy address at first (a load balancer without a ready backend, say) asks for 120 s.
    const standIn = http.createServer((_request, response) => response.writeHead(404).end())
    standIn.on('upgrade', (_request, socket: Socket) =>
      socket.end('HTTP/1.1 503 Service Unavailable\r\nRetry-After: 120\r\nContent-Length: 0\r\n\r\n'),
    )
    await new Promise<void>((resolve) => standIn.listen(agentPort, '127.0.0.1', resolve))
    agent = start(agentArgs(agentPort, ['--max-retry-interval', '5m']))
    all.push(agent)
    const waiting = agent
    await until(() => waiting.logged('reconnecting to the proxy').length > 0, 'the agent to back off')
    assert.equal(waiting.logged('reconnecting to the proxy')[0]?.inMs, 120_000)
    standIn.closeAllConnections()
    await new Promise<void>((resolve) => standIn.close(() => resolve()))

    proxy = startProxy()
    const up = proxy
    await until(() => up.logged('tower proxy started').length > 0, 'the proxy')
    assert.equal(waiting.logged('connected to the proxy').length, 0)
    const signalled = performance.now()
    waiting.process.kill('SIGHUP')
    await until(() => waiting.logged('connected to the proxy').length > 0, 'the agent to connect')
    const tookMs = performance.now() - signalled
    assert.ok(tookMs < 10_000, `connected ${Math.round(tookMs)} ms after SIGHUP; the wait was 120 s`)
    assert.equal(waiting.logged('SIGHUP: reconnecting now').length, 1)
  })

  it('SIGTERM to the proxy: a request in flight finishes, new ones are refused, and the proxy exits 0', async () => {
    assert.ok(proxy !== undefined && agent !== undefined, 'runs after the SIGHUP test')
    const stopping = proxy
    await drainsOnSigterm(stopping, 'the proxy (grace period 20 s)', (answer) =>
      assert.ok(['ECONNREFUSED', '503'].includes(answer), 'a new request was served during the drain'),
    )
    proxy = undefined
  })

  it('SIGTERM to the agent: a request in flight finishes, and the agent exits 0', async () => {
    assert.ok(agent !== undefined, 'runs after the SIGHUP test')
    const stopping = agent
    const connections = stopping.logged('connected to the proxy').length
    proxy = startProxy()
    const up = proxy
    await until(() => up.logged('tower proxy started').length > 0, 'the proxy')
    stopping.process.kill('SIGHUP')
    await until(
      () => stopping.logged('connected to the proxy').length > connections,
      'the agent to reconnect',
    )
    await until(() => up.logged('agent connected').length > 0, 'the proxy to see the agent')

    await drainsOnSigterm(stopping, 'the agent (grace period 30 s)', (answer) => assert.equal(answer, '502'))
    agent = undefined
  })
})
