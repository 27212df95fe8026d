import assert from 'node:assert/strict'
import {writeFile} from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'

import TowerAgentCommand from '../../../../commands/tower/agent.js'
import type {TowerAgent} from '../../../../src/tower/agent/agent.js'
import {credentialOf} from '../../../../src/tower/proxy/session-pool.js'
import {TowerMetrics} from '../../../../src/tower/shared/metrics.js'
import type {TunnelSession} from '../../../../src/tunnel/index.js'
import {runCommand} from '../../../helpers/run-command.js'
import {
  CapturedLog,
  clientCredentials,
  frontEndRequest,
  startAgent,
  startProxy,
  until,
  type ProxyHarness,
} from '../harness.js'

const currentToken = 'member-token-current-0123456789'
const nextToken = 'member-token-next-9876543210abc'

/**
 * An upstream whose /watch answers with a first event at once and holds the response open until `finishWatches()`
 * sends the last one, as a kubectl watch waits for events; any other path answers at once.
 */
async function startWatchUpstream() {
  const watches: http.ServerResponse[] = []
  const server = http.createServer((request, response) => {
    if (request.url === '/watch') {
      response.writeHead(200, {'content-type': 'text/plain'})
      response.write('event 1\n')
      watches.push(response)
      return
    }
    response.end('answered\n')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    finishWatches: () => {
      for (const response of watches.splice(0)) response.end('event 2\n')
    },
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** A relay to the proxy that passes the first connection and holds every later one unanswered (a dial that hangs). */
async function startFirstOnlyRelay(proxyPort: number) {
  const held = new Set<net.Socket>()
  const sockets = new Set<net.Socket>()
  let relayed = false
  const server = net.createServer((client) => {
    sockets.add(client)
    client.once('close', () => sockets.delete(client))
    if (relayed) {
      // Read and dropped, so that the end of the connection is seen.
      client.resume()
      held.add(client)
      client.once('close', () => held.delete(client))
      return
    }
    relayed = true
    const upstream = net.connect(proxyPort, '127.0.0.1')
    client.pipe(upstream).pipe(client)
    client.once('close', () => upstream.destroy())
    upstream.once('close', () => client.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    held: () => held.size,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

describe('tower agent handing its tunnel over to a rotated token', function () {
  this.timeout(30_000)
  let log: CapturedLog
  let harness: ProxyHarness
  let credentials: Awaited<ReturnType<typeof clientCredentials>>
  let upstream: Awaited<ReturnType<typeof startWatchUpstream>>
  let agent: TowerAgent
  let metrics: TowerMetrics
  /** What the agent's token file holds. */
  let token: string
  const cleanups: (() => Promise<void>)[] = []

  beforeEach(async () => {
    log = new CapturedLog()
    metrics = new TowerMetrics()
    token = currentToken
    upstream = await startWatchUpstream()
  })

  afterEach(async () => {
    upstream.finishWatches()
    await agent.stop()
    await harness.proxy.stop()
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
    await upstream.close()
  })

  /** The proxy, accepting the clusters' tokens as given (`nextToken` during a rotation). */
  async function proxy(tokens: {token: string; nextToken?: string}): Promise<void> {
    harness = await startProxy(log, [{name: 'member', ...tokens}])
    credentials = await clientCredentials(harness.ca)
  }

  async function registerTokens(tokens: {token: string; nextToken?: string}): Promise<void> {
    await writeFile(harness.clustersFile, JSON.stringify([{name: 'member', ...tokens}]))
    await harness.registry.reload()
  }

  async function connectAgent(
    options: {tokenCheckMs?: number; port?: number; handshakeTimeoutMs?: number; goAwayGraceMs?: number} = {},
  ): Promise<TunnelSession> {
    agent = startAgent(log, options.port ?? harness.proxy.agentPort, {
      allowed: new Map([['watch', {host: '127.0.0.1', port: upstream.port}]]),
      agent: {
        token: () => Promise.resolve(token),
        tokenCheckMs: options.tokenCheckMs ?? 50,
        metrics,
        ...(options.handshakeTimeoutMs !== undefined && {handshakeTimeoutMs: options.handshakeTimeoutMs}),
        ...(options.goAwayGraceMs !== undefined && {goAwayGraceMs: options.goAwayGraceMs}),
      },
    })
    await until(() => agent.ready && harness.proxy.pool.candidates('member').length === 1)
    return await serving()
  }

  /**
   * The proxy's end of the one session that takes new streams, once there is one: right after the agent handed over,
   * its GO_AWAY on the previous session may still be on its way to the proxy.
   */
  async function serving(): Promise<TunnelSession> {
    await until(() => harness.proxy.pool.candidates('member').length === 1)
    const [session] = harness.proxy.pool.candidates('member')
    assert.ok(session !== undefined, 'one session takes new streams')
    return session
  }

  function url(path: string): string {
    return `https://127.0.0.1:${harness.proxy.frontEndPort}/clusters/member/destinations/watch${path}`
  }

  /** A watch through the front end: resolves `started` at its first event and `body` with all it received. */
  function watch(): {started: Promise<void>; body: Promise<string>} {
    let started!: () => void
    const startedPromise = new Promise<void>((resolve) => (started = resolve))
    const body = new Promise<string>((resolve, reject) => {
      const request = https.request(url('/watch'), {agent: false, ...credentials}, (response) => {
        let text = ''
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => {
          text += chunk
          started()
        })
        response.on('end', () => resolve(text))
        response.on('error', reject)
      })
      request.on('error', reject)
      request.end()
    })
    return {started: startedPromise, body}
  }

  function logged(message: string): Record<string, unknown>[] {
    return log.lines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((record) => record.msg === message)
  }

  async function handovers(outcome: string): Promise<number> {
    const {values} = await metrics.tokenHandovers.get()
    return values.find((value) => value.labels.outcome === outcome)?.value ?? 0
  }

  const handedOver = 'handed the tunnel over to a new token: the previous session drains its open streams'
  const refused =
    'the proxy refused the new token: the tunnel stays on the previous one, the handover is tried again at the next check'

  it('moves new requests to a session on the new token while a watch finishes intact on the old one', async () => {
    await proxy({token: currentToken, nextToken})
    // Were the previous session drained within the agent's shutdown grace (1 ms here) rather than the handover's
    // (an hour), the watch would be cut.
    const old = await connectAgent({goAwayGraceMs: 1})
    const watching = watch()
    await watching.started

    token = nextToken
    const readiness: boolean[] = []
    await until(() => {
      readiness.push(agent.ready)
      return logged(handedOver).length === 1
    })
    assert.ok(!readiness.includes(false), 'the agent stayed ready through the handover')
    assert.equal(logged(handedOver)[0]?.streams, 1, 'the watch was open on the previous session')
    const next = await serving()
    assert.notEqual(next, old)
    assert.equal(old.closed, false, 'the previous session drains its watch')
    assert.deepEqual(harness.proxy.pool.presence('member', credentialOf(nextToken)), {
      sessions: 2,
      servingOnNext: 1,
      servingOnOthers: 0,
    })

    const oldOpened = old.stats.streamsOpened
    const nextOpened = next.stats.streamsOpened
    assert.deepEqual(await frontEndRequest(url('/new'), credentials), {status: 200, body: 'answered\n'})
    assert.equal(next.stats.streamsOpened, nextOpened + 1, 'a new request goes through the new session')
    assert.equal(old.stats.streamsOpened, oldOpened)

    // The proxy promotes the next token: the previous session is going away, so it is spared, watch and all.
    await registerTokens({token: nextToken})
    assert.equal(old.closed, false)
    upstream.finishWatches()
    assert.equal(await watching.body, 'event 1\nevent 2\n')
    await until(() => old.closed && logged('the session of the previous token closed').length === 1)
    assert.equal(logged('the session of the previous token closed')[0]?.reason, 'graceful')
    assert.equal(next.closed, false)
    assert.equal(agent.ready, true)
    assert.equal(await handovers('succeeded'), 1)
    assert.equal((await metrics.reconnects.get()).values[0]?.value ?? 0, 0, 'a handover is no reconnect')
  })

  it('keeps the session of the previous token when the proxy refuses the new one, and tries again at each check', async () => {
    await proxy({token: currentToken})
    // No timed checks: each one is a SIGHUP, so that the test counts the attempts.
    const old = await connectAgent({tokenCheckMs: 3_600_000})
    const proxyRefusals = (): number => logged('rejected an agent: unknown cluster or wrong token').length

    token = nextToken
    for (const check of [1, 2]) {
      agent.retryNow()
      await until(() => logged(refused).length === check)
      assert.equal(proxyRefusals(), check, 'one attempt per check')
      assert.equal(logged(refused)[check - 1]?.status, 401)
      assert.equal(agent.ready, true)
      assert.equal(await serving(), old)
      assert.equal(harness.proxy.pool.count('member'), 1)
    }
    assert.equal(await handovers('refused'), 2)
    assert.deepEqual(await frontEndRequest(url('/still'), credentials), {status: 200, body: 'answered\n'})

    // The rotation starts on the proxy: the next check hands over.
    await registerTokens({token: currentToken, nextToken})
    agent.retryNow()
    await until(() => logged(handedOver).length === 1)
    assert.notEqual(await serving(), old)
    await until(() => old.closed)
    assert.equal(proxyRefusals(), 2)
    assert.equal(await handovers('succeeded'), 1)
  })

  it('stop() during a handover cuts its dial short and closes the session it would have replaced', async () => {
    await proxy({token: currentToken, nextToken})
    const relay = await startFirstOnlyRelay(harness.proxy.agentPort)
    cleanups.push(() => relay.close())
    // A handshake that would wait a minute: only stop() can end the dial within the test's time.
    const old = await connectAgent({port: relay.port, handshakeTimeoutMs: 60_000})

    token = nextToken
    await until(() => relay.held() === 1)
    await agent.stop()
    await until(() => old.closed && relay.held() === 0)
    assert.equal(logged(handedOver).length, 0)
    assert.equal(await handovers('failed'), 0, 'a dial stop() ended is no failed handover')
  })

  it('stop() after a handover ends the draining session within the grace period, not the handover grace', async () => {
    await proxy({token: currentToken, nextToken})
    const old = await connectAgent()
    const watching = watch()
    const cut = assert.rejects(watching.body)
    await watching.started
    token = nextToken
    await until(() => logged(handedOver).length === 1)
    const next = await serving()

    // The handover grace is an hour; the agent's grace period (2 s in the harness) bounds a shutdown.
    await agent.stop()
    await until(() => old.closed && next.closed)
    await cut
  })
})

describe('ksctl tower agent token handover flags', function () {
  this.timeout(20_000)

  for (const [flag, value] of [
    ['--token-check-interval', '0s'],
    ['--token-handover-grace', '600h'],
  ] as const) {
    it(`exits 2 on ${flag} ${value}, out of 1s to 596h, before it connects`, async () => {
      const outcome = await runCommand(TowerAgentCommand, [
        ...['--name', 'member1', '--token', 'a-token-of-the-test-0123456789', flag, value],
        ...[
          '--proxy-server',
          'http://127.0.0.1:9',
          '--insecure-plain',
          '--kubernetes-service',
          '127.0.0.1:1',
        ],
      ])
      assert.equal(outcome.exitCode, 2)
      assert.match(outcome.stderr, new RegExp(`${flag} "${value}" must be from 1s to 596h`))
      assert.doesNotMatch(outcome.stderr, /connecting to the proxy/)
    })
  }
})
