import assert from 'node:assert/strict'
import {writeFile} from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import path from 'node:path'

import {KsctlError} from '../../../src/errors.js'
import {normalizeProxyUrl, TowerAgent, type AgentOptions} from '../../../src/tower/agent/agent.js'
import {buildDestinations, serviceAccountCredentials} from '../../../src/tower/agent/agent-dial.js'
import {OpsServer} from '../../../src/tower/shared/health.js'
import {TowerMetrics} from '../../../src/tower/shared/metrics.js'
import {loopbackPki} from '../../helpers/test-pki.js'
import {freePort} from '../../testbed/http.js'
import {
  CapturedLog,
  clientCredentials,
  clusterToken,
  frontEndRequest,
  slowBody,
  startProxy,
  startUpstream,
  tempDir,
  until,
  type ProxyHarness,
} from './harness.js'

/** The JSON log lines with message `msg`, parsed. */
function records(log: CapturedLog, msg: string): Record<string, unknown>[] {
  return log.lines
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((record) => record.msg === msg)
}

/** [inMs, attempt] of every 'reconnecting to the proxy' line so far. */
function waits(log: CapturedLog): [unknown, unknown][] {
  return records(log, 'reconnecting to the proxy').map((record) => [record.inMs, record.attempt])
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function status(url: string): Promise<number> {
  return (await fetch(url)).status
}

/** A TCP listener on 127.0.0.1 that counts connections and hands each to `onConnection` (default: hold it). */
async function tcpServer(onConnection: (socket: net.Socket) => void = () => undefined) {
  const sockets = new Set<net.Socket>()
  const at: number[] = []
  const server = net.createServer((socket) => {
    at.push(performance.now())
    sockets.add(socket)
    socket.on('error', () => undefined)
    socket.once('close', () => sockets.delete(socket))
    onConnection(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    /** performance.now() of each accepted connection. */
    at,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** An HTTP server that answers every agent upgrade with `status` and `Retry-After: retryAfter`. */
async function refusingProxy(statusCode: number, retryAfter: string) {
  const at: number[] = []
  const server = http.createServer((_request, response) => response.writeHead(404).end())
  server.on('upgrade', (_request, socket: net.Socket) => {
    at.push(performance.now())
    socket.end(
      `HTTP/1.1 ${statusCode} ${http.STATUS_CODES[statusCode]}\r\nRetry-After: ${retryAfter}\r\n` +
        'Content-Length: 0\r\nConnection: close\r\n\r\n',
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    at,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

describe('tower agent and proxy lifecycle, in process', function () {
  this.timeout(30_000)
  let log: CapturedLog
  let agents: TowerAgent[]
  let cleanups: (() => Promise<void>)[]

  beforeEach(() => {
    log = new CapturedLog()
    agents = []
    cleanups = []
  })

  afterEach(async () => {
    await Promise.all(agents.map((agent) => agent.stop()))
    for (const cleanup of cleanups.reverse()) await cleanup()
    assert.ok(!log.text.includes(clusterToken), 'a log line holds the tunnel token')
  })

  /**
   * An agent with a deterministic backoff (random 0: each wait is exactly half the current base), not started.
   * Its kubernetes destination is unreachable unless `options.destinations` says otherwise.
   */
  function newAgent(port: number, options: Partial<AgentOptions> = {}): TowerAgent {
    const agent = new TowerAgent({
      name: 'member',
      token: () => Promise.resolve(clusterToken),
      proxyUrl: normalizeProxyUrl(`http://127.0.0.1:${port}`),
      insecurePlain: true,
      keepaliveMs: 1000,
      maxRetry: 0,
      maxRetryIntervalMs: 300,
      initialRetryMs: 50,
      destinations: buildDestinations({
        cluster: 'member',
        log: log.logger(),
        kubernetes: () => Promise.reject(new Error('no kubernetes in this test')),
        kubesphere: undefined,
        allowed: new Map(),
      }),
      log: log.logger(),
      metrics: new TowerMetrics(),
      goAwayGraceMs: 2000,
      random: () => 0,
      ...options,
    })
    agents.push(agent)
    return agent
  }

  async function proxy(options: {listen?: string} = {}): Promise<ProxyHarness> {
    const harness = await startProxy(log, undefined, options)
    cleanups.push(() => harness.proxy.stop())
    return harness
  }

  describe('SIGHUP (retryNow)', () => {
    it('ends a long backoff wait: the agent connects at once when the proxy is back', async () => {
      const port = await freePort()
      const agent = newAgent(port, {initialRetryMs: 60_000, maxRetryIntervalMs: 120_000})
      void agent.start()
      await until(() => waits(log).length === 1)
      assert.deepEqual(waits(log), [[30_000, 1]])
      const harness = await proxy({listen: `127.0.0.1:${port}`})
      await sleep(300)
      assert.equal(agent.ready, false, 'the agent is still waiting out its backoff')
      const signalled = performance.now()
      agent.retryNow()
      await until(() => agent.ready && harness.proxy.pool.count('member') === 1, 10_000)
      const tookMs = performance.now() - signalled
      assert.ok(tookMs < 2000, `connected ${Math.round(tookMs)} ms after SIGHUP; the wait was 30 s`)
      assert.equal(records(log, 'connected to the proxy').length, 1)
    })

    it('leaves a live session alone', async () => {
      const harness = await proxy()
      const agent = newAgent(harness.proxy.agentPort)
      void agent.start()
      await until(() => agent.ready && harness.proxy.pool.count('member') === 1)
      agent.retryNow()
      await sleep(300)
      assert.ok(agent.ready)
      assert.equal(records(log, 'connected to the proxy').length, 1)
      assert.equal(records(log, 'session with the proxy ended').length, 0)
    })

    it('during a connection attempt: the attempt goes on, and if it fails the next one starts without a wait', async () => {
      // Accepts TCP and never answers the upgrade: each attempt lasts the handshake timeout.
      const silent = await tcpServer()
      cleanups.push(() => silent.close())
      const agent = newAgent(silent.port, {
        handshakeTimeoutMs: 1000,
        initialRetryMs: 60_000,
        maxRetryIntervalMs: 120_000,
      })
      void agent.start()
      await until(() => silent.at.length === 1)
      agent.retryNow()
      await until(() => silent.at.length === 2, 10_000)
      const [first = 0, second = 0] = silent.at
      // Not cut short: SIGHUP asks for an attempt now, and one is under way (bounded by the handshake timeout).
      assert.ok(second - first >= 900, `the attempt in flight was aborted after ${second - first} ms`)
      // The SIGHUP is used up: the attempt after the second failure waits its backoff again.
      await until(() => waits(log).length === 2)
      assert.deepEqual(waits(log), [
        [0, 1],
        [42_000, 2],
      ])
      await sleep(300)
      assert.equal(silent.at.length, 2)
    })
  })

  it('stop() during a backoff wait returns at once, and start() resolves', async () => {
    const agent = newAgent(await freePort(), {initialRetryMs: 60_000, maxRetryIntervalMs: 120_000})
    const running = agent.start()
    await until(() => waits(log).length === 1)
    const stopping = performance.now()
    await agent.stop()
    await running
    const tookMs = performance.now() - stopping
    assert.ok(tookMs < 1000, `stop() took ${Math.round(tookMs)} ms`)
  })

  it('backoff grows after short sessions and starts again from the initial wait after a good connection', async () => {
    const harness = await proxy()
    const agent = newAgent(harness.proxy.agentPort, {
      initialRetryMs: 200,
      maxRetryIntervalMs: 10_000,
      goodConnectionMs: 1000,
    })
    void agent.start()
    const sessionThatLasts = async (ms: number): Promise<void> => {
      await until(() => agent.ready && harness.proxy.pool.count('member') === 1)
      const before = waits(log).length
      await sleep(ms)
      harness.proxy.pool.closeSessionsExcept('member', new Set())
      await until(() => waits(log).length === before + 1)
    }
    for (const ms of [0, 0, 0, 1300, 0]) await sessionThatLasts(ms)
    // Waits are half of 200 ms × 1.4^n with random() = 0.
    assert.deepEqual(waits(log), [
      [100, 1],
      [140, 2],
      [196, 3],
      [100, 1],
      [140, 2],
    ])
  })

  describe('--max-retry', () => {
    it('N: the first attempt and N retries fail, then start() rejects with UNREACHABLE', async () => {
      // Accepts and hangs up at once: every attempt fails, and each is counted here.
      const hangingUp = await tcpServer((socket) => socket.destroy())
      cleanups.push(() => hangingUp.close())
      const agent = newAgent(hangingUp.port, {maxRetry: 2, initialRetryMs: 20, maxRetryIntervalMs: 50})
      await assert.rejects(agent.start(), (error: unknown) => {
        assert.ok(error instanceof KsctlError)
        assert.equal(error.code, 'UNREACHABLE')
        assert.equal(error.exitCode, 1)
        assert.match(
          error.message,
          /^gave up after 3 failed connection attempts in a row \(the first and --max-retry 2 retries\)$/,
        )
        return true
      })
      assert.equal(hangingUp.at.length, 3)
      assert.equal(records(log, 'cannot connect to the proxy').length, 3)
      assert.equal(waits(log).length, 2)
    })

    it('counts failures in a row: a session that opened, however short, starts the count again', async () => {
      const harness = await proxy()
      const agent = newAgent(harness.proxy.agentPort, {
        maxRetry: 1,
        initialRetryMs: 20,
        maxRetryIntervalMs: 50,
      })
      let settled = false
      const running = agent.start().finally(() => (settled = true))
      running.catch(() => undefined)
      for (let i = 0; i < 3; i++) {
        await until(() => agent.ready && harness.proxy.pool.count('member') === 1)
        harness.proxy.pool.closeSessionsExcept('member', new Set())
        await until(() => !agent.ready)
      }
      await until(() => agent.ready)
      assert.equal(settled, false, 'the agent gave up although each attempt connected')
      // The proxy goes away for good: now two failures in a row (the first attempt and one retry) end it.
      await harness.proxy.stop()
      await assert.rejects(
        running,
        /gave up after 2 failed connection attempts in a row \(the first and --max-retry 1 retries\)/,
      )
    })
  })

  describe('Retry-After', () => {
    for (const statusCode of [503, 429]) {
      it(`on ${statusCode}: the next attempt waits at least Retry-After, not the shorter backoff`, async () => {
        const refusing = await refusingProxy(statusCode, '1')
        cleanups.push(() => refusing.close())
        const agent = newAgent(refusing.port, {initialRetryMs: 50, maxRetryIntervalMs: 10_000})
        void agent.start()
        await until(() => refusing.at.length === 2)
        const [first = 0, second = 0] = refusing.at
        // The backoff alone would wait 25 ms.
        assert.ok(second - first >= 950, `the second attempt came ${Math.round(second - first)} ms later`)
        assert.deepEqual(waits(log)[0], [1000, 1])
        assert.equal(records(log, 'the proxy refused the connection')[0]?.status, statusCode)
      })
    }

    it('is obeyed up to --max-retry-interval only', async () => {
      const refusing = await refusingProxy(503, '3600')
      cleanups.push(() => refusing.close())
      const agent = newAgent(refusing.port, {initialRetryMs: 50, maxRetryIntervalMs: 400})
      void agent.start()
      await until(() => refusing.at.length === 2, 5000)
      assert.deepEqual(waits(log)[0], [400, 1])
    })
  })

  it('agent /readyz: 503 before a session, 200 while connected, 503 after the proxy left; /healthz 200 throughout', async () => {
    const port = await freePort()
    const metrics = new TowerMetrics()
    const agent = newAgent(port, {metrics, initialRetryMs: 60_000, maxRetryIntervalMs: 120_000})
    // As commands/tower/agent.ts wires it.
    const ops = await OpsServer.start({address: '127.0.0.1:0', metrics, ready: () => agent.ready})
    cleanups.push(() => ops.close())
    const url = (path: string): string => `http://127.0.0.1:${ops.port}${path}`
    void agent.start()
    await until(() => waits(log).length === 1)
    assert.equal(await status(url('/readyz')), 503)
    assert.equal(await status(url('/healthz')), 200)

    const harness = await proxy({listen: `127.0.0.1:${port}`})
    agent.retryNow()
    await until(() => agent.ready)
    assert.equal(await status(url('/readyz')), 200)
    assert.equal(await status(url('/healthz')), 200)
    assert.match(await (await fetch(url('/metrics'))).text(), /^ksctl_tower_agent_connected 1$/m)
    assert.equal(await status(`http://127.0.0.1:${harness.proxy.metricsPort}/readyz`), 200)

    await harness.proxy.stop()
    await until(() => !agent.ready)
    assert.equal(await status(url('/readyz')), 503)
    assert.equal(await status(url('/healthz')), 200)
    assert.match(await (await fetch(url('/metrics'))).text(), /^ksctl_tower_agent_connected 0$/m)
  })

  describe('graceful stop with a stream in flight', () => {
    const saToken = 'member-service-account-token-lifecycle'
    let harness: ProxyHarness
    let agent: TowerAgent
    let credentials: Awaited<ReturnType<typeof clientCredentials>>

    beforeEach(async () => {
      harness = await proxy()
      const pki = await loopbackPki('tower-member')
      const upstream = await startUpstream(pki.server)
      cleanups.push(() => upstream.close())
      const saDir = await tempDir()
      await writeFile(path.join(saDir, 'token'), saToken)
      await writeFile(path.join(saDir, 'ca.crt'), pki.ca.certPem)
      agent = newAgent(harness.proxy.agentPort, {
        destinations: buildDestinations({
          cluster: 'member',
          log: log.logger(),
          kubernetes: serviceAccountCredentials(`127.0.0.1:${upstream.port}`, saDir),
          kubesphere: undefined,
          allowed: new Map(),
        }),
      })
      void agent.start()
      await until(() => agent.ready && harness.proxy.pool.count('member') === 1)
      credentials = await clientCredentials(harness.ca)
    })

    afterEach(() => assert.ok(!log.text.includes(saToken)))

    const url = (suffix: string): string =>
      `https://127.0.0.1:${harness.proxy.frontEndPort}/clusters/member${suffix}`

    /**
     * Starts a GET of /slow/MS and resolves once its headers arrived (the stream is in flight); `outcome`
     * settles with the whole body, or 'broken' if the response was cut.
     */
    async function inFlight(ms: number): Promise<{outcome: Promise<string>; endedAt: () => number}> {
      let endedAt = 0
      const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
        https.get(url(`/slow/${ms}`), {agent: false, ...credentials}, resolve).on('error', reject)
      })
      assert.equal(response.statusCode, 200)
      const outcome = new Promise<string>((resolve) => {
        let body = ''
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => (body += chunk))
        response.on('error', () => undefined)
        response.once('close', () => {
          endedAt = performance.now()
          resolve(response.complete ? body : 'broken')
        })
      })
      return {outcome, endedAt: () => endedAt}
    }

    it('proxy.stop() (SIGTERM): new requests refused, /readyz 503, the in-flight one finishes, one past the grace period is cut, stop() resolves', async () => {
      const finishing = await inFlight(1000)
      const tooLong = await inFlight(60_000)
      const stopping = performance.now()
      let stopped = 0
      const stop = harness.proxy.stop().then(() => (stopped = performance.now()))

      const refused = await frontEndRequest(url('/api'), credentials).then(
        (response) => String(response.status),
        (error: unknown) => (error as NodeJS.ErrnoException).code ?? String(error),
      )
      assert.ok(['ECONNREFUSED', '503'].includes(refused), `a new request during the drain got ${refused}`)
      assert.equal(await status(`http://127.0.0.1:${harness.proxy.metricsPort}/readyz`), 503)
      assert.equal(await status(`http://127.0.0.1:${harness.proxy.metricsPort}/healthz`), 200)

      assert.equal(await finishing.outcome, slowBody(1000))
      assert.equal(await tooLong.outcome, 'broken')
      await stop
      // goAwayGraceMs is 2 s: the long response is cut then, not after its 60 s, and stop() follows it.
      const cutAfter = tooLong.endedAt() - stopping
      assert.ok(cutAfter >= 1900 && cutAfter < 6000, `the long response ended ${Math.round(cutAfter)} ms in`)
      assert.ok(stopped - stopping < 6000, `stop() took ${Math.round(stopped - stopping)} ms`)
      assert.ok(finishing.endedAt() < tooLong.endedAt())
    })

    it('proxy.stop() resolves as soon as the last in-flight stream ended', async () => {
      const finishing = await inFlight(500)
      const stopping = performance.now()
      await harness.proxy.stop()
      const tookMs = performance.now() - stopping
      assert.equal(await finishing.outcome, slowBody(500))
      assert.ok(tookMs < 1900, `stop() took ${Math.round(tookMs)} ms, as long as the grace period`)
    })

    it('agent.stop() (SIGTERM): the in-flight stream finishes, new requests get 502, then stop() resolves', async () => {
      const finishing = await inFlight(1000)
      const stopping = performance.now()
      let stopped = 0
      const stop = agent.stop().then(() => (stopped = performance.now()))
      const during = await frontEndRequest(url('/api'), credentials)
      assert.equal(during.status, 502)
      assert.match(during.body, /no agent of cluster member is connected/)
      assert.equal(await finishing.outcome, slowBody(1000))
      await stop
      assert.ok(stopped >= finishing.endedAt() - 50, 'stop() resolved before the stream ended')
      assert.ok(stopped - stopping < 1900, `stop() took ${Math.round(stopped - stopping)} ms`)
      assert.equal(agent.ready, false)
    })
  })
})
